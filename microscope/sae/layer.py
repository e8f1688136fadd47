"""A stored SAE as two derived layers of the network, so that every view treats its features as units.

    <L>_sae       the TopK code at every position of L's grid: F features (kind "sae")
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


class SaeEncoder(nn.Module):
    """(N, C, H, W) activations of L -> (N, F, H, W): the code, or with `pre` the pre-activation."""

    def __init__(self, weights: SaeWeights, scale: float, k: int, pre: bool):
        super().__init__()
        self.register_buffer("W_enc", torch.from_numpy(weights.W_enc.astype("float32")))
        self.register_buffer("b_enc", torch.from_numpy(weights.b_enc.astype("float32")))
        self.register_buffer("b_pre", torch.from_numpy(weights.b_pre.astype("float32")))
        self.scale, self.k, self.pre = float(scale), int(k), pre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.permute(0, 2, 3, 1) / self.scale
        pre = (v - self.b_pre) @ self.W_enc.t() + self.b_enc
        if not self.pre:
            top = torch.topk(pre, self.k, dim=-1)
            pre = torch.zeros_like(pre).scatter(-1, top.indices, top.values.clamp_min(0))
        return pre.permute(0, 3, 1, 2)


def attach_saes(network, store: Store) -> None:
    """Derive `<L>_sae` and `<L>_sae_pre` for every layer L with a stored SAE for these weights."""
    model = network.spec.name
    for layer in list(network.spec.layers):
        folder = store.layer_dir(model, layer.name) / "sae"
        if not folder.is_dir():
            continue
        found = read_sae(store, model, layer.name, network.weights_id)
        name = sae_layer(layer.name)
        if found is None:
            if any(folder.glob("*/result.json")):
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
        network.derive(pre, layer.name, SaeEncoder(weights, result.scale, result.k, pre=True), key=result.key)
        network.derive(code, layer.name, SaeEncoder(weights, result.scale, result.k, pre=False), key=result.key)
