"""The sparse autoencoder's model and the derived layers it will join a network as (issue 13, groundwork).

The TopK code is checked against a brute force; the decoder's constraints (unit columns, no
gradient along a column) exactly; a derived layer against its module applied by hand; and the
examples accumulator, for a layer that is not ReLU of its twin, against numpy.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from microscope.network.catalogue import catalogue
from microscope.errors import UsageError
from microscope.examples.accumulator import LayerAccumulator
from microscope.models import LayerSpec
from microscope.network.loaded import load_network
from microscope.sae.model import TopKSAE, losses


def test_code_is_exactly_the_k_largest_positive_pre_activations():
    generator = torch.Generator().manual_seed(0)
    sae = TopKSAE(width=12, features=40, k=5, generator=generator)
    with torch.no_grad():
        sae.b_enc.normal_(generator=generator)
    x = torch.randn(7, 3, 12, generator=generator)
    with torch.no_grad():
        reconstruction, code, pre = sae(x)
    assert reconstruction.shape == (7, 3, 12) and code.shape == (7, 3, 40) and pre.shape == (7, 3, 40)
    assert ((code != 0).sum(-1) <= 5).all()
    brute = torch.zeros_like(pre)
    for row in np.ndindex(7, 3):
        values = pre[row]
        order = sorted(range(40), key=lambda i: -float(values[i]))[:5]
        for i in order:
            brute[row][i] = max(float(values[i]), 0.0)
    assert torch.equal(code, brute)
    assert torch.allclose(pre, (x - sae.b_pre) @ sae.W_enc.t() + sae.b_enc)
    assert torch.allclose(reconstruction, code @ sae.W_dec.t() + sae.b_pre, atol=1e-6)
    assert torch.equal(sae.encode(x), code)


def test_decoder_columns_stay_unit_and_lose_their_parallel_gradient():
    sae = TopKSAE(width=10, features=30, k=4, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(sae.W_dec.norm(dim=0), torch.ones(30), atol=1e-6)
    x = torch.randn(64, 10, generator=torch.Generator().manual_seed(2)) * 3
    dead = torch.zeros(30, dtype=torch.bool)
    dead[:8] = True
    error, aux, code = losses(sae, x, dead, k_aux=6)
    assert 0 < error.item() and 0 < aux.item()
    (error + aux).backward()
    sae.remove_parallel_gradient()
    assert torch.allclose((sae.W_dec.grad * sae.W_dec).sum(0), torch.zeros(30), atol=1e-6)
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(30) + 0.5)
    sae.normalise_decoder()
    assert torch.allclose(sae.W_dec.norm(dim=0), torch.ones(30), atol=1e-6)
    error, aux, _ = losses(sae, x, torch.zeros(30, dtype=torch.bool), k_aux=6)
    assert aux.item() == 0.0 and error.item() > 0  # no dead latents: nothing to revive


class PerPosition(nn.Module):
    """A 1x1 linear map then ReLU: what an SAE's code looks like to the network (N, C, H, W)."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x):
        return torch.einsum("fc,nchw->nfhw", self.weight, x).relu()


@pytest.fixture(scope="module")
def network():
    return load_network("inceptionv1-caffe", weights="random", seed=0, progress=False)


def test_a_derived_layer_is_its_module_on_the_source_activation(network):
    weight = torch.randn(24, 256, generator=torch.Generator().manual_seed(3))
    network.derive(LayerSpec("inception_3a_test", (), kind="sae", relu_of_twin=False), "inception_3a", PerPosition(weight))
    try:
        images = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(4))
        found = network.activations(images, ["inception_3a", "inception_3a_test"])
        expected = torch.einsum("fc,nchw->nfhw", weight, found["inception_3a"]).relu()
        assert torch.allclose(found["inception_3a_test"], expected, atol=1e-5)
        assert "inception_3a_test" in [layer.name for layer in network.layers]
        [source, derived] = catalogue(network, ["inception_3a", "inception_3a_test"], size=224)
        assert derived.kind == "sae" and derived.channels == 24
        assert (derived.height, derived.width, derived.stride, derived.rf_size, derived.rf_offset) == \
            (source.height, source.width, source.stride, source.rf_size, source.rf_offset)
    finally:
        network.derived.pop("inception_3a_test")
        network._extractors.clear()


def test_a_refused_derived_layer_is_one_line_and_close_names_are_suggested(network):
    network.refused["inception_3b_sae"] = "the SAE of inception_3b was trained for other weights; retrain it"
    try:
        with pytest.raises(UsageError, match="other weights; retrain it"):
            network.layer("inception_3b_sae")
        with pytest.raises(UsageError, match="other weights; retrain it"):
            network.layer("inception_3b/sae")  # as papers write it: the same layer
        with pytest.raises(UsageError, match="did you mean 'inception_3b_sae'"):
            network.layer("inception_3b_sea")
    finally:
        network.refused.clear()


def test_accumulator_counts_nonzero_values_of_a_layer_that_is_not_relu_of_its_twin():
    rng = np.random.default_rng(6)
    pre = torch.from_numpy(rng.normal(size=(10, 5, 3, 4)).astype(np.float32))
    # A TopK-like code: the twin is positive in places where the code is zero.
    code = torch.where(pre > 0.8, pre, torch.zeros_like(pre))
    accumulator = LayerAccumulator(5, 4, top_k=3, histogram_bins=16, band_bins=4, band_samples=2, exact_twin=False)
    for start in range(0, 10, 4):
        part = slice(start, start + 4)
        accumulator.update(code[part], pre[part], torch.arange(10)[part])
    summary = accumulator.summary()
    flat_code = code.flatten(2).numpy()
    assert np.array_equal(summary["nonzero_fraction"], (flat_code != 0).mean(axis=(0, 2)))
    assert np.allclose(summary["mean"], flat_code.mean(axis=(0, 2)), rtol=1e-6)
    assert (summary["hist_counts"].sum(1) == 10 * 12).all()
    restored = LayerAccumulator(5, 4, top_k=3, histogram_bins=16, band_bins=4, band_samples=2, exact_twin=False)
    restored.load_state_arrays(accumulator.state_arrays())
    assert np.array_equal(restored.summary()["nonzero_fraction"], summary["nonzero_fraction"])
