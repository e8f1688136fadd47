"""The store's records of a layer's circuits: expanded weights from the previous layer (no torch):

    <root>/<model>/<layer>/circuits/weights.npz     CircuitArrays: expanded weights from the previous layer
    <root>/<model>/<layer>/circuits/result.json     CircuitResult, written last
    <root>/<model>/<layer>/circuits/refused.json    CircuitRefusal: why there are no expanded weights

Computed by microscope/circuits (views/circuits.py plans and runs them).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microscope.store.files import FileStamp
from microscope.store.typed import ArrayRecord, JsonRecord, RecordError


@dataclass(frozen=True)
class CircuitResult(JsonRecord):
    """circuits/result.json of a layer L: its expanded weights from the previous layer P, written last."""

    key: str  # hash of everything that determines the weights
    model: str
    weights_id: str
    previous: str  # P
    layer: str  # L
    target: str  # the layer differentiated: L's pre-ReLU twin, or L
    top: int  # strongest inputs kept per sign
    input_size: int  # side of P's grid the maps were computed on
    centre: list[int]  # (y, x) of L's position differentiated
    local: bool  # False: L is global (logits), each map is one number
    linearised: list[str]  # what the linearisation replaced, e.g. "2 x MaxPool2d -> AvgPool2d"
    files: dict[str, FileStamp]


@dataclass(frozen=True)
class CircuitRefusal(JsonRecord):
    """circuits/refused.json of a layer L, instead of result.json: the network from P to L is not linear
    enough to linearise (e.g. a GELU between them), and the pages say so."""

    key: str
    model: str
    weights_id: str
    previous: str
    layer: str
    reason: str  # one line naming the module or connection


@dataclass
class CircuitArrays(ArrayRecord):
    """circuits/weights.npz (C_out units of L, C_in of P, t inputs kept per sign, K x K' canvas).

    sums (C_out, C_in) float64: each expanded-weight map summed over its positions - what inputs are
    ranked by; top_index (C_out, 2t): the t inputs with the largest sums, then the t with the smallest,
    from the extreme inward (ties to the lower index); top_value (C_out, 2t) their sums; maps
    (C_out, 2t, K, K') float32, centred on L's position, one canvas for the pair; box (C_out, 4) int32:
    (top, left, height, width) of each output unit's non-zero support in the canvas.
    """

    ARRAYS = {"sums": ("f", 2), "top_index": ("i", 2), "top_value": ("f", 2), "maps": ("f", 4), "box": ("i", 2)}

    sums: np.ndarray
    top_index: np.ndarray
    top_value: np.ndarray
    maps: np.ndarray
    box: np.ndarray

    def check(self) -> None:
        outputs, pairs = self.top_index.shape
        if self.sums.shape[0] != outputs or self.top_value.shape != (outputs, pairs) or \
                self.maps.shape[:2] != (outputs, pairs) or self.box.shape != (outputs, 4):
            raise RecordError("circuit arrays disagree on the number of units or of inputs kept")
        if pairs and (self.top_index.min() < 0 or self.top_index.max() >= self.sums.shape[1]):
            raise RecordError("circuit top_index points outside the previous layer")
