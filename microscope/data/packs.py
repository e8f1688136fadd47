"""Patch packs: a layer's receptive-field patches, many encoded images to a file.

A layer has C x (k + 12) patches (inception_4a: 30,720; nine inception blocks: ~330,000). As one
file each, creating the files would cost more than cutting and encoding the patches, so they are
packed:

    patches/<chunk>.bin       the encoded images (JPEG, WebP or PNG files' bytes), back to back
    patches/<chunk>.idx.npz   one row per patch: unit, kind, rank, offset, length (PatchIndex)

Chunk c holds the patches cut from dataset images [c * n, (c + 1) * n) (n = CHUNK unless the examples
settings say otherwise), so a pack's content
depends only on its images and the layer's examples, never on the order of work. kind 0 is a top
example, 1 a bottom example, 2 + b a sample of quantile band b. The .bin is written before its index
(each atomically): a pack is complete exactly when its index exists. A unit's patch is read with
one seek, so the site reads 60 small pieces per unit out of a few large files.

No torch here: the site reads packs too.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from microscope.store import FileStamp, PatchIndex, Store, atomic_write_bytes

CHUNK = 64  # dataset images per pack
TOP, BOTTOM, BAND0 = 0, 1, 2


def kind_name(kind: int) -> str:
    return "top" if kind == TOP else "bottom" if kind == BOTTOM else f"band{kind - BAND0}"


@dataclass(frozen=True)
class PatchRef:
    """Where one patch's bytes are: `length` bytes at `offset` of the pack `path`."""

    path: Path
    offset: int
    length: int

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.length)
        if len(data) != self.length:
            raise OSError(f"patch pack {self.path} is shorter than its index says; rebuild the layer's examples")
        return data

    def open_bytes(self) -> io.BytesIO:
        return io.BytesIO(self.read())


def write_pack(directory: Path, chunk: int, entries: list[tuple[int, int, int, bytes]]) -> FileStamp:
    """Write the pack of `chunk`: entries are (unit, kind, rank, encoded image), stored in this order.
    Returns the stamp of its index (which holds the stamp of the .bin)."""
    index_file = Store.patch_index_file(directory, chunk)
    offsets = np.cumsum([0] + [len(data) for *_, data in entries])
    stamp = atomic_write_bytes(Store.patch_pack_file(index_file), b"".join(data for *_, data in entries),
                               sync=False)
    columns = np.array([entry[:3] for entry in entries], dtype=np.int64).reshape(-1, 3)
    index = PatchIndex(unit=columns[:, 0], kind=columns[:, 1], rank=columns[:, 2], offset=offsets[:-1],
                       length=np.diff(offsets), bin_size=np.array(stamp.size), bin_sha256=np.array(stamp.sha256))
    return Store.write(index_file, index, sync=False)


def pack_complete(directory: Path, chunk: int) -> bool:
    return Store.patch_index_file(directory, chunk).is_file()


def complete_chunks(directory: Path) -> set[int]:
    """Chunks whose pack is complete; leftovers of a killed run (temp files, a .bin without its
    index) are removed on the way - so never call it while packs are being written."""
    if not directory.is_dir():
        return set()
    names = os.listdir(directory)
    done = {Store.patch_index_chunk(name) for name in names} - {None}
    for name in names:
        chunk = Store.patch_pack_chunk(name)
        if name.endswith(".tmp") or (chunk is not None and chunk not in done):
            os.unlink(directory / name)
    return done


def pack_indexes(directory: Path) -> list[str]:
    """Names of the complete packs' index files in `directory`, sorted (each stamps its .bin)."""
    return [Store.patch_index_file(directory, chunk).name for chunk in sorted(complete_chunks(directory))]


def read_patch_index(store: Store, directory: Path, stamps: dict[str, FileStamp] | None = None
                     ) -> dict[int, dict[tuple[str, int], PatchRef]] | None:
    """unit -> {(kind name, rank): PatchRef} of every pack in a layer's patches/ folder.

    `stamps` (index name -> FileStamp, as the layer's result records them) are checked, and each
    pack against the stamp its index holds: None if any pack is missing or damaged (said once).
    """
    found: dict[int, dict[tuple[str, int], PatchRef]] = {}
    if not directory.is_dir():
        return found if not stamps else None
    names = sorted(name for name in (stamps or os.listdir(directory)) if Store.patch_index_chunk(name) is not None)
    for name in names:
        rows = read_pack(store, directory, name, stamps.get(name) if stamps else None)
        if rows is None:
            return None
        for unit, kind, rank, ref in rows:
            found.setdefault(unit, {})[(kind_name(kind), rank)] = ref
    return found


def read_pack(store: Store, directory: Path, name: str, stamp: FileStamp | None = None
              ) -> list[tuple[int, int, int, PatchRef]] | None:
    """(unit, kind, rank, PatchRef) of every patch of the pack whose index is `directory/name`, the index
    checked against `stamp` and the .bin against the index; None if either is missing or damaged (said once)."""
    pack = Store.patch_pack_file(directory / name)
    index = store.read(directory / name, PatchIndex, stamp)
    if index is None:
        return None
    problem = index.bin_stamp.problem(pack)
    if problem:
        return store.damaged(pack, problem)
    rows = zip(*(getattr(index, key).tolist() for key in PatchIndex.COLUMNS))
    return [(unit, kind, rank, PatchRef(pack, offset, length)) for unit, kind, rank, offset, length in rows]
