"""The artifact store's records of models, datasets, dataset examples and feature visualizations.

Where each record lives is store.py's (`Store`); the records of other views are beside this module:
atlas.py, circuits.py and sae.py. Every record carries a format number; writers record each data
file's size and sha256 (`FileStamp`) in the record written last, and readers check them. No torch
here: the site and the notebook API read the store too.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from microscope.store.files import FileStamp
from microscope.store.typed import ArrayRecord, JsonRecord, RecordError


# ------------------------------------------------------------------------------------------------
# The model and its layers


@dataclass(frozen=True)
class LayerInfo:
    """A layer a user can pick, as the built network says: channels, grid and receptive field."""

    name: str
    kind: str  # conv, block, branch, pre_relu, logits
    channels: int
    height: int  # spatial size of the activation at the model's input size (1 for logits)
    width: int
    stride: int | None  # input pixels per activation step; None for global layers
    rf_size: int | None  # receptive field side in input pixels; None: the whole image
    rf_offset: float | None  # input coordinate of the centre of position 0's receptive field
    pre_relu: str | None  # the layer's pre-ReLU twin, if it has one
    description: str = ""

    def receptive_square(self, y, x):
        """(top, left, side) in input pixels of the square that position (y, x) sees; y and x may
        be numpy arrays. It may hang over the image's edges. None for global layers."""
        if self.rf_size is None or self.rf_offset is None or self.stride is None:
            return None
        first = self.rf_offset - (self.rf_size - 1) / 2  # the field's first pixel at position 0
        return first + np.asarray(y) * self.stride, first + np.asarray(x) * self.stride, self.rf_size


@dataclass(frozen=True)
class ModelRecord(JsonRecord):
    """model.json: what the site and later stages need to know about a model."""

    name: str
    title: str
    description: str
    weights_id: str  # sha256 of the weights file, or "random-seed<N>"
    input_size: int
    categories: list[str]  # class names by logit index
    layers: list[LayerInfo]

    def layer(self, name: str) -> LayerInfo | None:
        return next((info for info in self.layers if info.name == name), None)


# ------------------------------------------------------------------------------------------------
# Datasets


@dataclass(frozen=True)
class ViewSettings:
    """How a photo becomes the model's square input: shorter side to `resize`, centre crop `crop`."""

    resize: int | None
    crop: int


@dataclass(frozen=True)
class ThumbSettings:
    size: int
    format: str
    view: ViewSettings


@dataclass(frozen=True)
class DatasetIndex(JsonRecord):
    """images.json: the dataset's images in index order (image i is files[i])."""

    fingerprint: str
    name: str  # the folder's name: what pages show (never the local path)
    root: str  # where the images were read from, for the stages that read them again
    files: list[str]  # POSIX paths relative to root
    labels: list[int] | None
    classes: list[str] | None  # class names of an ImageFolder tree
    thumbs: ThumbSettings


@dataclass(frozen=True)
class ThumbStamps(JsonRecord):
    """thumbs/<first>-<last>.json: what the thumbnails of images [first, last) held when written."""

    first: int
    last: int
    stamps: dict[str, FileStamp]  # image index -> its thumbnail's stamp


# ------------------------------------------------------------------------------------------------
# Dataset examples


@dataclass(frozen=True)
class DatasetRef:
    fingerprint: str
    name: str
    images: int  # files in the dataset, readable or not


@dataclass(frozen=True)
class PatchSettings:
    format: str
    size: int
    quality: int
    pad_colour: list[int]
    kinds: list[str]
    bottom: int  # bottom examples that have a patch


@dataclass(frozen=True)
class ExamplesResult(JsonRecord):
    """result.json, written last: the layer's examples are complete and these files hold them."""

    key: str  # hash of `identity`: equal keys, equal results
    identity: dict[str, Any]  # everything that determines the result
    model: str
    weights_id: str
    layer: str
    dataset: DatasetRef
    view: ViewSettings
    top_k: int
    n_images: int  # images read
    skipped: int  # unreadable images
    skipped_files: list[tuple[str, str]]  # (path relative to the dataset, reason), the first 100
    histogram_of: str  # the layer whose values are histogrammed (the pre-ReLU twin)
    grid: LayerInfo  # the layer at the view's size: positions, stride, receptive field
    patches: PatchSettings
    batch_size: int
    files: dict[str, FileStamp]  # relative to the examples folder: summary.npz and the packs


@dataclass
class ExamplesSummary(ArrayRecord):
    """summary.npz (C channels, k kept examples, Q bands, S samples per band, B histogram bins).

    top_*: images ranked by max over positions of the layer, highest first; values NaN and index
    -1 where the dataset has fewer than k images; y, x the argmax in the activation grid (first in
    row-major order). Ties go to the lower image index. bottom_*: the same for the minimum of the
    pre-ReLU twin, lowest first. band_*: uniform random images of quantile bands of the top score
    (band_fractions: the requested top-fraction interval; band_fraction_range: the one its whole
    histogram bins cover; band_value_range: scores in (low, high]). hist_counts/hist_edges: exact
    counts of the pre-ReLU twin over every position, bin i = (edges[i], edges[i + 1]]. mean and
    nonzero_fraction of the layer over n_positions positions. With labels, top_classes and
    top_class_counts: the classes most frequent among the top examples (-1 / 0 padded).
    """

    ARRAYS = {
        "top_values": ("f", 2), "top_index": ("i", 2), "top_y": ("i", 2), "top_x": ("i", 2),
        "bottom_values": ("f", 2), "bottom_index": ("i", 2), "bottom_y": ("i", 2), "bottom_x": ("i", 2),
        "band_names": ("U", 1), "band_fractions": ("f", 2), "band_index": ("i", 3), "band_values": ("f", 3),
        "band_y": ("i", 3), "band_x": ("i", 3), "band_count": ("i", 2), "band_value_range": ("f", 3),
        "band_fraction_range": ("f", 3), "hist_counts": ("i", 2), "hist_edges": ("f", 2),
        "mean": ("f", 1), "nonzero_fraction": ("f", 1), "n_positions": ("i", 1),
    }

    top_values: np.ndarray
    top_index: np.ndarray
    top_y: np.ndarray
    top_x: np.ndarray
    bottom_values: np.ndarray
    bottom_index: np.ndarray
    bottom_y: np.ndarray
    bottom_x: np.ndarray
    band_names: np.ndarray
    band_fractions: np.ndarray
    band_index: np.ndarray
    band_values: np.ndarray
    band_y: np.ndarray
    band_x: np.ndarray
    band_count: np.ndarray
    band_value_range: np.ndarray
    band_fraction_range: np.ndarray
    hist_counts: np.ndarray
    hist_edges: np.ndarray
    mean: np.ndarray
    nonzero_fraction: np.ndarray
    n_positions: np.ndarray
    top_classes: np.ndarray | None = None
    top_class_counts: np.ndarray | None = None

    @property
    def channels(self) -> int:
        return self.top_values.shape[0]

    def check(self) -> None:
        c, q = self.channels, self.band_names.shape[0]
        same = {"top": self.top_values.shape, "bottom": self.bottom_values.shape}
        for prefix, shape in same.items():
            for suffix in ("index", "y", "x"):
                if getattr(self, f"{prefix}_{suffix}").shape != shape:
                    raise RecordError(f"{prefix}_{suffix} does not match {prefix}_values {shape}")
        band = self.band_index.shape
        if band[:2] != (c, q) or any(getattr(self, f"band_{s}").shape != band for s in ("values", "y", "x")):
            raise RecordError(f"band arrays do not agree with {c} channels and {q} bands")
        if self.hist_edges.shape != (c, self.hist_counts.shape[1] + 1) or self.hist_counts.shape[0] != c:
            raise RecordError("hist_edges must have one more column than hist_counts")
        for name in ("mean", "nonzero_fraction", "n_positions"):
            if getattr(self, name).shape != (c,):
                raise RecordError(f"{name} must have one value per channel")
        if (self.top_classes is None) != (self.top_class_counts is None):
            raise RecordError("top_classes and top_class_counts come together")


@dataclass
class PatchIndex(ArrayRecord):
    """patches/<chunk>.idx.npz: one row per patch of the pack <chunk>.bin (see microscope/data/packs.py),
    and the pack's size and sha256 (so that a layer's result need only stamp the small indexes)."""

    COLUMNS = ("unit", "kind", "rank", "offset", "length")
    ARRAYS = {**{name: ("i", 1) for name in COLUMNS}, "bin_size": ("i", 0), "bin_sha256": ("U", 0)}

    unit: np.ndarray
    kind: np.ndarray
    rank: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    bin_size: np.ndarray
    bin_sha256: np.ndarray

    @property
    def bin_stamp(self) -> FileStamp:
        return FileStamp(int(self.bin_size), str(self.bin_sha256))

    def check(self) -> None:
        if len({getattr(self, name).shape for name in self.COLUMNS}) != 1:
            raise RecordError("patch index columns differ in length")
        if (self.offset < 0).any() or (self.length < 0).any():
            raise RecordError("patch index has negative offsets or lengths")
        if self.length.size and int((self.offset + self.length).max()) > int(self.bin_size):
            raise RecordError("patch index points past the end of its pack")


@dataclass
class PassShard(ArrayRecord):
    """passes/<pass>/<first>-<last>.npz: the accumulators of a shard of the dataset pass, mergeable.

    `meta` is a JSON string: {"key", "first", "last", "batches", "total", "layers": [names],
    "skipped": [[path, reason]]}; `state` holds each layer's accumulator arrays, flattened as
    "<layer position>/<part>/<name>" (see microscope/examples/accumulator.py).
    """

    FORMAT = 2  # 2: each layer's state counts its positive values ("positive"), see accumulator.py
    ARRAYS = {"meta": ("U", 0)}
    COMPRESS = False  # tens of MB, written at every checkpoint, read once: time matters more than bytes

    meta: np.ndarray
    state: dict[str, np.ndarray] = field(default_factory=dict)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"format": np.array(self.FORMAT), "meta": self.meta, **self.state}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "PassShard":
        base = {k: arrays[k] for k in ("format", "meta") if k in arrays}
        record = super().from_arrays(base)
        record.state = {k: v for k, v in arrays.items() if k not in ("format", "meta")}
        record.info()
        return record

    @classmethod
    def make(cls, info: dict, state: dict[str, np.ndarray]) -> "PassShard":
        return cls(meta=np.array(json.dumps(info, sort_keys=True)), state=state)

    def info(self) -> dict:
        """The parsed `meta` (parsed once)."""
        if getattr(self, "_info", None) is None:
            try:
                info = json.loads(str(self.meta))
            except ValueError as error:
                raise RecordError(f"pass shard meta is not JSON ({error})") from None
            if not isinstance(info, dict) or not {"key", "first", "last", "batches", "total", "layers",
                                                   "skipped"} <= set(info):
                raise RecordError("pass shard meta lacks its key, range or layers")
            self._info = info
        return self._info


# ------------------------------------------------------------------------------------------------
# Feature visualization


@dataclass(frozen=True)
class RenderConfig:
    """Everything that changes a render's pixels; a render made with another config is redone."""

    model: str
    weights_id: str
    layer: str
    optimised_layer: str
    recipe: dict[str, Any]
    seed: int
    steps: int
    size: int
    precision: str
    image_format: str
    derived: str | None = None  # key of a derived layer's module (an SAE): another SAE, other renders


@dataclass(frozen=True)
class RenderImage:
    file: str
    stamp: FileStamp
    objective_final: float  # the objective before the last step
    loss_curve: list[float]  # -objective every `loss_curve_steps`
    activation_mean: float  # of the saved, reloaded image, on its unit (the layer itself, not the twin)
    activation_max: float


@dataclass(frozen=True)
class RenderRecord(JsonRecord):
    """featurevis/<unit>/<objective>.json: one objective's images of one unit, written after them."""

    unit: int
    objective: str
    config: RenderConfig
    loss_curve_steps: list[int]
    images: list[RenderImage]
