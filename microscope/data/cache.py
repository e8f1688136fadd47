"""Where downloads are kept: the weights of the zoo, the Imagenette photos and npm packages ($MICROSCOPE_CACHE,
else ~/.cache/microscope); and how a failed download is said."""
from __future__ import annotations

import os
import urllib.error
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("MICROSCOPE_CACHE") or Path.home() / ".cache" / "microscope").expanduser()


def download_failure(error: BaseException) -> str:
    """Why a download failed, in one line: an HTTP status, the network's reason, or the error's own words."""
    if isinstance(error, urllib.error.HTTPError):
        text = f"HTTP {error.code} {error.reason}"
    elif isinstance(error, urllib.error.URLError):
        text = str(error.reason)
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())  # the message must stay on one line
