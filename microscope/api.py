"""Reading results in a notebook: the artifact store as Python objects, numpy arrays and PIL images.

    import microscope
    store = microscope.open_store("artifacts")
    model = store.model("inceptionv1-caffe")
    unit = model.layer("inception_4a").unit(97)
    unit.render("channel")              # the feature visualization, a PIL image
    unit.top[:3]                        # the best dataset examples: image, value, position
    unit.patches("top")[:8]             # their receptive-field patches, PIL images
    unit.stats, unit.histogram          # max, mean, active fraction; counts and edges

It reads the same typed records the site reads (through each view's `read`), checks them the same
way, and never imports torch, so it is quick to load beside anything else.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from microscope.atlas.stored import AtlasData
from microscope.errors import UsageError
from microscope.store import ExamplesSummary, LayerInfo, ModelRecord, RenderRecord, Store
from microscope.views.shown import SHOWN


def open_store(path: str | Path = "artifacts") -> "StoreReader":
    root = Path(path)
    if not root.is_dir():
        raise UsageError(f"no artifact store at {root}")
    return StoreReader(Store(root))


@dataclass(frozen=True)
class Example:
    """One dataset example of a unit: which image, how strongly, where (activation grid y, x)."""

    rank: int
    index: int  # in the dataset
    image: str | None  # its path relative to the dataset's folder
    value: float
    y: int
    x: int


class StoreReader:
    def __init__(self, store: Store):
        self.store = store

    @property
    def models(self) -> list[str]:
        return self.store.models()

    def model(self, name: str) -> "ModelReader":
        record = self.store.read_model(name)
        if record is None:
            raise UsageError(f"model {name!r} is not in the store {self.store.root}; it has: {', '.join(self.models)}")
        return ModelReader(self.store, record)

    def __repr__(self) -> str:
        return f"<store {self.store.root}: {', '.join(self.models) or 'empty'}>"


class ModelReader:
    def __init__(self, store: Store, record: ModelRecord):
        self.store, self.record = store, record

    @property
    def layers(self) -> list[str]:
        """The layers with results, in network order."""
        return [info.name for info in self.record.layers if self.layer(info.name).units]

    def layer(self, name: str) -> "LayerReader":
        info = self.record.layer(name)
        if info is None:
            raise UsageError(f"model {self.record.name} has no layer {name!r}")
        return LayerReader(self.store, self.record, info)

    def __repr__(self) -> str:
        return f"<model {self.record.name}: {len(self.record.layers)} layers>"


class LayerReader:
    def __init__(self, store: Store, model: ModelRecord, info: LayerInfo):
        self.store, self.model, self.info = store, model, info

    @cached_property
    def data(self) -> dict:
        """view name -> the layer's stored results (only views that have some)."""
        return {name: found for name, view in SHOWN.items()
                if (found := view.read(self.store, self.model, self.info)) is not None}

    @property
    def units(self) -> list[int]:
        return sorted(set().union(*[SHOWN[name].units(data) for name, data in self.data.items()]))

    @property
    def summary(self) -> ExamplesSummary | None:
        """Every unit's dataset examples, bands, histogram and statistics as arrays (or None)."""
        examples = self.data.get("examples")
        return examples.summary if examples else None

    @property
    def atlas(self):
        """The layer's activation atlas, or None: `.cells["coarse" | "fine"]` (AtlasCells: row, column, count,
        nearest units and cosines, top classes and attributions, patch rows), `.icon_pixels(level)` (uint8 array),
        `.layout()` (AtlasLayout: xy of every sampled vector), `.result` (UMAP settings and seconds)."""
        found = self.data.get("atlas")
        return found if isinstance(found, AtlasData) else None

    @property
    def sae(self):
        """The layer's sparse autoencoder (of the layer itself, or the one whose features this layer is):
        (SaeResult, SaeWeights) - config, held-out FVU / L0 / dead, loss curve; W_enc, W_dec, firing... -
        or None."""
        found = self.data.get("sae")
        return None if found is None else (found.result, found.weights)

    def unit(self, unit: int) -> "UnitReader":
        if not 0 <= unit < self.info.channels:
            raise UsageError(f"unit {unit} is out of range: {self.info.name} has units 0-{self.info.channels - 1}")
        return UnitReader(self, unit)

    def __repr__(self) -> str:
        return f"<layer {self.model.name}/{self.info.name}: {len(self.units)} of {self.info.channels} units, " \
               f"views: {', '.join(self.data) or 'none'}>"


class UnitReader:
    def __init__(self, layer: LayerReader, unit: int):
        self.layer, self.unit = layer, unit

    # Feature visualization ------------------------------------------------------------------------

    @property
    def records(self) -> dict[str, RenderRecord]:
        """objective -> its RenderRecord (files, objective value, loss curve, activation)."""
        renders = self.layer.data.get("featurevis")
        return dict(renders.units.get(self.unit, {})) if renders else {}

    def render(self, objective: str = "channel", image: int = 0) -> Image.Image:
        record = self.records.get(objective)
        if record is None:
            raise UsageError(f"no {objective} render of unit {self.unit}; it has: {', '.join(self.records) or 'none'}")
        path = self.layer.data["featurevis"].folder / str(self.unit) / record.images[image].file
        with Image.open(path) as picture:  # a transparent render (channel-alpha) keeps its alpha
            return picture.convert("RGBA" if "A" in picture.getbands() else "RGB")

    # Dataset examples ---------------------------------------------------------------------------

    def examples(self, kind: str = "top") -> list[Example]:
        """"top" (highest first) or "bottom" (lowest first); empty slots left out."""
        summary = self.layer.summary
        if summary is None:
            return []
        files = self._files
        values, index = getattr(summary, f"{kind}_values")[self.unit], getattr(summary, f"{kind}_index")[self.unit]
        ys, xs = getattr(summary, f"{kind}_y")[self.unit], getattr(summary, f"{kind}_x")[self.unit]
        return [Example(rank, int(i), files[i] if 0 <= i < len(files) else None, float(v), int(ys[rank]), int(xs[rank]))
                for rank, (v, i) in enumerate(zip(values.tolist(), index.tolist())) if i >= 0 and math.isfinite(v)]

    @property
    def top(self) -> list[Example]:
        return self.examples("top")

    @property
    def bottom(self) -> list[Example]:
        return self.examples("bottom")

    def patches(self, kind: str = "top") -> list[Image.Image | None]:
        """The receptive-field patch of each example of `kind` (None where none was cut)."""
        examples = self.layer.data.get("examples")
        if examples is None:
            return []
        refs = examples.patch_refs(self.unit)
        return [Image.open(io.BytesIO(refs[(kind, e.rank)].read())).convert("RGB") if (kind, e.rank) in refs else None
                for e in self.examples(kind)]

    @property
    def stats(self) -> dict[str, float]:
        summary = self.layer.summary
        if summary is None:
            return {}
        found = {"mean": float(summary.mean[self.unit]), "nonzero_fraction": float(summary.nonzero_fraction[self.unit])}
        if self.top:
            found["max"] = self.top[0].value
        if self.bottom:
            found["min"] = self.bottom[0].value
        return found

    @property
    def histogram(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(counts, edges): exact counts of the pre-ReLU values over every position; bin i = (edges[i], edges[i+1]]."""
        summary = self.layer.summary
        return None if summary is None else (summary.hist_counts[self.unit], summary.hist_edges[self.unit])

    @property
    def _files(self) -> list[str]:
        examples = self.layer.data.get("examples")
        return examples.dataset.files if examples is not None and examples.dataset is not None else []

    def __repr__(self) -> str:
        return f"<unit {self.layer.model.name}/{self.layer.info.name}/{self.unit}: renders " \
               f"{', '.join(self.records) or 'none'}, {len(self.top)} top examples>"
