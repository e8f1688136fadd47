"""Each unit's maximum over positions in every image of a fixed, seeded sample of the images: what the
concept scores rank (microscope/concepts/scoring.py).

Which images are kept is decided before the pass from the image indices alone (a seeded permutation),
so every shard keeps the same images it would in one pass, and merging shards is putting their rows
together: exact, in any order. Memory is the sample's size times the units, never the dataset's size:
`capacity` images at most, and at most VALUES values per layer (64 MB of float32).
"""
from __future__ import annotations

import numpy as np
import torch

VALUES = 16 * 2**20


def sampled_images(n_images: int, capacity: int, channels: int, seed: int) -> np.ndarray:
    """(n_images,) bool: the images whose maxima are kept, at most min(capacity, VALUES // channels)."""
    count = min(n_images, capacity, VALUES // max(1, channels))
    chosen = np.zeros(n_images, dtype=bool)
    chosen[np.random.default_rng([seed, 2]).permutation(n_images)[:count]] = True
    return chosen


class ImageMaxima:
    """The per-image maxima of the sampled images, in the order they were seen (`result` sorts them)."""

    def __init__(self, chosen: np.ndarray, channels: int):
        self.chosen = np.asarray(chosen, dtype=bool)
        self.channels = channels
        self.index: list[np.ndarray] = []
        self.values: list[np.ndarray] = []

    def update(self, top: torch.Tensor, indices) -> None:
        """top: (N, C) maxima over positions of the batch's images `indices` (host data). The kept rows stay
        on top's device until the state is read (`result`): nothing is read back per batch."""
        indices = np.asarray(indices, dtype=np.int64)
        rows = np.flatnonzero(self.chosen[indices])
        if rows.size:
            self.index.append(indices[rows])
            self.values.append(top.index_select(0, torch.from_numpy(rows).to(top.device, non_blocking=True)).float())

    def merge(self, other: "ImageMaxima") -> None:
        self.index += other.index
        self.values += other.values

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(image indices (M,) ascending, maxima (C, M) float32)."""
        index = np.concatenate(self.index) if self.index else np.zeros(0, np.int64)
        values = torch.cat([torch.as_tensor(v).cpu() for v in self.values]).numpy() if self.values else \
            np.zeros((0, self.channels), np.float32)
        order = np.argsort(index, kind="stable")
        return index[order], np.ascontiguousarray(values[order].T)

    def state_arrays(self) -> dict[str, np.ndarray]:
        index, values = self.result()
        return {"maxima/index": index, "maxima/values": values}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        index, values = np.array(arrays["maxima/index"]), np.array(arrays["maxima/values"])
        self.index, self.values = [index], [values.T.reshape(len(index), self.channels)]
