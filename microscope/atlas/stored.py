"""A layer's stored atlas, read back for the site and notebooks (no torch).

The three stages chain: result.json (the layout) -> cells.json -> icons.json, each keyed on the one
before (`stage_key`), so the site shows an atlas only when every stage was made from the same layout.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, is_dataclass

import numpy as np

from microscope.data.packs import read_pack
from microscope.jobs import hash_json
from microscope.store import AtlasCells, AtlasIcons, AtlasLayout, AtlasResult, AtlasStage, Store

VERSION = 1
LEVELS = ("coarse", "fine")


@dataclass
class AtlasData:
    """A layer's stored atlas, every stage current (torch-free; read by atlas/page.py and notebooks)."""

    folder: object  # Path of <layer>/atlas in the store
    result: AtlasResult
    cells: dict  # level -> AtlasCells
    icons: AtlasStage  # of the icons
    cells_stage: AtlasStage  # of the cells
    patches: dict = field(default_factory=dict)  # (level, cell) -> [PatchRef by rank]
    store: Store = None  # the Store it was read from

    def icon_pixels(self, level: str = "coarse"):
        """(n, S, S, 3) uint8: the icons of the level's cells, in `cells[level]` order."""
        return icon_pixels(self.store, self, level)

    def layout(self) -> AtlasLayout | None:
        """The AtlasLayout: every sampled vector's place (xy in [0, 1]^2) and both grids' counts and means."""
        path = self.store.atlas_layout_file(self.result.model, self.result.layer)
        return self.store.read(path, AtlasLayout, self.result.files.get(path.name))


@dataclass
class NoGrid:
    """What the page of a layer without positions (the logits) says instead of an atlas."""

    layer: str
    note: str = "No activation atlas: this layer has no spatial grid (one vector per image, no positions to sample)."


def batches(n: int, size: int) -> list[tuple[int, int]]:
    """[first, last) of each batch of `size` of n cells: a level's icons are rendered and stored so."""
    return [(first, min(n, first + size)) for first in range(0, n, size)]


def stage_key(layout_key: str, weights_id: str, settings) -> str:
    """The key of a stage made from the layout `layout_key` with these weights and settings."""
    settings = asdict(settings) if is_dataclass(settings) else settings
    return hash_json({"version": VERSION, "layout": layout_key, "weights": weights_id, "settings": settings},
                     digits=32)


def icons_key(layout_key: str, weights_id: str, icon_settings: dict, cells_key: str) -> str:
    return stage_key(layout_key, weights_id, {"icons": icon_settings, "cells": cells_key})


def is_current(store: Store, model: str, layer: str, stage: str, key: str) -> bool:
    """Whether the record of `stage` (cells, icons) holds `key` and its files check out."""
    folder = store.atlas_dir(model, layer)
    found = store.read(store.atlas_stage_file(model, layer, stage), AtlasStage)
    return found is not None and found.key == key and \
        all(stamp.problem(folder / file) is None for file, stamp in found.files.items())


def read_atlas(store: Store, model: str, layer: str) -> AtlasData | None:
    """The layer's atlas when all three stages are stored and agree, else None."""
    result = store.read(store.atlas_result_file(model, layer), AtlasResult)
    cells_stage = store.read(store.atlas_stage_file(model, layer, "cells"), AtlasStage)
    icons = store.read(store.atlas_stage_file(model, layer, "icons"), AtlasStage)
    if result is None or cells_stage is None or icons is None:
        return None
    if cells_stage.layout_key != result.key or icons.layout_key != result.key or \
            icons.key != icons_key(result.key, icons.weights_id, icons.settings, cells_stage.key):
        return None  # a stage was redone without the next: the atlas is being rebuilt
    folder = store.atlas_dir(model, layer)
    cell_files = {level: store.atlas_cells_file(model, layer, level) for level in LEVELS}
    cells = {level: store.read(path, AtlasCells, cells_stage.files.get(path.name)) for level, path in cell_files.items()}
    if any(found is None for found in cells.values()):
        return None
    index = store.atlas_patch_index_file(model, layer)
    patches = read_patches(store, index, cells_stage.files.get(store.file_key(index, folder)))
    if patches is None:
        return None
    return AtlasData(folder, result, cells, icons, cells_stage, patches, store)


def read_patches(store: Store, index, stamp) -> dict | None:
    """(level, cell) -> [PatchRef by rank] of the atlas's patch pack (its index at `index`, stamped `stamp`);
    None if it is missing or damaged."""
    rows = read_pack(store, index.parent, index.name, stamp) if stamp else None
    if rows is None:
        return None
    found: dict[tuple[str, int], list] = {}
    for cell, level, rank, ref in rows:
        found.setdefault((LEVELS[level], cell), []).insert(rank, ref)
    return found


def icon_pixels(store: Store, data: AtlasData, level: str):
    """(n, S, S, 3) uint8 icons of a level's cells in AtlasCells order, or None if a batch is damaged."""
    size, batch = int(data.icons.settings["size"]), int(data.icons.settings["batch_size"])
    files = [store.atlas_icons_file(data.result.model, data.result.layer, level, first)
             for first, _ in batches(len(data.cells[level].row), batch)]
    stamps = [data.icons.files.get(store.file_key(path, data.folder)) for path in files]
    if any(stamp is None for stamp in stamps):
        return None  # the icons record does not vouch for every batch
    parts = [store.read(path, AtlasIcons, stamp) for path, stamp in zip(files, stamps)]
    if any(part is None for part in parts):
        return None
    return np.concatenate([part.pixels for part in parts]) if parts else np.zeros((0, size, size, 3), np.uint8)
