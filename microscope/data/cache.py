"""Where downloads are kept: the weights of the zoo and the Imagenette photos ($MICROSCOPE_CACHE, else
~/.cache/microscope)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("MICROSCOPE_CACHE") or Path.home() / ".cache" / "microscope").expanduser()
