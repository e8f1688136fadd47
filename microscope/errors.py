"""The exception types the CLI turns into a single clear line and exit code 2, and how a full disk is told
from other failures of a write.

Exit codes of every command: 0 done; 1 some jobs failed (the rest finished and are kept; the summary says
which, and a rerun does only what is missing); 2 bad input or an unusable environment before this run
finished anything - one line on stderr naming the problem and what to do.
"""
from __future__ import annotations

import errno
import shutil
from pathlib import Path

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a full filesystem, a full quota: free space, then run again


class UsageError(Exception):
    """Bad input or missing resources: the message says what is wrong and what to do."""


class DiskFull(UsageError):
    """A folder ran out of space before the run finished anything: the one line names the folder, the space
    needed and that a rerun keeps what finished."""


def no_space(error: BaseException | None) -> OSError | None:
    """The no-space error (ENOSPC, EDQUOT) `error` is or was raised from, else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in NO_SPACE:
            return error
        error = error.__cause__ or error.__context__ or getattr(error, "cause", None)  # Ray: the task's error
    return None


def no_space_line(where: str, folder, reason: str, needs: str, rerun: str) -> str:
    """The one line for a folder that ran out of space: `where` it is ("the store"), why (the error's text),
    what the rest `needs` ("7 jobs did not finish and need about 31 MB") and what a rerun keeps."""
    try:
        free = f", {megabytes(shutil.disk_usage(folder).free)} free"
    except OSError:
        free = ""
    return f"no space left in {where} {Path(folder)} ({reason}{free}): {needs}; make room there and {rerun}"


def megabytes(size: float) -> str:
    """'0.4 MB', '31 MB', '2.3 GB': a size as a line about space says it."""
    if size >= 1e9:
        return f"{size / 1e9:.1f} GB"
    return f"{size / 1e6:.1f} MB" if size < 10e6 else f"{size / 1e6:.0f} MB"
