"""The store's record of an atlas's sample of a layer's activation vectors (no torch):

    <root>/<model>/<layer>/examples/atlas_vectors.npz   AtlasVectors, written by the examples pass

The examples pass draws them (microscope/atlas/reservoir.py) while it ranks the layer's examples, so
an atlas never runs the network over the dataset again.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microscope.store.typed import ArrayRecord, RecordError


@dataclass
class AtlasVectors(ArrayRecord):
    """keys (n,) uint64 ascending: the reservoir's priorities; vectors (n, C) float16 at dataset image
    `image`, grid position (y, x); settings (4,): capacity, width, seed, positions drawn per image."""

    ARRAYS = {"keys": ("u", 1), "vectors": ("f", 2), "image": ("i", 1), "y": ("i", 1), "x": ("i", 1),
              "settings": ("i", 1)}

    keys: np.ndarray
    vectors: np.ndarray
    image: np.ndarray
    y: np.ndarray
    x: np.ndarray
    settings: np.ndarray

    def check(self) -> None:
        n = len(self.keys)
        if self.settings.shape != (4,) or self.vectors.shape != (n, int(self.settings[1])) or \
                any(len(getattr(self, name)) != n for name in ("image", "y", "x")) or n > int(self.settings[0]):
            raise RecordError("atlas vectors disagree with their settings on their number or width")
