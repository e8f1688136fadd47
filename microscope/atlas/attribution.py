"""Which classes an activation vector speaks for: activation x gradient of each class logit, at its position.

For a vector a_p of layer L at position p of an image, the attribution to class c is
sum_channels a_p * d logit_c / d L[:, p] (Carter et al.'s atlas labels). All classes at once cost one
forward-mode pass, not one backward pass per class: the attribution is the derivative of the logits
along the tangent that holds a_p at p and zero elsewhere, so `torch.func.jvp` through the network
above L (microscope/network/subgraph.py) gives every class's value of one position in one pass.
"""
from __future__ import annotations

import numpy as np
import torch

from microscope.network.subgraph import concatenated, cut_graph


def logits_layer(network) -> str | None:
    """The model's class scores, if it has them."""
    return next((layer.name for layer in network.spec.layers if layer.kind == "logits"), None)


class Attribution:
    """Class attributions of positions of `layer`, given the layer's activation of their image."""

    def __init__(self, network, layer: str, chunk: int = 32):
        self.logits = logits_layer(network)
        self.layer = layer
        self.chunk = chunk
        self.outputs = network.layer(self.logits).nodes if self.logits else ()
        self.tail = cut_graph(network, layer, self.logits, "its class attributions are not defined") \
            if self.logits else None

    def __call__(self, activation: torch.Tensor, rows: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(R, classes) float32: for each r, position (y[r], x[r]) of image rows[r] of `activation` (N, C, H, W)."""
        found = []
        for start in range(0, len(rows), self.chunk):
            part = slice(start, start + self.chunk)
            index = torch.as_tensor(rows[part], dtype=torch.long, device=activation.device)
            base = activation[index].to(next(self.tail.parameters()).dtype)  # float32, or float64 in a test
            tangent = torch.zeros_like(base)
            n = torch.arange(len(index), device=activation.device)
            ys = torch.as_tensor(y[part], dtype=torch.long, device=activation.device)
            xs = torch.as_tensor(x[part], dtype=torch.long, device=activation.device)
            tangent[n, :, ys, xs] = base[n, :, ys, xs]
            _, along = torch.func.jvp(lambda a: self._logits(a), (base,), (tangent,))
            found.append(along.float().cpu().numpy())
        return np.concatenate(found) if found else np.zeros((0, 0), np.float32)

    def _logits(self, activation: torch.Tensor) -> torch.Tensor:
        out = concatenated(self.tail(activation), self.outputs)
        return out.flatten(1) if out.dim() > 2 else out
