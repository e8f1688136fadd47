"""A seeded, mergeable reservoir of activation vectors: a uniform sample of fixed size from a stream.

Every candidate (image i, position y, x) gets a priority, a 64-bit hash of (seed, i, y, x); the
reservoir keeps the `capacity` candidates of smallest priority. The hash makes the priorities
independent uniform draws, so the kept set is a uniform sample without replacement of everything
offered - and it depends only on what was offered, not on the order, the batches or how the pass
was split into shards: two reservoirs merge into exactly the reservoir of their union (a bottom-k
sketch). Memory is `capacity` vectors whatever the dataset's size.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, element-wise on uint64: a bijection that scatters nearby inputs."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return x ^ (x >> np.uint64(31))


def priority(seed: int, image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(n,) uint64 priorities of candidates; distinct candidates collide with probability ~n² / 2^64."""
    image, y, x = (np.asarray(a, dtype=np.uint64) for a in (image, y, x))
    with np.errstate(over="ignore"):
        h = splitmix64(np.full(image.shape, seed, dtype=np.uint64))
        for part in (image, y, x):
            h = splitmix64(h ^ part)
    return h


@dataclass
class Reservoir:
    capacity: int
    width: int
    seed: int
    keys: np.ndarray  # (n,) uint64, ascending
    vectors: np.ndarray  # (n, width) float32
    image: np.ndarray  # (n,) int64
    y: np.ndarray  # (n,) int32
    x: np.ndarray  # (n,) int32

    @classmethod
    def empty(cls, capacity: int, width: int, seed: int) -> "Reservoir":
        if capacity < 1:
            raise ValueError(f"a reservoir holds at least one vector, got capacity {capacity}")
        return cls(capacity, width, seed, np.zeros(0, np.uint64), np.zeros((0, width), np.float32),
                   np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32))

    def offer(self, vectors: np.ndarray, image: np.ndarray, y: np.ndarray, x: np.ndarray) -> None:
        """Candidates: (n, width) vectors at (image, y, x)."""
        keys = priority(self.seed, image, y, x)
        if len(self.keys) >= self.capacity:  # most candidates of a long stream lose at once
            keep = keys < self.keys[-1]
            keys, vectors, image, y, x = keys[keep], vectors[keep], image[keep], y[keep], x[keep]
        self._keep(np.concatenate([self.keys, keys]), np.concatenate([self.vectors, vectors.astype(np.float32)]),
                   np.concatenate([self.image, np.asarray(image, np.int64)]),
                   np.concatenate([self.y, np.asarray(y, np.int32)]), np.concatenate([self.x, np.asarray(x, np.int32)]))

    def merge(self, other: "Reservoir") -> None:
        if (other.capacity, other.width, other.seed) != (self.capacity, self.width, self.seed):
            raise ValueError("only reservoirs of the same capacity, width and seed merge")
        self.offer(other.vectors, other.image, other.y, other.x)

    def _keep(self, keys, vectors, image, y, x) -> None:
        order = np.argsort(keys, kind="stable")[:self.capacity]
        self.keys, self.vectors, self.image, self.y, self.x = keys[order], vectors[order], image[order], y[order], x[order]

    def __len__(self) -> int:
        return len(self.keys)

    def state_arrays(self, prefix: str = "atlas/") -> dict[str, np.ndarray]:
        """Everything, as flat arrays for a pass shard (the examples pass stores its state this way)."""
        arrays = {name: getattr(self, name) for name in ("keys", "vectors", "image", "y", "x")}
        arrays["settings"] = np.array([self.capacity, self.width, self.seed], dtype=np.int64)
        return {prefix + name: value for name, value in arrays.items()}

    @classmethod
    def from_state_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "atlas/") -> "Reservoir":
        capacity, width, seed = (int(v) for v in arrays[prefix + "settings"])
        found = cls(capacity, width, seed, *(np.asarray(arrays[prefix + name])
                                             for name in ("keys", "vectors", "image", "y", "x")))
        if len(found.keys) > capacity or found.vectors.shape != (len(found.keys), width) or \
                np.any(np.diff(found.keys.astype(np.float64)) < 0) or \
                not np.array_equal(priority(seed, found.image, found.y, found.x), found.keys):
            raise ValueError("atlas reservoir state is inconsistent (sizes, order or priorities)")
        return found

