"""What an atlas page says of each cell: its nearest units, the classes it speaks for, a few of its photos.

For each level (the coarse and the fine grid) and each cell shown at it (more than `min_count`
vectors), from the layer's stored sample and layout:

- nearest units: cosine of the cell's mean with each unit's basis vector e_u, i.e. mean_u / |mean|;
- top classes: the mean class attribution (atlas/attribution.py) over up to `attribution_vectors`
  seeded random vectors of the cell (a vector drawn for either level counts for both);
- patches: the receptive fields of the `patches` vectors most like the cell's mean (cosine), one per
  photo, cut from the dataset the sample was drawn from.

The photos are read once, in index order; only the images holding a chosen vector are decoded.
Writes `patches/000000.bin` (+ index) and `cells_coarse.npz`, `cells_fine.npz` (AtlasCells).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microscope.atlas.layout import cell_members
from microscope.atlas.stored import LEVELS
from microscope.data.patches import cut_patches, encode_all
from microscope.data.packs import write_pack
from microscope.store import AtlasCells, AtlasLayout, LayerInfo, Store
from microscope.store.store import ATLAS_PATCH_CHUNK


@dataclass(frozen=True)
class CellSettings:
    nearest_units: int = 6
    top_classes: int = 5
    attribution_vectors: int = 8  # per cell and level
    patches: int = 4
    patch_size: int = 64
    patch_quality: int = 85
    seed: int = 0


@dataclass
class LevelCells:
    """One level's shown cells while they are being described."""

    side: int
    flat: np.ndarray  # (n,) row * side + column of each shown cell
    count: np.ndarray
    mean: np.ndarray  # (n, C)
    members: list[np.ndarray]  # sample rows of each cell

    @classmethod
    def of(cls, layout: AtlasLayout, level: int, min_count: int) -> "LevelCells":
        side = int(layout.sizes[level])
        name = LEVELS[level]
        counts, means = getattr(layout, f"count_{name}"), getattr(layout, f"mean_{name}")
        flat = np.flatnonzero(counts.ravel() > min_count)
        return cls(side, flat, counts.ravel()[flat], means.reshape(side * side, -1)[flat],
                   cell_members(layout.xy, side, flat))


def nearest_units(mean: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(cells, n) units and their cosines, closest first (ties: lower unit first)."""
    norm = np.linalg.norm(mean, axis=1, keepdims=True)
    cos = mean / np.where(norm > 0, norm, 1)
    n = min(n, mean.shape[1])
    units = np.argsort(-cos, axis=1, kind="stable")[:, :n]
    return units.astype(np.int64), np.take_along_axis(cos, units, axis=1).astype(np.float32)


def typical_rows(vectors: np.ndarray, image: np.ndarray, members: np.ndarray, mean: np.ndarray, n: int) -> np.ndarray:
    """Up to n members most like the mean (cosine), at most one per photo; padded with -1."""
    chosen = np.full(n, -1, np.int64)
    block = vectors[members].astype(np.float32)
    cos = block @ mean / (np.linalg.norm(block, axis=1) * max(float(np.linalg.norm(mean)), 1e-12) + 1e-12)
    seen, k = set(), 0
    for i in np.argsort(-cos, kind="stable"):
        if k == n:
            break
        if int(image[members[i]]) not in seen:
            seen.add(int(image[members[i]]))
            chosen[k] = members[i]
            k += 1
    return chosen


def attribution_rows(levels: list[LevelCells], per_cell: int, seed: int) -> np.ndarray:
    """The sample rows whose class attribution is computed: up to `per_cell` of each cell, seeded."""
    rng = np.random.default_rng([seed, 7])
    picked = [rng.choice(members, min(per_cell, len(members)), replace=False)
              for level in levels for members in level.members]
    return np.unique(np.concatenate(picked)) if picked else np.zeros(0, np.int64)


def cell_classes(level: LevelCells, attributed: np.ndarray, attribution: np.ndarray | None,
                 top: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(classes, mean attribution, vectors averaged) per cell: the mean over the cell's attributed rows."""
    n = len(level.flat)
    if attribution is None:
        return np.full((n, top), -1, np.int64), np.full((n, top), np.nan, np.float32), np.zeros(n, np.int64)
    classes, values, used = np.zeros((n, top), np.int64), np.zeros((n, top), np.float32), np.zeros(n, np.int64)
    for i, members in enumerate(level.members):
        found = np.searchsorted(attributed, members)
        hit = members[(found < len(attributed)) & (attributed[np.minimum(found, len(attributed) - 1)] == members)]
        mean = attribution[np.searchsorted(attributed, hit)].mean(axis=0)
        order = np.argsort(-mean, kind="stable")[:top]
        classes[i], values[i], used[i] = order, mean[order], len(hit)
    return classes, values, used


def patch_entries(grid: LayerInfo, view: np.ndarray, requests: list[tuple[int, int, int, int, int]],
                  settings: CellSettings) -> list[tuple[int, int, int, bytes]]:
    """Encoded patches of one photo (its model view, (H, W, 3) uint8) for requests (cell, level, rank, y, x)."""
    ys = np.array([r[3] for r in requests])
    xs = np.array([r[4] for r in requests])
    squares = cut_patches(view, grid, ys, xs, settings.patch_size)
    encoded = encode_all([np.ascontiguousarray(s) for s in squares], "jpg", settings.patch_quality)
    return [(cell, level, rank, data) for (cell, level, rank, _, _), data in zip(requests, encoded)]


def write_cells(store: Store, model: str, layer: str, levels, units, classes, patches) -> dict:
    """Each level's AtlasCells; returns their stamps by file name."""
    stamps = {}
    for index, level in enumerate(levels):
        cls, attr, used = classes[index]
        path = store.atlas_cells_file(model, layer, LEVELS[index])
        stamps[path.name] = store.write(path, AtlasCells(
            row=level.flat // level.side, column=level.flat % level.side, count=level.count.astype(np.int64),
            units=units[index][0], unit_cos=units[index][1], classes=cls, class_attr=attr, attributed=used,
            patches=patches[index]))
    return stamps


def pack_patches(store: Store, model: str, layer: str, entries) -> dict:
    """The cells' patches as one pack; returns its index's stamp by its name in the atlas folder."""
    index = store.atlas_patch_index_file(model, layer)
    stamp = write_pack(index.parent, ATLAS_PATCH_CHUNK, sorted(entries, key=lambda e: e[:3]))
    return {store.file_key(index, store.atlas_dir(model, layer)): stamp}
