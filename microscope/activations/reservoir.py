"""A seeded, mergeable reservoir of activation vectors: a uniform sample of fixed size from a stream.

Every candidate (image i, position y, x) gets a priority, a 64-bit hash of (seed, i, y, x); the
reservoir keeps the `capacity` candidates of smallest priority. The hash makes the priorities
independent uniform draws, so the kept set is a uniform sample without replacement of everything
offered - and it depends only on what was offered, not on the order, the batches or how the pass
was split into shards: two reservoirs merge into exactly the reservoir of their union (a bottom-k
sketch). Memory is `capacity` vectors whatever the dataset's size.
"""
from __future__ import annotations

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


class Reservoir:
    """The kept candidates: `keys` (n,) uint64 ascending, `vectors` (n, width) float16 (a layout and cell
    means need no more, and 100k vectors of 800 channels are 160 MB), `image` (n,) int64, `y`, `x` (n,) int32.

    Offers are buffered and pruned to the `capacity` smallest priorities only when the buffer outgrows
    the capacity, so each offer costs its own size, not the reservoir's (amortised); reading any field
    prunes and sorts first.
    """

    FIELDS = ("keys", "vectors", "image", "y", "x")

    def __init__(self, capacity: int, width: int, seed: int, keys=None, vectors=None, image=None, y=None, x=None):
        if capacity < 1:
            raise ValueError(f"a reservoir holds at least one vector, got capacity {capacity}")
        self.capacity, self.width, self.seed = capacity, width, seed
        self._kept = (np.zeros(0, np.uint64) if keys is None else np.asarray(keys, np.uint64),
                      np.zeros((0, width), np.float16) if vectors is None else np.asarray(vectors, np.float16),
                      np.zeros(0, np.int64) if image is None else np.asarray(image, np.int64),
                      np.zeros(0, np.int32) if y is None else np.asarray(y, np.int32),
                      np.zeros(0, np.int32) if x is None else np.asarray(x, np.int32))
        self._pending: list[tuple] = []
        self._sorted = keys is None  # arrays handed in are sorted on first read; pruning unsorts them
        self._pending_count = 0
        self._threshold = None  # the largest kept priority once the reservoir is full: anything above loses

    @classmethod
    def empty(cls, capacity: int, width: int, seed: int) -> "Reservoir":
        return cls(capacity, width, seed)

    def offer(self, vectors: np.ndarray, image: np.ndarray, y: np.ndarray, x: np.ndarray) -> None:
        """Candidates: (n, width) vectors at (image, y, x)."""
        keys = priority(self.seed, image, y, x)
        if self._threshold is not None:  # most candidates of a long stream lose at once
            keep = keys < self._threshold
            keys, vectors, image, y, x = keys[keep], vectors[keep], np.asarray(image)[keep], y[keep], x[keep]
        if len(keys):
            self._pending.append((keys, np.asarray(vectors, np.float16), np.asarray(image, np.int64),
                                  np.asarray(y, np.int32), np.asarray(x, np.int32)))
            self._pending_count += len(keys)
        if self._pending_count > self.capacity:
            self._prune(sort=False)

    def merge(self, other: "Reservoir") -> None:
        if (other.capacity, other.width, other.seed) != (self.capacity, self.width, self.seed):
            raise ValueError("only reservoirs of the same capacity, width and seed merge")
        self.offer(other.vectors, other.image, other.y, other.x)

    def _prune(self, sort: bool) -> None:
        parts = [self._kept] + self._pending
        keys, vectors, image, y, x = (np.concatenate([part[i] for part in parts]) for i in range(5))
        if len(keys) > self.capacity:
            chosen = np.argpartition(keys, self.capacity - 1)[:self.capacity]
            keys, vectors, image, y, x = keys[chosen], vectors[chosen], image[chosen], y[chosen], x[chosen]
            self._threshold = keys.max()
        if sort:
            order = np.argsort(keys, kind="stable")
            keys, vectors, image, y, x = keys[order], vectors[order], image[order], y[order], x[order]
        self._kept, self._pending, self._pending_count = (keys, vectors, image, y, x), [], 0
        self._sorted = sort

    def _field(self, i: int) -> np.ndarray:
        if self._pending or not self._sorted:
            self._prune(sort=True)
        return self._kept[i]

    keys = property(lambda self: self._field(0))
    vectors = property(lambda self: self._field(1))
    image = property(lambda self: self._field(2))
    y = property(lambda self: self._field(3))
    x = property(lambda self: self._field(4))

    def __len__(self) -> int:
        return len(self.keys)

    def state_arrays(self, prefix: str = "atlas/") -> dict[str, np.ndarray]:
        """Everything, as flat arrays for a pass shard (the examples pass stores its state this way)."""
        arrays = {name: getattr(self, name) for name in self.FIELDS}
        arrays["settings"] = np.array([self.capacity, self.width, self.seed], dtype=np.int64)
        return {prefix + name: value for name, value in arrays.items()}

    @classmethod
    def from_state_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "atlas/") -> "Reservoir":
        capacity, width, seed = (int(v) for v in arrays[prefix + "settings"])
        keys, vectors, image, y, x = (np.asarray(arrays[prefix + name]) for name in cls.FIELDS)
        if len(keys) > capacity or vectors.shape != (len(keys), width) or \
                any(len(a) != len(keys) for a in (image, y, x)) or np.any(keys[1:] < keys[:-1]) or \
                not np.array_equal(priority(seed, image, y, x), keys):
            raise ValueError("atlas reservoir state is inconsistent (sizes, order or priorities)")
        return cls(capacity, width, seed, keys, vectors, image, y, x)
