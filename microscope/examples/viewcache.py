"""The pass's decoded views, kept on disk so that the patches cut after it need not decode again.

Every image of the pass is decoded and resized by the loader's workers; after the pass, the
patches and thumbnails need the same views of the example images - for a few thousand images and
many layers, nearly all of them. Decoding a photo again costs about as much as cutting and encoding
all its patches for one layer (bench/NOTES.md), so the pass writes each batch's views
(3 x crop x crop bytes each, 150 KB at 224 px) into one flat file, at offset index x size.

Only views written by this process are read back (`present`): after a resumed run the earlier
ones are decoded again, so a file left by a killed or power-cut run is never trusted. The file is
temporary (it lives beside the pass's shard states and goes before them) and is only made when it fits:
at most MAX_BYTES, and at most a quarter of the disk's free space. Bigger datasets decode twice.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch

MAX_BYTES = 16 * 2**30


class ViewCache:
    def __init__(self, path: Path, count: int, crop: int):
        """Use `create`, which checks that the file fits."""
        self.path, self.crop = path, crop
        self.size = 3 * crop * crop  # bytes of one view
        self.present = np.zeros(count, dtype=bool)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)

    @classmethod
    def create(cls, path: Path, count: int, crop: int, limit: int = MAX_BYTES) -> "ViewCache | None":
        """A cache for `count` views of crop x crop pixels, or None when it would not fit."""
        path.parent.mkdir(parents=True, exist_ok=True)
        need = 3 * crop * crop * count
        if need > limit or need > shutil.disk_usage(path.parent).free / 4:
            return None
        return cls(path, count, crop)

    def put(self, indices: torch.Tensor, images: torch.Tensor) -> None:
        """Store a batch: uint8 images (n, 3, crop, crop) of dataset `indices` (n,)."""
        data = images.cpu().contiguous().numpy()
        for index, view in zip(indices.tolist(), data):
            os.pwrite(self.fd, view.data, index * self.size)
        self.present[indices.cpu().numpy()] = True

    def get(self, index: int) -> np.ndarray | None:
        """The view of image `index` as a (crop, crop, 3) uint8 array, or None if not stored."""
        if not self.present[index]:
            return None
        data = os.pread(self.fd, self.size, index * self.size)
        if len(data) != self.size:
            return None
        chw = np.frombuffer(data, dtype=np.uint8).reshape(3, self.crop, self.crop)
        return np.ascontiguousarray(chw.transpose(1, 2, 0))

    def remove(self) -> None:
        os.close(self.fd)
        self.path.unlink(missing_ok=True)
