"""The store's record of an atlas's sample of a layer's activation vectors (no torch):

    <root>/<model>/<layer>/examples/atlas_vectors.npz   AtlasVectors, written by the examples pass
    <root>/<model>/<layer>/atlas/layout.npz              AtlasLayout: the sample laid out and gridded
    <root>/<model>/<layer>/atlas/result.json             AtlasResult, written last

The examples pass draws them (microscope/atlas/reservoir.py) while it ranks the layer's examples, so
an atlas never runs the network over the dataset again.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microscope.store.files import FileStamp
from microscope.store.typed import ArrayRecord, JsonRecord, RecordError


@dataclass
class AtlasVectors(ArrayRecord):
    """keys (n,) uint64 ascending: the reservoir's priorities; vectors (n, C) float16 at dataset image
    `image`, grid position (y, x); settings (4,): capacity, width, seed, positions drawn per image."""

    ARRAYS = {"keys": ("u", 1), "vectors": ("f", 2), "image": ("i", 1), "y": ("i", 1), "x": ("i", 1),
              "settings": ("i", 1)}

    keys: np.ndarray
    vectors: np.ndarray
    image: np.ndarray
    y: np.ndarray
    x: np.ndarray
    settings: np.ndarray

    def check(self) -> None:
        n = len(self.keys)
        if self.settings.shape != (4,) or self.vectors.shape != (n, int(self.settings[1])) or \
                any(len(getattr(self, name)) != n for name in ("image", "y", "x")) or n > int(self.settings[0]):
            raise RecordError("atlas vectors disagree with their settings on their number or width")


@dataclass
class AtlasLayout(ArrayRecord):
    """<layer>/atlas/layout.npz: the sample laid out and gridded (microscope/atlas/layout.py).

    xy (n, 2) float32 in [0, 1]²: each sampled vector's place, in AtlasVectors' order; sizes (2,): the
    coarse and fine grids' sides G; count_* (G, G) vectors per cell; mean_* (G, G, C) float32: the mean
    vector of cells with more than `min_count` vectors (AtlasResult), else 0."""

    ARRAYS = {"xy": ("f", 2), "sizes": ("i", 1), "count_coarse": ("i", 2), "mean_coarse": ("f", 3),
              "count_fine": ("i", 2), "mean_fine": ("f", 3)}

    xy: np.ndarray
    sizes: np.ndarray
    count_coarse: np.ndarray
    mean_coarse: np.ndarray
    count_fine: np.ndarray
    mean_fine: np.ndarray

    def check(self) -> None:
        if self.xy.shape[1:] != (2,) or self.sizes.shape != (2,):
            raise RecordError("atlas layout: xy must be (n, 2) and sizes two grid sides")
        for level, side in zip(("coarse", "fine"), self.sizes.tolist()):
            count, mean = getattr(self, f"count_{level}"), getattr(self, f"mean_{level}")
            if count.shape != (side, side) or mean.shape[:2] != (side, side) or int(count.sum()) != len(self.xy):
                raise RecordError(f"atlas layout: the {level} grid disagrees with its side or the number of vectors")


@dataclass(frozen=True)
class AtlasResult(JsonRecord):
    """<layer>/atlas/result.json, written last: what the layout was made from and with."""

    key: str  # hash of the sample's stamp and the settings
    model: str
    layer: str
    vectors: FileStamp  # the examples pass's atlas_vectors.npz it laid out
    n_vectors: int
    layout: dict  # LayoutSettings
    sizes: list[int]
    min_count: int
    seconds: dict[str, float]
    files: dict[str, FileStamp]
