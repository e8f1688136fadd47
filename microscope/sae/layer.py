"""A stored SAE as two derived layers of the network, so that every view treats its features as units.

    <L>_sae       the TopK code at every position of L's grid away from the border: F features (kind "sae")
    <L>_sae_pre   the encoder pre-activation (kind "pre_relu"), the twin feature visualization maximises:
                  a feature that is not in the top k has zero code and no gradient, its pre-activation
                  always has one

`attach_saes` adds them for every layer that has an SAE for the network's weights. A layer whose
only SAEs were trained for other weights gets a refusal instead: asking for `<L>_sae` then says so
in one line, rather than showing features of another network.
"""
from __future__ import annotations

import torch
from torch import nn

from microscope.models import LayerSpec
from microscope.sae.stored import PRE_SUFFIX, read_sae, sae_layer
from microscope.store import SaeWeights, Store

LAYER_VERSION = 2  # bump when the derived layers compute differently: their examples and renders are redone


class SaeEncoder(nn.Module):
    """(N, C, H, W) activations of L -> (N, F, H, W): the code, or with `pre` the pre-activation."""

    def __init__(self, weights: SaeWeights, scale: float, k: int, pre: bool, edge: int):
        super().__init__()
        self.register_buffer("W_enc", torch.from_numpy(weights.W_enc.astype("float32")))
        self.register_buffer("b_enc", torch.from_numpy(weights.b_enc.astype("float32")))
        self.register_buffer("b_pre", torch.from_numpy(weights.b_pre.astype("float32")))
        self.scale, self.k, self.pre, self.edge = float(scale), int(k), pre, int(edge)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.permute(0, 2, 3, 1) / self.scale
        pre = (v - self.b_pre) @ self.W_enc.t() + self.b_enc
        if not self.pre:
            top = torch.topk(pre, self.k, dim=-1)
            pre = torch.zeros_like(pre).scatter(-1, top.indices, top.values.clamp_min(0))
        return pre.permute(0, 3, 1, 2) * self.inner(x)

    def inner(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 1, H, W): 1 at positions `edge` or more steps from the border, where the SAE was trained.

        Vectors at the border (receptive fields over the zero padding) were never in its training
        data, and the code extrapolates wildly there: unmasked, many features' best dataset examples
        were border positions, grey padding and all. There the features are 0, as undefined."""
        mask = torch.zeros(1, 1, x.shape[2], x.shape[3], dtype=x.dtype, device=x.device)
        mask[..., self.edge:x.shape[2] - self.edge, self.edge:x.shape[3] - self.edge] = 1
        return mask


def attach_saes(network, store: Store) -> None:
    """Derive `<L>_sae` and `<L>_sae_pre` for every layer L with a stored SAE for these weights."""
    model = network.spec.name
    for layer in list(network.spec.layers):
        if not store.sae_layer_dir(model, layer.name).is_dir():
            continue
        found = read_sae(store, model, layer.name, network.weights_id)
        name = sae_layer(layer.name)
        if found is None:
            if store.sae_result_files(model, layer.name):
                network.refused[name] = (
                    f"the SAE of {layer.name} in {store.root} was trained for other weights than {model}'s "
                    f"({network.weights_id[:12]}); train one for these weights: build.py sae --model {model} "
                    f"--layer {layer.name} --images DIR")
            continue
        result, weights = found
        pre = LayerSpec(name=layer.name + PRE_SUFFIX, nodes=(), kind="pre_relu",
                        description=f"encoder pre-activation of the SAE of {layer.name}")
        code = LayerSpec(name=name, nodes=(), kind="sae", pre_relu=pre.name, relu_of_twin=False,
                         description=f"{result.features} features of a TopK SAE (k {result.k}) of {layer.name}; "
                                     f"held-out FVU {result.fvu:.3f}")
        edge, key = int(result.sampling.get("edge", 1)), f"{result.key}/v{LAYER_VERSION}"
        network.derive(pre, layer.name, SaeEncoder(weights, result.scale, result.k, True, edge), key=key)
        network.derive(code, layer.name, SaeEncoder(weights, result.scale, result.k, False, edge), key=key)
