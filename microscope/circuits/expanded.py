"""Expanded weights of every unit of a layer, from every unit of the layer before it.

For an output unit o of layer L and an input unit i of the previous layer P, the expanded weight is
the map, over positions of P, of d L_pre[o, centre] / d P[i, position] in the linearised network
(linear.py). The network being linear, the gradient does not depend on the input: one backward pass
from a batch of output units (element b picks unit b's centre) gives every map of those units at
once, from a small all-zero input just big enough for the centre's field to lie inside it.

Kept per output unit: the sum of each input's map (what inputs are ranked by), its strongest
excitatory and inhibitory inputs with their maps, and the map's non-zero support. Through an
inception block the support follows the branch: 1x1, 3x3 or 5x5 (3x3 for the pool branch), wider
across a stride-2 pool. For a global layer (logits after average pooling) each map is one number.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from microscope.circuits.linear import GLOBAL, LinearPair
from microscope.circuits.ranking import ranked


@dataclass
class Expanded:
    sums: np.ndarray  # (C_out, C_in) float64: the total of each map
    top_index: np.ndarray  # (C_out, 2t) int64: the t strongest excitatory inputs, then the t most inhibitory
    top_value: np.ndarray  # (C_out, 2t) float64: their sums
    maps: np.ndarray  # (C_out, 2t, K, K') float32, one canvas for the whole layer pair
    box: np.ndarray  # (C_out, 4) int32: (top, left, height, width) of each output unit's support in the canvas
    input_size: int  # side of P's grid used
    centre: tuple[int, int]  # (y, x) of the output position differentiated (0, 0 for global layers)


def input_size(pair: LinearPair, channels: int, native: int) -> tuple[int, tuple[int, int]]:
    """The smallest square input whose output centre sees nothing of the border, and that centre."""
    if pair.field == GLOBAL:
        return native, (0, 0)
    field = pair.field
    side = field.size + 2 * field.stride
    dtype = next(pair.module.parameters()).dtype
    for _ in range(64):
        with torch.no_grad():
            out = pair(torch.zeros(1, channels, side, side, dtype=dtype))
        height, width = out.shape[-2:]
        cy, cx = height // 2, width // 2
        inside = all(field.lo + c * field.stride >= 0 and field.hi + c * field.stride <= side - 1 for c in (cy, cx))
        if inside:
            return side, (cy, cx)
        side += field.stride
    raise AssertionError(f"no input size found for {pair.previous} -> {pair.layer}; this is a bug")


def expanded_weights(pair: LinearPair, channels: int, native: int, top: int, batch: int = 64,
                     report=None) -> Expanded:
    """Every output unit's expanded weights from all `channels` input units; `native` is P's grid side
    at the model's input size (the input of a global layer); `report(n)` after each batch of units."""
    side, (cy, cx) = input_size(pair, channels, native)
    dtype = next(pair.module.parameters()).dtype
    outputs = _output_channels(pair, channels, side, dtype)
    t = min(top, channels)
    sums = np.zeros((outputs, channels), np.float64)
    top_index = np.zeros((outputs, 2 * t), np.int64)
    maps = np.zeros((outputs, 2 * t, side, side), np.float32)
    support = np.zeros((outputs, side, side), bool)
    for start in range(0, outputs, batch):
        units = torch.arange(start, min(outputs, start + batch))
        x = torch.zeros(len(units), channels, side, side, dtype=dtype, requires_grad=True)
        out = pair(x)
        rows = torch.arange(len(units))
        picked = out[rows, units, cy, cx] if out.dim() == 4 else out[rows, units]
        picked.sum().backward()
        grads = x.grad.double().numpy()  # (units, C_in, side, side)
        chunk = slice(start, start + len(units))
        sums[chunk] = grads.sum(axis=(2, 3))
        support[chunk] = (grads != 0).any(axis=1)
        for row, unit in enumerate(units.tolist()):
            chosen = ranked(sums[unit], t)
            top_index[unit] = chosen
            maps[unit] = grads[row, chosen]
        if report is not None:
            report(len(units))
    top_value = np.take_along_axis(sums, top_index, 1)
    if pair.field == GLOBAL:  # each map is one number: the sum
        return Expanded(sums, top_index, top_value, top_value[:, :, None, None].astype(np.float32),
                        np.tile(np.array([0, 0, 1, 1], np.int32), (outputs, 1)), side, (0, 0))
    rows, cols = np.nonzero(support.any(axis=0))
    if rows.size == 0:  # every weight zero (a dead layer): keep the centre
        rows, cols = np.array([side // 2]), np.array([side // 2])
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    box = np.zeros((outputs, 4), np.int32)
    for unit in range(outputs):
        ys, xs = np.nonzero(support[unit, y0:y1, x0:x1])
        box[unit] = (ys.min(), xs.min(), np.ptp(ys) + 1, np.ptp(xs) + 1) if ys.size else (0, 0, 0, 0)
    return Expanded(sums, top_index, top_value, maps[:, :, y0:y1, x0:x1], box, side, (cy, cx))


def _output_channels(pair: LinearPair, channels: int, side: int, dtype) -> int:
    with torch.no_grad():
        return int(pair(torch.zeros(1, channels, side, side, dtype=dtype)).shape[1])
