"""Writing the site: atomic, and only when the bytes change, so untouched pages keep their mtimes.

Keeping unchanged files byte-for-byte (and untouched) is what makes a rebuild cheap to publish:
`git` and rsync see only the pages that really changed. It also lets a test prove that rebuilding
one layer leaves every other layer's files alone.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from microscope.names import inside
from microscope.store import atomic_write_bytes


def _file_mode() -> int:
    # The store's atomic writes create files private to their owner (mkstemp: 0600); a site is
    # meant to be read by a web server, so pages get the usual mode the umask allows (0644).
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


@dataclass
class SiteWriter:
    root: Path
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    touched: set[str] = field(default_factory=set)  # every relative path produced this run
    bytes_by_path: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self.root = Path(self.root).resolve()  # prune compares resolved paths

    def path(self, relative: str) -> Path:
        return inside(self.root, relative)

    def write(self, relative: str, data: bytes) -> None:
        """Write `data` at `relative` (a POSIX path inside the site) unless it is already there."""
        target = self.path(relative)
        self._record(relative, len(data))
        try:
            stat = target.stat()
            if stat.st_size == len(data) and target.read_bytes() == data:
                if stat.st_mode & 0o777 != FILE_MODE:  # written by an older build as 0600
                    os.chmod(target, FILE_MODE)
                self.unchanged += 1
                return
        except FileNotFoundError:
            pass
        atomic_write_bytes(target, data)
        os.chmod(target, FILE_MODE)
        self.written += 1

    def write_text(self, relative: str, text: str) -> None:
        self.write(relative, text.encode("utf-8"))

    def keep(self, relative: str) -> bool:
        """Count an existing file as produced without rewriting it; False if it is missing."""
        target = self.path(relative)
        try:
            size = target.stat().st_size
        except FileNotFoundError:
            return False
        self._record(relative, size)
        self.unchanged += 1
        return True

    def _record(self, relative: str, size: int) -> None:
        key = str(PurePosixPath(relative))
        self.touched.add(key)
        self.bytes_by_path[key] = size

    def prune(self, folder: str) -> None:
        """Delete files under `folder` (relative) that this run did not produce, then empty folders."""
        base = self.path(folder)
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base, topdown=False):
            for name in filenames:
                full = Path(dirpath) / name
                relative = full.relative_to(self.root).as_posix()
                if relative not in self.touched:
                    full.unlink()
                    self.removed += 1
            for name in dirnames:
                sub = Path(dirpath) / name
                if sub.is_dir() and not any(sub.iterdir()):
                    sub.rmdir()

    def bytes_under(self, prefix: str) -> int:
        prefix = prefix.rstrip("/") + "/"
        return sum(size for path, size in self.bytes_by_path.items() if path.startswith(prefix))


def folder_size(root: Path) -> tuple[int, int]:
    """(total bytes, number of files) under `root`."""
    total = count = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            total += (Path(dirpath) / name).stat().st_size
            count += 1
    return total, count
