"""Where a model's weights file comes from: a path the user gives, the cache, or a checked download.

The cache is one flat directory (`MICROSCOPE_CACHE`, else ~/.cache/microscope) holding each file under
its spec's filename. A download goes to a temp file beside it and is renamed into place only after its
checksum matches, so a file in the cache under its real name is always a complete, verified one.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from microscope.data.cache import cache_dir, download_failure
from microscope.errors import UsageError
from microscope.models.spec import ModelSpec, WeightsSpec

CHUNK = 1 << 20
TIMEOUT_S = 60  # per socket operation, not for the whole download


def cached_path(spec: ModelSpec) -> Path:
    return cache_dir() / _weights_spec(spec).filename


def _weights_spec(spec: ModelSpec) -> WeightsSpec:
    if spec.weights is None:
        raise UsageError(f"model {spec.name} has no downloadable weights file; pass one with --weights PATH")
    return spec.weights


def _digests(path: Path) -> dict[str, str]:
    sha256, sha1, blob = hashlib.sha256(), hashlib.sha1(), hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            sha256.update(block)
            sha1.update(block)
            blob.update(block)
    return {"sha256": sha256.hexdigest(), "sha1": sha1.hexdigest(), "git_blob": blob.hexdigest()}


def checksum_mismatch(weights: WeightsSpec, digests: dict[str, str]) -> str | None:
    """None if the digests match what the spec publishes, else 'sha1 expected X, got Y'."""
    if weights.sha256 and not digests["sha256"].startswith(weights.sha256.lower()):
        got = digests["sha256"][: max(len(weights.sha256), 8)]
        return f"sha256 expected {weights.sha256.lower()}, got {got}"
    if weights.sha1 and digests["sha1"] != weights.sha1.lower():
        return f"sha1 expected {weights.sha1.lower()}, got {digests['sha1']}"
    if weights.git_blob and digests["git_blob"] != weights.git_blob.lower():
        return f"git blob id expected {weights.git_blob.lower()}, got {digests['git_blob']}"
    return None


def is_cached(spec: ModelSpec) -> bool:
    """Whether the cache holds this model's weights file with the right checksum."""
    if spec.weights is None:
        return False
    path = cached_path(spec)
    return path.is_file() and checksum_mismatch(spec.weights, _digests(path)) is None


def resolve_weights(spec: ModelSpec, weights: str | None, progress: bool = True) -> Path:
    """The weights file to load: `weights` if it is a path, else the cached or freshly downloaded file."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UsageError(
                f"weights file {weights} not found; pass an existing file with --weights, "
                f"or leave --weights out to download {spec.name}'s weights"
            )
        return path
    spec_weights = _weights_spec(spec)
    path = cached_path(spec)
    if path.is_file():
        if checksum_mismatch(spec_weights, _digests(path)) is None:
            return path
        path.unlink()  # corrupt or stale: fetch it again rather than trust it
    download(spec_weights, path, progress=progress)
    return path


def download(weights: WeightsSpec, path: Path, progress: bool = True) -> None:
    """Fetch `weights.url` to `path`, checked; on any failure leave nothing behind and say what to do."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as error:
        raise UsageError(
            f"cannot write to the weights cache {path.parent} ({error.strerror}); "
            "set MICROSCOPE_CACHE to a writable directory or pass --weights PATH"
        ) from None
    by_hand = "download it by hand and pass --weights PATH"
    try:
        with os.fdopen(fd, "wb") as out:
            _fetch(weights, out, progress)
        problem = checksum_mismatch(weights, _digests(Path(tmp)))
        if problem:
            raise UsageError(f"downloaded {weights.url} has the wrong checksum ({problem}); {by_hand}")
        os.replace(tmp, path)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        Path(tmp).unlink(missing_ok=True)
        raise UsageError(f"could not download {weights.url} ({download_failure(error)}); {by_hand}") from None
    except BaseException:  # wrong checksum, Ctrl-C: no half file may stay in the cache
        Path(tmp).unlink(missing_ok=True)
        raise


def _fetch(weights: WeightsSpec, out, progress: bool) -> None:
    request = urllib.request.Request(weights.url, headers={"User-Agent": "microscope"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        received = 0
        bar = tqdm(total=expected or weights.size, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=weights.filename, disable=not progress, leave=False)
        with bar:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                received += len(block)
                bar.update(len(block))
        # http.client returns a short body without complaint when the server hangs up early.
        if expected is not None and received != expected:
            raise ConnectionError(f"connection closed after {received} of {expected} bytes")
