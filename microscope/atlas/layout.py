"""An atlas's 2D layout of activation vectors and the grid of cells over it (Lucid's recipe).

    UMAP (cosine metric, 50 neighbours, min_dist 0.05, seeded) -> (n, 2)
    clip each axis to its 1st-99th percentile, add a 10 % margin, scale to [0, 1]
    a G x G grid: each cell with more than `min_count` vectors gets their mean

A fixed `random_state` makes umap-learn deterministic (and single-threaded): the same vectors and seed
give the same layout on the same machine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LayoutSettings:
    n_neighbors: int = 50
    min_dist: float = 0.05
    metric: str = "cosine"
    seed: int = 0


def umap_layout(vectors: np.ndarray, settings: LayoutSettings) -> np.ndarray:
    """(n, width) -> (n, 2) float32."""
    import umap  # umap-learn, deferred: importing it takes seconds (numba) and only this step needs it

    reducer = umap.UMAP(n_components=2, n_neighbors=min(settings.n_neighbors, len(vectors) - 1),
                        min_dist=settings.min_dist, metric=settings.metric, random_state=settings.seed,
                        n_jobs=1)  # a seed makes umap single-threaded anyway; saying so silences its warning
    return reducer.fit_transform(np.asarray(vectors, dtype=np.float32)).astype(np.float32)


def normalise(xy: np.ndarray, low: float = 1, high: float = 99, margin: float = 0.1) -> np.ndarray:
    """Clip each axis to its [low, high] percentiles, widen by `margin` of the range, scale to [0, 1]."""
    lo, hi = np.percentile(xy, low, axis=0), np.percentile(xy, high, axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - margin * span, hi + margin * span
    return ((np.clip(xy, lo, hi) - lo) / (hi - lo)).astype(np.float32)


@dataclass
class Cells:
    size: int  # G: the grid is G x G
    count: np.ndarray  # (G, G) vectors per cell
    mean: np.ndarray  # (G, G, width) mean vector of cells with more than min_count, else 0
    shown: np.ndarray  # (G, G) bool: count > min_count


def cell_of(xy01: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of each point in [0, 1]²; a point on the upper edge belongs to the last cell."""
    column = np.minimum((xy01[:, 0] * size).astype(np.int64), size - 1)
    row = np.minimum((xy01[:, 1] * size).astype(np.int64), size - 1)
    return row, column


def cell_members(xy01: np.ndarray, size: int, cells: np.ndarray) -> list[np.ndarray]:
    """The points (indices into xy01, ascending) of each cell of `cells` (flat: row * size + column)."""
    row, column = cell_of(xy01, size)
    flat = row * size + column
    order = np.argsort(flat, kind="stable")
    starts, stops = np.searchsorted(flat[order], cells), np.searchsorted(flat[order], cells, side="right")
    return [order[start:stop] for start, stop in zip(starts, stops)]


def grid_cells(xy01: np.ndarray, vectors: np.ndarray, size: int, min_count: int = 5) -> Cells:
    row, column = cell_of(xy01, size)
    flat = row * size + column
    count = np.bincount(flat, minlength=size * size)
    total = np.zeros((size * size, vectors.shape[1]), np.float64)
    np.add.at(total, flat, vectors.astype(np.float64))
    shown = count > min_count
    mean = np.where(shown[:, None], total / np.maximum(count, 1)[:, None], 0).astype(np.float32)
    return Cells(size, count.reshape(size, size), mean.reshape(size, size, -1), shown.reshape(size, size))
