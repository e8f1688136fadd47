"""The store's record of an atlas's sample of a layer's activation vectors (no torch):

    <root>/<model>/<layer>/examples/atlas_vectors.npz   AtlasVectors, written by the examples pass
    <root>/<model>/<layer>/atlas/layout.npz              AtlasLayout: the sample laid out and gridded
    <root>/<model>/<layer>/atlas/result.json             AtlasResult, written last

The examples pass draws them (microscope/activations/reservoir.py) while it ranks the layer's examples, so
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
    # float16 activations shrink ~15 % under zlib, which took 5 s per 100,000 x 832 sample against 0.2 s
    # stored as they are (bench/NOTES.md): the summaries' largest cost, for one sixth of the bytes.
    COMPRESS = False

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


@dataclass
class AtlasCells(ArrayRecord):
    """<layer>/atlas/cells_<level>.npz: what the page says of each cell shown at one level (n cells, those
    with more than `min_count` vectors, in row-major order).

    row, column, count (n,); units, unit_cos (n, U): the units whose basis vectors are closest to the
    cell's mean (cosine), closest first; classes, class_attr (n, T): the classes with the highest mean
    attribution over the cell's `attributed` (n,) vectors (-1 and NaN where the model has no logits);
    patches (n, P): rows of the atlas sample whose receptive-field patches show the cell (-1: none),
    stored in the pack `patches/000000.bin` as (cell, level, rank)."""

    ARRAYS = {"row": ("i", 1), "column": ("i", 1), "count": ("i", 1), "units": ("i", 2), "unit_cos": ("f", 2),
              "classes": ("i", 2), "class_attr": ("f", 2), "attributed": ("i", 1), "patches": ("i", 2)}

    row: np.ndarray
    column: np.ndarray
    count: np.ndarray
    units: np.ndarray
    unit_cos: np.ndarray
    classes: np.ndarray
    class_attr: np.ndarray
    attributed: np.ndarray
    patches: np.ndarray

    def check(self) -> None:
        n = len(self.row)
        if any(len(getattr(self, name)) != n for name in self.ARRAYS) or \
                self.units.shape != self.unit_cos.shape or self.classes.shape != self.class_attr.shape:
            raise RecordError("atlas cells: arrays disagree on the number of cells")


@dataclass
class AtlasIcons(ArrayRecord):
    """<layer>/atlas/icons/<level>-<first>.npz: feature visualizations of a batch of one level's cells,
    [first, first + n) in AtlasCells order. pixels (n, S, S, 3) uint8; value (n,) the objective at the
    last step; key: the atlas key and icon settings they were rendered for."""

    ARRAYS = {"pixels": ("u", 4), "value": ("f", 1), "key": ("U", 0)}

    pixels: np.ndarray
    value: np.ndarray
    key: np.ndarray

    def check(self) -> None:
        if self.pixels.shape[3:] != (3,) or len(self.value) != len(self.pixels):
            raise RecordError("atlas icons: pixels must be (n, S, S, 3), one value per icon")


@dataclass(frozen=True)
class AtlasStage(JsonRecord):
    """<layer>/atlas/cells.json and icons.json, each written last by its stage: the cells described
    (nearest units, classes, patches) or the icons rendered, for the layout `layout_key` (AtlasResult.key)."""

    key: str  # hash of the layout's key, the weights and the stage's settings
    layout_key: str
    weights_id: str
    settings: dict
    seconds: dict[str, float]
    files: dict[str, FileStamp]
