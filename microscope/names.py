"""Turning names that come from data (models, layers, datasets) into safe URL path segments.

Layer and model names are chosen by whoever wrote the model spec, so they may contain anything:
`<`, quotes, spaces, `/`, `..`. A name that is already a clean segment is used unchanged, so the
common case gives Microscope-like URLs (`models/inceptionv1/mixed4a/447/`); any other name is
replaced by a readable slug plus a short hash of the original, so two different names never share
a folder and no name can point outside the site.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath

_CLEAN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,80}")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9_-]+")
# Names the site itself uses beside layer folders (models/<model>/...); a layer so named is slugged.
RESERVED = frozenset({"datasets", "index.html", "model.json", "layer.json", "unit.json", "static", "concepts.html", "try.html", "try"})


def segment(name: str) -> str:
    """A path segment for `name`: the name itself when safe, else `<slug>-<hash>`."""
    name = str(name)
    # Segments ending in a dot or holding ".." are legal on Linux but trip Windows and some servers.
    if _CLEAN.fullmatch(name) and ".." not in name and not name.endswith(".") and name not in RESERVED:
        return name
    slug = _UNSAFE_RUN.sub("_", name).strip("_")[:40] or "x"
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return f"{slug}-{digest}"


def inside(root: Path, relative: str | PurePosixPath) -> Path:
    """`root / relative`, refusing anything that would land outside `root`."""
    root = Path(root)
    target = (root / PurePosixPath(relative)).resolve()
    if target != root.resolve() and root.resolve() not in target.parents:
        raise ValueError(f"path {relative!r} leaves {root}")
    return target
