"""The paths a run is given, resolved and checked once, before anything is loaded or written.

`resolve_paths` turns --store, --out, --images, --labels and --weights into one typed value
(`Paths`, carried in the run's `RunSpec`): absolute, so that a job may run in another process or on
another machine; each usable (the store and the site folder writable, the images and files readable);
apart from each other (the site builder deletes stale files in its folder, and a store or site inside
the images would become images); and neither the store nor the site in use by another run. Every
problem is one line naming the option and what to do.
"""
from __future__ import annotations

import os
from pathlib import Path

from microscope.errors import UsageError
from microscope.run.session import Images, Paths
from microscope.site.builder import SITE_LOCK, check_out_dir
from microscope.store import Store, usable_folder
from microscope.store.lock import check_free


def default_store_root() -> Path:
    return Path(os.environ.get("MICROSCOPE_STORE", "artifacts"))


def resolve_paths(store: str | None, out: str | None = None, images: Images | None = None,
                  weights: str | None = None, writes_store: bool = True) -> Paths:
    """The run's paths, checked (see the module's docstring). `images` comes from `resolve_images`;
    `writes_store` False: the run only reads the store (`site`), which must exist."""
    root = existing_store(store).root if not writes_store else Path(store or default_store_root())
    if writes_store:
        _writable(root, "artifact store", "--store")
    folders = {"--store": root}
    if out is not None:
        try:
            check_out_dir(Path(out), create=False)
        except OSError as error:  # e.g. a name longer than the file system allows
            raise UsageError(f"cannot write the site at --out {out} ({error.strerror or error}); "
                             "pass a writable folder") from None
        folders["--out"] = Path(out)
    if images is not None:
        folders["--images"] = Path(images.folder)
    _separate(folders)
    if out is not None:
        check_free(out, "the site", SITE_LOCK, "--out")  # another run writing there: say so now, not after the work
    check_free(root)
    return Paths(store=str(root.resolve()), out=None if out is None else str(Path(out).resolve()), images=images,
                 weights=resolve_weights(weights))


def existing_store(store: str | None) -> Store:
    """The store a read-only command (site, verify) reads: it must exist."""
    root = Path(store or default_store_root())
    if not root.is_dir():
        raise UsageError(f"no artifact store at {root}; compute something first or pass --store")
    return Store(root)


def resolve_images(images: str | None, labels: str | None, sample: int | None = None) -> Images | None:
    """--images DIR, or 'imagenette' (downloaded into the cache), with its labels and --image-sample."""
    if images is None:
        return None
    if images == "imagenette":
        from microscope.data.imagenette import imagenette  # downloads only when asked for

        folder, found = imagenette()
        return Images(str(folder), labels or str(found), sample)
    if not _exists(images, Path.is_dir, "--images"):
        raise UsageError(f"image folder {images} not found; pass an existing folder or 'imagenette' to --images")
    if not os.access(images, os.R_OK | os.X_OK):
        raise UsageError(f"image folder {images} is not readable; give this user read access or pass another folder")
    if labels not in (None, "folders"):
        _readable_file(labels, "--labels", "labels file", "pass a file,class_index CSV or 'folders'")
    return Images(str(Path(images).resolve()), labels if labels in (None, "folders") else str(Path(labels).resolve()),
                  sample)


def resolve_weights(weights: str | None) -> str | None:
    """--weights: None (the cache, then a download), 'random', or a readable file (made absolute)."""
    if weights in (None, "random"):
        return weights
    path = Path(weights).expanduser()
    _readable_file(path, "--weights", "weights file", "pass an existing file with --weights, or leave --weights out "
                   "to download the model's weights", shown=weights)
    return str(path.resolve())


def _readable_file(path, option: str, what: str, advice: str, shown: str | None = None) -> None:
    """One line if `path` is not a file this user can read; `shown`: the path as the user wrote it."""
    shown = path if shown is None else shown
    if not _exists(path, Path.is_file, option):
        raise UsageError(f"{what} {shown} not found; {advice}")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{what} {shown} is not readable; give this user read access or pass another file")


def _writable(path: Path, what: str, option: str) -> None:
    """usable_folder without creating anything, with an OSError (a name too long...) as one line."""
    try:
        usable_folder(path, what, option, create=False)
    except OSError as error:
        raise UsageError(f"cannot write the {what} at {option} {path} ({error.strerror or error}); "
                         "pass a writable folder") from None


def _exists(path, test, option: str) -> bool:
    """`test(path)` (Path.is_dir, Path.is_file); a path the system cannot even look up is one line."""
    try:
        return test(Path(path))
    except OSError as error:
        raise UsageError(f"cannot use {option} {path} ({error.strerror or error}); pass an existing path") from None
    except ValueError as error:  # a NUL byte
        raise UsageError(f"cannot use {option} {path!r} ({error}); pass an existing path") from None


def _separate(folders: dict[str, Path]) -> None:
    """The site, the store and the image folder must not be one another or inside one another."""
    found = [(option, Path(os.path.abspath(path))) for option, path in folders.items()]
    for at, (one, first) in enumerate(found):
        for two, second in found[at + 1:]:
            if first == second or first in second.parents or second in first.parents:
                raise UsageError(f"{one} {folders[one]} and {two} {folders[two]} overlap (one is inside the other); "
                                 "give them separate folders")
