"""Finding a folder's image files - each real file once - and opening only regular files.

Discovery lists each real file once and never opens anything but regular files, because image folders
come from anywhere (a tarball, a shared drive) and may hold FIFOs, sockets, devices, dangling links or
link loops. Symlinks are followed, to files and to folders, inside the root or outside it, so that a
dataset assembled from links works; an image keeps its in-root name (the link's path, never its
target's), so where a target lives never reaches the store's file list or the site. A file reached by
two names (a link, a hard link, a folder link) is listed once, under the first name in sorted order;
a folder link back to the root, an ancestor of it or a folder above it on the walk is not entered.
What is left out is counted by reason in one warning line per scan. Decoding (images.py) checks
again, on the opened descriptor, that the file is still a regular one, so a FIFO put in a photo's
place later cannot block a run.
"""
from __future__ import annotations

import codecs
import errno
import hashlib
import logging
import os
import stat
from pathlib import Path, PurePosixPath

from microscope.errors import UsageError

log = logging.getLogger("microscope.data.images")

SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


def open_regular(path: Path):
    """`path` opened for binary reading, if it is a regular file; else `NotRegular`.

    The type is checked before opening, because opening a FIFO blocks until a writer comes and
    opening some devices has effects; and again on the descriptor, opened non-blocking, in case
    something else took the file's place in between.
    """
    kind = file_kind(os.stat(path).st_mode)
    if kind:
        raise NotRegular(kind)
    nonblocking = getattr(os, "O_NONBLOCK", 0)  # POSIX; there are no FIFOs to fear elsewhere
    fd = os.open(path, os.O_RDONLY | nonblocking | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        kind = file_kind(os.fstat(fd).st_mode)
        if kind:
            raise NotRegular(kind)
        if nonblocking:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class NotRegular(Exception):
    def __init__(self, kind: str):
        super().__init__(f"not a regular file ({kind})")
        self.kind = kind


def file_kind(mode: int) -> str | None:
    """None for a regular file, else what it is, in words."""
    if stat.S_ISREG(mode):
        return None
    return "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else \
        "a folder" if stat.S_ISDIR(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file"


def find_images(root: Path) -> tuple[list[str], dict[str, str]]:
    """The in-root names of the images under `root`, sorted, and {name: why it is left out}."""
    message = f"no images found in {root} (looked for {' '.join(SUFFIXES)})"
    if not root.is_dir():
        raise UsageError(f"{message}: the folder does not exist; pass a folder of images")
    if not _is_utf8(root.resolve().name):  # the site shows the folder's name, as UTF-8 text
        raise UsageError(f"the image folder's name {_shown(root.resolve().name)} is not UTF-8 text; rename it")
    candidates, skipped = _walk(root)
    if "." in skipped:
        raise UsageError(f"cannot list the image folder {root}: {skipped['.']}; check its permissions")
    found, owner = [], {}
    for relative, identity in sorted(candidates):  # the first name in sorted order keeps the file
        if identity in owner:
            skipped[relative] = f"duplicate of {owner[identity]}"
        else:
            owner[identity] = relative
            found.append(relative)
    _say_skipped(root, skipped)
    if not found:
        raise UsageError(message)
    return found, skipped


def _walk(root: Path) -> tuple[list[tuple[str, tuple[int, int]]], dict[str, str]]:
    """(in-root name, (st_dev, st_ino)) of every regular image file, and the entries left out.

    Subfolders are walked in sorted order, so which name of a folder reached twice is walked does
    not depend on the file system's listing order.
    """
    top = root.resolve()
    above = {_identity(folder) for folder in (top, *top.parents)}  # a link to one of these loops
    walked: dict[str, tuple[int, int]] = {}  # in-root folder name -> identity, of folders walked
    seen: set[tuple[int, int]] = set()  # the same identities, for a quick lookup
    candidates, skipped = [], {}

    def unlistable(error: OSError) -> None:
        skipped[_relative(root, error.filename)] = f"unreadable folder ({error.strerror})"

    for directory, subdirs, names in os.walk(root, followlinks=True, onerror=unlistable):
        here = _relative(root, directory)
        try:
            identity = _identity(directory)
        except OSError as error:  # gone since it was listed
            skipped[here] = f"unreadable folder ({error.strerror})"
            subdirs[:] = []
            continue
        ancestors = [walked.get(str(parent)) for parent in PurePosixPath(here).parents]
        if here != "." and (identity in above or identity in ancestors):
            skipped[here] = "link loop"
        elif identity in seen:
            skipped[here] = "duplicate folder"
        if here in skipped:
            subdirs[:] = []
            continue
        walked[here] = identity
        seen.add(identity)
        subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))
        for name in names:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in SUFFIXES:
                relative = _relative(root, os.path.join(directory, name))
                # A name that is not UTF-8 (its bytes arrive as surrogates) cannot be hashed, stored
                # as JSON or shown on a page.
                problem, identity = ("name not UTF-8", None) if not _is_utf8(relative) else \
                    _regular_file(os.path.join(directory, name))
                if problem:
                    skipped[relative] = problem
                else:
                    candidates.append((relative, identity))
    return candidates, skipped


def _relative(root: Path, path: str) -> str:
    return Path(path).relative_to(root).as_posix()


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _shown(name: str) -> str:
    """A file name as one printable line: undecodable bytes and control characters escaped."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _identity(path: str | Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _regular_file(path: str) -> tuple[str | None, tuple[int, int] | None]:
    """(None, identity) of a regular file (links followed), else (why not, None); never opens it."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return ("dangling link" if os.path.islink(path) else "vanished while scanning"), None
    except OSError as error:
        return ("link loop" if error.errno == errno.ELOOP else f"unreadable ({error.strerror})"), None
    kind = file_kind(info.st_mode)
    return (f"not a regular file ({kind})", None) if kind else (None, (info.st_dev, info.st_ino))


_SAID: set[tuple[str, str]] = set()  # (folder, warning) said by this process: later stages scan again


def _say_skipped(root: Path, skipped: dict[str, str]) -> None:
    """One warning line: how many entries were left out, by reason, with the first of each."""
    if not skipped:
        return
    first: dict[str, str] = {}
    counts: dict[str, int] = {}
    for relative in sorted(skipped):
        reason = skipped[relative].split(" (")[0].split(" of ")[0]  # "duplicate of a.jpg" -> "duplicate"
        first.setdefault(reason, relative)
        counts[reason] = counts.get(reason, 0) + 1
    parts = [f"{counts[reason]} {reason} (first: {_shown(first[reason])})" for reason in sorted(counts)]
    line = f"skipped {len(skipped)} entries of {_shown(root.name or str(root))}: {', '.join(parts)}"
    if (str(root.resolve()), line) not in _SAID:
        _SAID.add((str(root.resolve()), line))
        log.warning(line)


def read_text_file(path: str | Path, what: str, expected: str) -> str:
    """A small text file's UTF-8 text (BOM dropped), or one line naming the file and, if the bytes are
    the problem, the line: a FIFO or folder, a file it cannot read, one not UTF-8 or holding NUL bytes.
    `what` names the file in messages ("labels file"); `expected` is what to pass instead."""
    try:
        with open_regular(Path(path)) as f:
            data = f.read()
    except NotRegular as error:
        raise UsageError(f"{what} {path} is not a regular file ({error.kind}); pass {expected}") from None
    except OSError as error:  # missing, a dangling link, no permission
        raise UsageError(f"cannot read {what} {path}: {error.strerror or error}; pass {expected}") from None
    data = data[len(codecs.BOM_UTF8):] if data.startswith(codecs.BOM_UTF8) else data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise UsageError(f"{what} {path} line {line} is not UTF-8 text (byte 0x{data[error.start]:02x}); "
                         "save it as UTF-8") from None
    if "\0" in text:
        line = text[:text.index("\0")].count("\n") + 1
        raise UsageError(f"{what} {path} line {line} holds a NUL byte: a binary file, not text; pass {expected}")
    return text


def content_digest(path: Path, chunk: int = 64 * 1024) -> bytes:
    try:
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            digest = hashlib.sha256(str(size).encode())
            if size <= 2 * chunk:
                digest.update(f.read())
            else:
                digest.update(f.read(chunk))
                f.seek(size - chunk)
                digest.update(f.read(chunk))
            return digest.digest()
    except (OSError, NotRegular) as error:
        # Decoding skips such a file with a warning; the fingerprint must not stop the run over it
        # either. It changes once the file can be read.
        return hashlib.sha256(f"unreadable: {type(error).__name__}".encode()).digest()
