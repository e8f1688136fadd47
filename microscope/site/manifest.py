"""The site's manifest: `manifest.json` at the site root lists every file the builder made.

    {"format": 1, "generator": "microscope <version>",
     "files": {"<relative POSIX path>": {"size": <bytes>, "sha256": "<hex>"}, ...}}

It is what `publish` copies (nothing else in the folder is published) and what `check_site`
verifies. A rebuild of one layer leaves the other layers' files alone, so the new manifest lists
the files written or kept this run plus the earlier manifest's entries whose files are still there.

Not listed: the manifest itself, and dot paths (`.nojekyll`, which publish adds by itself, and the
builder's `.assets.json` caches, which change with source mtimes and are no part of the pages).
Files in the folder that the manifest does not list are ignored by `check_site` (a user may keep a
`.git` or notes beside the pages); they are never published, and the builder warns about them.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from pathlib import Path

from microscope.errors import UsageError

MANIFEST = "manifest.json"
FORMAT = 1
_SHA256 = re.compile(r"[0-9a-f]{64}")


class SiteFileError(Exception):
    """A listed file that cannot be used as it is; the message is one line naming the file."""


def path_problem(relative) -> str | None:
    """Why `relative` cannot be a listed file of the site, or None if it can."""
    if not isinstance(relative, str) or not relative:
        return "is not a file name"
    if relative.startswith("/") or "\\" in relative or any(ord(c) < 32 or c == "\x7f" for c in relative):
        return "is absolute or has characters a site path never has"
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "leaves the site folder (empty, '.' or '..' parts)"
    if any(part.startswith(".") for part in parts):
        return "is a dot path (such as .git), which the site never lists"
    if relative == MANIFEST:
        return "is the manifest itself"
    return None


def listed(relative: str) -> bool:
    """Whether a file the builder made belongs in the manifest (see the module docstring)."""
    return path_problem(relative) is None


def read_regular(site: Path, relative: str) -> bytes:
    """The bytes of `site/relative`, which must be a regular file reached without any symlink.

    Each folder is opened relative to the last with O_NOFOLLOW (POSIX, as the store's locks are), so a
    symlink swapped in between a check and the read cannot redirect it outside the site.
    """
    parts = relative.split("/")
    opened = []
    try:
        opened.append(os.open(site, os.O_RDONLY | os.O_DIRECTORY))
        for part in parts[:-1]:
            opened.append(os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=opened[-1]))
        # O_NONBLOCK: opening a FIFO planted in the site must not hang; it is refused below.
        opened.append(os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=opened[-1]))
        if not stat.S_ISREG(os.fstat(opened[-1]).st_mode):
            raise SiteFileError(f"{relative}: is not a regular file")
        with open(opened[-1], "rb", closefd=False) as f:
            return f.read()
    except SiteFileError:
        raise
    except OSError as error:
        if error.errno == errno.ENOENT:
            raise SiteFileError(f"{relative}: missing") from None
        if error.errno in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR):
            # O_NOFOLLOW answers ELOOP (EMLINK on FreeBSD), O_DIRECTORY on a symlink ENOTDIR: ask lstat which
            raise SiteFileError(f"{relative}: {_blocked(Path(site), parts)}") from None
        raise SiteFileError(f"{relative}: cannot be read ({error.strerror})") from None
    finally:
        for fd in opened:
            os.close(fd)


def _blocked(site: Path, parts: list[str]) -> str:
    """Why a path could not be opened without following links: a symlink, or a file for a folder."""
    path = site
    for part in parts:
        path = path / part
        if path.is_symlink():
            return "is or passes through a symlink"
    return "a folder on its path is not a folder"


def entry_of(data: bytes) -> dict:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def listed_file(site: Path, relative: str, entry: dict) -> bytes:
    """The bytes of a listed file, checked against its entry; SiteFileError if they differ."""
    problem = path_problem(relative)
    if problem:
        raise SiteFileError(f"{relative!r}: {problem}")
    data = read_regular(site, relative)
    if len(data) != entry["size"]:
        raise SiteFileError(f"{relative}: {len(data)} bytes, the manifest says {entry['size']} "
                            "(changed after the build)")
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise SiteFileError(f"{relative}: content changed after the build (sha256 differs from the manifest)")
    return data


def manifest_text(files: dict[str, dict], generator: str) -> str:
    """The manifest as written: sorted, so an unchanged site gives byte-identical text (no rewrite)."""
    return json.dumps({"format": FORMAT, "generator": generator, "files": files}, indent=1, sort_keys=True) + "\n"


def read_manifest(site: str | Path) -> dict:
    """The site's manifest, its entries checked for shape (not yet against the files)."""
    site = Path(site)
    rebuild = f"build it with `build.py site --out {site}`"
    if not site.is_dir():
        raise UsageError(f"not a site built by microscope: no site at {site}; {rebuild}")
    try:
        manifest = json.loads(read_regular(site, MANIFEST).decode("utf-8"))
    except SiteFileError as error:
        raise UsageError(f"not a site built by microscope: {site}/{error}; {rebuild}") from None
    except ValueError:  # UnicodeDecodeError is one too
        raise UsageError(f"not a site built by microscope: {site}/{MANIFEST} is not valid JSON; {rebuild}") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if (not isinstance(files, dict) or manifest.get("format") != FORMAT
            or not str(manifest.get("generator", "")).startswith("microscope")):
        raise UsageError(f"not a site built by microscope: {site}/{MANIFEST} is not a microscope manifest "
                         f"(format {FORMAT}); {rebuild}")
    for relative, entry in files.items():
        if not (isinstance(entry, dict) and type(entry.get("size")) is int and entry["size"] >= 0
                and isinstance(entry.get("sha256"), str) and _SHA256.fullmatch(entry["sha256"])):
            raise UsageError(f"not a site built by microscope: {site}/{MANIFEST} has a damaged entry for "
                             f"{relative!r}; {rebuild}")
    return manifest


def check_site(site: str | Path) -> list[str]:
    """One line per problem with a listed file (missing, symlinked, outside, changed); [] if none.

    Raises UsageError when there is no usable manifest at all. Unlisted files are not problems.
    """
    return [problem for _, problem in listed_file_problems(Path(site))]


def listed_file_problems(site: Path) -> list[tuple[str, str]]:
    """(relative path, problem) of every listed file that is not what the manifest says, in path order."""
    problems = []
    for relative, entry in sorted(read_manifest(site)["files"].items()):
        try:
            listed_file(site, relative, entry)
        except SiteFileError as error:
            problems.append((relative, str(error)))
    return problems


def unlisted_files(site: Path, files: dict) -> list[str]:
    """Files in the site (not in dot folders, not dotfiles) that `files` does not list."""
    found = []
    for dirpath, dirnames, filenames in os.walk(site):  # os.walk does not enter symlinked folders
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        folder = Path(dirpath).relative_to(site).as_posix()
        for name in sorted(filenames):
            relative = name if folder == "." else f"{folder}/{name}"
            if not name.startswith(".") and relative != MANIFEST and relative not in files:
                found.append(relative)
    return found


def write_manifest(writer, generator: str) -> list[str]:
    """List the site's files in `manifest.json` (through `writer`, a SiteWriter); returns warnings.

    Files made this run are hashed as they are on disk now; entries of the earlier manifest are
    kept for files this run did not touch (other layers of an incremental build) that are still
    regular files. Their hashes are not recomputed: a file changed by hand keeps its old hash, so
    `check_site` and `publish` catch it instead of the change being blessed.
    """
    root = Path(writer.root)
    files = {}
    for relative in sorted(writer.touched):
        if listed(relative):
            try:
                files[relative] = entry_of(read_regular(root, relative))
            except SiteFileError as error:
                raise UsageError(f"site file {error}; delete it from {root} and build again") from None
    try:
        previous = read_manifest(root)["files"]
    except UsageError:
        previous = {}  # the first build, or one by a microscope that wrote no manifest
    for relative, entry in previous.items():
        if relative not in files and listed(relative) and _regular(root, relative):
            files[relative] = {"size": entry["size"], "sha256": entry["sha256"]}
    writer.write_text(MANIFEST, manifest_text(files, generator))
    unknown = unlisted_files(root, files)
    if not unknown:
        return []
    return [f"{len(unknown)} files in {root} are not in {MANIFEST} and will not be published "
            f"(e.g. {', '.join(unknown[:3])}); files of layers built before the site had a manifest "
            "are listed again by a full rebuild (without --layers)"]


def _regular(root: Path, relative: str) -> bool:
    path = root
    for part in relative.split("/"):
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return False
        if stat.S_ISLNK(mode):
            return False
    return stat.S_ISREG(mode)
