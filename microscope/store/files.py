"""Files of the artifact store: atomic writes, content hashes, and checks that a folder is usable.

Every write goes to a temp file in the same folder and is renamed into place, so a killed run never
leaves a half-written file under a real name. Writers hash what they write (`FileStamp`), so a
reader can tell a damaged file from a good one without trusting its name.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from microscope.errors import UsageError

_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # mkstemp makes 0600 files; stores and sites are read by other programs


@dataclass(frozen=True)
class FileStamp:
    """What a file held when it was written: its size and sha256."""

    size: int
    sha256: str

    @classmethod
    def of_bytes(cls, data: bytes) -> "FileStamp":
        return cls(len(data), hashlib.sha256(data).hexdigest())

    @classmethod
    def of_file(cls, path: Path) -> "FileStamp":
        digest, size = hashlib.sha256(), 0
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
        return cls(size, digest.hexdigest())

    def problem(self, path: Path) -> str | None:
        """None if `path` still holds what was written, else what is wrong (missing, size, content)."""
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return "missing"
        if size != self.size:
            return f"{size} bytes instead of {self.size}"
        if FileStamp.of_file(path).sha256 != self.sha256:
            return "content changed since it was written"
        return None


def atomic_write_bytes(path: str | Path, data: bytes, sync: bool = True) -> FileStamp:
    """Temp file in the same folder, then rename. `sync=False` skips the fsync, for many files
    written in a row that the caller flushes with one os.sync() before it marks them complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return FileStamp.of_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> FileStamp:
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_text(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n"


def atomic_write_json(path: str | Path, obj: Any) -> FileStamp:
    return atomic_write_text(path, json_text(obj))


def npz_bytes(arrays: dict[str, np.ndarray], compress: bool = True) -> bytes:
    """Like np.savez_compressed at zlib level 1 (a few times faster, slightly larger files), or
    like np.savez when not `compress` (for big temporary state that is written often)."""
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", compression=method, compresslevel=1 if compress else None) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, np.asanyarray(array), allow_pickle=False)
    return buffer.getvalue()


def atomic_save_npz(path: str | Path, arrays: dict[str, np.ndarray], sync: bool = True,
                    compress: bool = True) -> FileStamp:
    return atomic_write_bytes(path, npz_bytes(arrays, compress), sync=sync)


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file; raises OSError/ValueError (zipfile.BadZipFile is one) if damaged."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def image_bytes(image, suffix: str, **save_args) -> bytes:
    """A PIL image encoded as the file suffix says (.png, .webp, .jpg)."""
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}[suffix.lower()]
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def usable_folder(path: str | Path, what: str, option: str, create: bool = True) -> Path:
    """Make sure `path` is (or can become) a folder this process can write; one clear line if not.

    Checked before any work starts, so that a bad --out or --store never costs hours of compute.
    With create=False nothing is made: the nearest existing folder is tried instead.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is a file, not a folder; pass a folder for the {what}")
    existing = path
    while not create and not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        elif not existing.is_dir():
            raise NotADirectoryError(20, "a part of the path is a file")
        fd, probe = tempfile.mkstemp(dir=path if create else existing, prefix=".microscope-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UsageError(f"cannot write the {what} at {option} {path} ({reason}); pass a writable folder") from None
    return path
