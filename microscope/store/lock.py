"""One writing run per store at a time, and the leftovers of killed runs swept before it starts.

A run that computes takes an advisory lock on `<store>/.lock` for as long as it writes. The kernel
drops the lock when the process ends, however it ends, so a killed run never leaves the store locked.
Holding the lock is also what makes it safe to delete temp files: no other writer can own them, so
every `.*.tmp` under the store is what a killed run left between creating and renaming a file.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from microscope.errors import UsageError

LOCK_NAME = ".lock"


@contextmanager
def writing(root: str | Path, what: str = "the artifact store", name: str = LOCK_NAME,
            option: str = "--store") -> Iterator[int]:
    """Hold the folder's write lock; yields how many leftover temp files were removed.

    Raises UsageError at once (no waiting) if another process holds it. The store and a site folder
    each have one (`what`, `name` and `option` say which in the message).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "another process"
            raise UsageError(f"{what} {root} is in use by another run (pid {holder}); "
                             f"wait for it to finish, or pass another {option}") from None
        held = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        yield sweep_temp_files(root)
    finally:
        if held:
            os.ftruncate(fd, 0)  # the pid only while running: a finished store holds no trace of the run
        os.close(fd)  # closing releases the lock


def check_free(root: str | Path, what: str = "the artifact store", name: str = LOCK_NAME,
               option: str = "--store") -> None:
    """Raise the same one line as `writing` if another process holds the folder's lock now (taking and
    releasing it at once), so that a command can refuse before hours of work instead of after."""
    if (Path(root) / name).is_file():
        with writing(root, what, name, option):
            pass


def sweep_temp_files(root: Path) -> int:
    """Remove the temp files of interrupted atomic writes below `root`; only call it holding the lock."""
    removed = 0
    for path in root.rglob(".*.tmp"):
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed += 1
    return removed
