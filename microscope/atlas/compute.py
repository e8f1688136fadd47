"""Lay out a layer's stored atlas sample: UMAP, normalisation, and the coarse and fine grids' cell means.

Reads `<layer>/examples/atlas_vectors.npz` (checked against the stamp the examples result holds),
writes `<layer>/atlas/layout.npz`, then `result.json` last. Reused when the sample and the settings
are unchanged. The next stages (describe.py, icons.py) work from these cells.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from microscope.atlas.layout import LayoutSettings, grid_cells, normalise, umap_layout
from microscope.errors import UsageError
from microscope.examples.config import ATLAS_SAMPLE
from microscope.jobs import hash_json
from microscope.store import AtlasLayout, AtlasResult, AtlasVectors, ExamplesResult, Store

VERSION = 1


@dataclass(frozen=True)
class GridSettings:
    """What the layout stage is made from: UMAP's settings and the sides of the two grids laid over it."""

    layout: LayoutSettings = LayoutSettings()
    coarse: int = 20  # grid side at the top level
    fine: int = 40  # and the second level, for zooming in
    min_count: int = 5  # a cell needs more vectors than this to get a mean (and an icon)

    def check(self) -> None:
        if not 1 <= self.coarse <= self.fine:
            raise UsageError(f"atlas grids must satisfy 1 <= coarse <= fine, got {self.coarse} and {self.fine}")


def needed_vectors(side: int) -> int:
    """The smallest sample laid out on a side x side grid: one vector per four of its cells."""
    return side * side // 4


def sample_of(store: Store, model: str, layer: str) -> tuple[AtlasVectors, object]:
    """The layer's atlas sample, verified against its examples result; one line if there is none."""
    result = store.read(store.examples_result_file(model, layer), ExamplesResult)
    vectors_file = store.atlas_vectors_file(model, layer)
    stamp = result.files.get(vectors_file.name) if result is not None else None
    if stamp is None:
        raise UsageError(f"{layer} has no atlas sample in {store.root} (the examples pass draws one only when asked): "
                         f"run build.py examples --layers {layer} --images DIR --atlas-vectors {ATLAS_SAMPLE}, "
                         "and the other options it was built with (--top-k, --image-sample)")
    vectors = store.read(vectors_file, AtlasVectors, stamp)
    if vectors is None:
        raise UsageError(f"the atlas sample of {layer} is damaged; recompute its dataset examples")
    return vectors, stamp


def layout_key(stamp, settings: GridSettings) -> str:
    """What a layout is made from: the sample's bytes and the settings."""
    return hash_json({"version": VERSION, "vectors": stamp.sha256, "settings": asdict(settings)}, digits=32)


def lay_out(store: Store, model: str, layer: str, settings: GridSettings = GridSettings()) -> AtlasResult:
    settings.check()
    sample, stamp = sample_of(store, model, layer)
    if len(sample.keys) < needed_vectors(settings.coarse):
        raise UsageError(f"the atlas sample of {layer} has {len(sample.keys)} vectors, too few for a "
                         f"{settings.coarse} x {settings.coarse} grid; use at least {needed_vectors(settings.coarse)} "
                         "(more images, or more positions per image)")
    key = layout_key(stamp, settings)
    result_file, layout_file = store.atlas_result_file(model, layer), store.atlas_layout_file(model, layer)
    found = store.read(result_file, AtlasResult)
    if found is not None and found.key == key and \
            store.read(layout_file, AtlasLayout, found.files.get(layout_file.name)) is not None:
        return found
    vectors = sample.vectors.astype(np.float32)
    began = time.perf_counter()
    xy = normalise(umap_layout(vectors, settings.layout))
    seconds_umap = time.perf_counter() - began
    coarse, fine = (grid_cells(xy, vectors, side, settings.min_count) for side in (settings.coarse, settings.fine))
    layout_stamp = store.write(layout_file, AtlasLayout(
        xy=xy, sizes=np.array([settings.coarse, settings.fine], dtype=np.int64),
        count_coarse=coarse.count.astype(np.int64), mean_coarse=coarse.mean,
        count_fine=fine.count.astype(np.int64), mean_fine=fine.mean))
    result = AtlasResult(key=key, model=model, layer=layer, vectors=stamp, n_vectors=len(vectors),
                         layout=asdict(settings.layout), sizes=[settings.coarse, settings.fine],
                         min_count=settings.min_count, seconds={"umap": seconds_umap},
                         files={layout_file.name: layout_stamp})
    store.write(result_file, result)
    return result
