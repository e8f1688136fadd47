"""A layer's stored atlas, read back for the site and notebooks (no torch).

The three stages chain: result.json (the layout) -> cells.json -> icons.json, each keyed on the one
before (`stage_key`), so the site shows an atlas only when every stage was made from the same layout.
"""
from __future__ import annotations

from dataclasses import asdict, is_dataclass

from microscope.jobs import hash_json
from microscope.packs import read_pack
from microscope.store import AtlasCells, AtlasIcons, AtlasResult, AtlasStage, Store

VERSION = 1
LEVELS = ("coarse", "fine")
PATCH_INDEX = "patches/000000.idx.npz"


def stage_key(layout_key: str, weights_id: str, settings) -> str:
    """The key of a stage made from the layout `layout_key` with these weights and settings."""
    settings = asdict(settings) if is_dataclass(settings) else settings
    return hash_json({"version": VERSION, "layout": layout_key, "weights": weights_id, "settings": settings},
                     digits=32)


def icons_key(layout_key: str, weights_id: str, icon_settings: dict, cells_key: str) -> str:
    return stage_key(layout_key, weights_id, {"icons": icon_settings, "cells": cells_key})


def is_current(store: Store, model: str, layer: str, name: str, key: str) -> bool:
    """Whether the stage record `name` (cells.json, icons.json) holds `key` and its files check out."""
    folder = store.atlas_dir(model, layer)
    found = store.read(folder / name, AtlasStage)
    return found is not None and found.key == key and \
        all(stamp.problem(folder / file) is None for file, stamp in found.files.items())


def read_atlas(store: Store, model: str, layer: str):
    """The layer's atlas (views.atlas.AtlasData) when all three stages are stored and agree, else None."""
    from microscope.views.atlas import AtlasData

    folder = store.atlas_dir(model, layer)
    result = store.read(folder / "result.json", AtlasResult)
    cells_stage = store.read(folder / "cells.json", AtlasStage)
    icons = store.read(folder / "icons.json", AtlasStage)
    if result is None or cells_stage is None or icons is None:
        return None
    if cells_stage.layout_key != result.key or icons.layout_key != result.key or \
            icons.key != icons_key(result.key, icons.weights_id, icons.settings, cells_stage.key):
        return None  # a stage was redone without the next: the atlas is being rebuilt
    cells = {level: store.read(folder / f"cells_{level}.npz", AtlasCells, cells_stage.files.get(f"cells_{level}.npz"))
             for level in LEVELS}
    if any(found is None for found in cells.values()):
        return None
    patches = read_patches(store, folder, cells_stage.files.get(PATCH_INDEX))
    if patches is None:
        return None
    return AtlasData(folder, result, cells, icons, cells_stage, patches, store)


def read_patches(store: Store, folder, stamp) -> dict | None:
    """(level, cell) -> [PatchRef by rank] of the atlas's patch pack; None if it is missing or damaged."""
    rows = read_pack(store, folder / "patches", PATCH_INDEX.removeprefix("patches/"), stamp) if stamp else None
    if rows is None:
        return None
    found: dict[tuple[str, int], list] = {}
    for cell, level, rank, ref in rows:
        found.setdefault((LEVELS[level], cell), []).insert(rank, ref)
    return found


def icon_pixels(store: Store, data, level: str):
    """(n, S, S, 3) uint8 icons of a level's cells in AtlasCells order, or None if a batch is damaged."""
    import numpy as np

    names = sorted(name for name in data.icons.files if name.startswith(f"icons/{level}-"))
    parts = [store.read(data.folder / name, AtlasIcons, data.icons.files[name]) for name in names]
    if any(part is None for part in parts):
        return None
    size = int(data.icons.settings["size"])
    return np.concatenate([part.pixels for part in parts]) if parts else np.zeros((0, size, size, 3), np.uint8)
