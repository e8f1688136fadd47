"""A few files of a pinned npm package: downloaded once, checked, kept in the cache (torch-free).

The site vendors browser code (onnxruntime-web) from npm rather than a CDN, so a published site works
offline and keeps working when the CDN moves. What a package is - its version, npm's integrity (the
sha512 of the tarball the registry serves), the files kept and its licence - is data (`NpmPackage`).

`fetch_package` downloads the tarball to a temp file, checks its integrity, extracts only the listed
files (regular files, no member may point outside the package) beside a `LICENSE.txt` and a stamp of
each file's sha256, and renames the folder into place: a folder in the cache under its real name is
always complete. A cached folder is checked against its stamp on every use and fetched again when a
file was damaged.
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from microscope.data.cache import cache_dir as default_cache_dir, download_failure
from microscope.errors import UsageError, no_space

DEFAULT_REGISTRY = "https://registry.npmjs.org"
REGISTRY_VARIABLE = "MICROSCOPE_NPM_REGISTRY"  # a mirror, or a local server in the tests
CHUNK = 1 << 20
TIMEOUT_S = 60  # per socket operation, not for the whole download
STAMP = ".files.json"  # each kept file's sha256, written from the checked tarball
LICENCE_FILE = "LICENSE.txt"

MIT_TEXT = """\
Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction, including
without limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is furnished to do so, subject to the
following conditions:

The above copyright notice and this permission notice shall be included in all copies or substantial
portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT
LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO
EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER
IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE
USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


@dataclass(frozen=True)
class NpmPackage:
    """One pinned version of an npm package and the files of it that are kept.

    `integrity` is the tarball's SRI as npm publishes it (`npm view NAME@VERSION dist.integrity`);
    `files` are paths inside the tarball's `package/` folder. The licence travels with the files:
    `copyright` is the notice the package carries, `licence` its SPDX name (MIT text is written out;
    the package's own LICENSE is kept by listing it in `files` when the tarball has one).
    """

    name: str
    version: str
    integrity: str
    files: tuple[str, ...]
    copyright: str
    licence: str = "MIT"
    source: str = ""  # the project's home, for the licence file

    def __post_init__(self):
        algorithm, _, digest = self.integrity.partition("-")
        if algorithm != "sha512" or len(_decode(digest)) != 64:
            raise ValueError(f"{self.name}: integrity must be npm's 'sha512-<base64>', got {self.integrity!r}")
        for file in self.files:
            path = PurePosixPath(file)
            if path.is_absolute() or ".." in path.parts or not path.parts or file != path.as_posix():
                raise ValueError(f"{self.name}: {file!r} is not a plain path inside the package")
        if self.licence != "MIT":
            raise ValueError(f"{self.name}: only the MIT licence text is known here, got {self.licence}")

    @property
    def folder(self) -> str:
        """The cache folder's name: '@scope/name' becomes 'scope+name'."""
        return f"{self.name.lstrip('@').replace('/', '+')}-{self.version}"

    def tarball_url(self, registry: str) -> str:
        bare = self.name.rsplit("/", 1)[-1]  # a scoped package's tarball is named without its scope
        return f"{registry.rstrip('/')}/{self.name}/-/{bare}-{self.version}.tgz"

    def licence_text(self) -> str:
        """LICENSE.txt: what the package is, where npm serves it (whichever mirror fetched it), its licence."""
        return (f"{self.name} {self.version}\nSource: {self.tarball_url(DEFAULT_REGISTRY)}\n"
                + (f"Project: {self.source}\n" if self.source else "")
                + f"Licence: {self.licence}\n\n{self.copyright}\n\n{MIT_TEXT}")


def _decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return b""


def fetch_package(package: NpmPackage, cache_dir: Path | None = None, registry: str | None = None,
                  progress: bool = True) -> Path:
    """The cache folder holding `package.files` (at their paths) and LICENSE.txt, downloaded if needed."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "npm"
    folder = root / package.folder
    if folder.is_dir():
        if intact(folder, package):
            return folder
        shutil.rmtree(folder, ignore_errors=True)  # damaged: fetch it again rather than trust it
    registry = registry or os.environ.get(REGISTRY_VARIABLE) or DEFAULT_REGISTRY
    url = package.tarball_url(registry)
    by_hand = f"check the connection, or set {REGISTRY_VARIABLE} to a registry that serves it"
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tarball = tempfile.mkstemp(dir=root, prefix=f".{package.folder}.", suffix=".tgz.part")
    except OSError as error:
        raise UsageError(f"cannot write to the download cache {root} ({error.strerror}); "
                         "set MICROSCOPE_CACHE to a writable folder") from None
    try:
        with os.fdopen(fd, "wb") as out:
            got = _download(url, out, package, progress)
        if got != package.integrity:
            raise UsageError(f"downloaded {url} has the wrong checksum (expected {package.integrity}, got {got}); "
                             f"{by_hand}")
        _install(Path(tarball), folder, package, url)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        if no_space(error) is not None:
            raise UsageError(f"no space left in the download cache {root} for {url}; make room there "
                             "or set MICROSCOPE_CACHE to another folder") from None
        raise UsageError(f"could not download {url} ({download_failure(error)}); {by_hand}") from None
    finally:  # wrong checksum, Ctrl-C: no half file may stay in the cache
        Path(tarball).unlink(missing_ok=True)
    return folder


def intact(folder: Path, package: NpmPackage) -> bool:
    """Whether `folder` holds every file of `package` and the licence, each as its stamp recorded."""
    try:
        stamp = json.loads((folder / STAMP).read_text(encoding="utf-8"))
        recorded = stamp["files"]
        if stamp.get("integrity") != package.integrity or set(recorded) != {*package.files, LICENCE_FILE}:
            return False
        return all(_sha256(folder / name) == digest for name, digest in recorded.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, out, package: NpmPackage, progress: bool) -> str:
    """Stream `url` into `out`; the body's integrity, 'sha512-<base64>'."""
    digest = hashlib.sha512()
    request = urllib.request.Request(url, headers={"User-Agent": "microscope"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        received = 0
        with tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=package.folder,
                  disable=not progress, leave=False) as bar:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                digest.update(block)
                received += len(block)
                bar.update(len(block))
        # http.client returns a short body without complaint when the server hangs up early.
        if expected is not None and received != expected:
            raise ConnectionError(f"connection closed after {received} of {expected} bytes")
    return "sha512-" + base64.b64encode(digest.digest()).decode("ascii")


def _install(tarball: Path, folder: Path, package: NpmPackage, url: str) -> None:
    """Extract the kept files into a temp folder beside `folder`, then rename it into place."""
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{package.folder}.", suffix=".part"))
    try:
        digests = _extract(tarball, work, package, url)
        licence = package.licence_text().encode("utf-8")
        (work / LICENCE_FILE).write_bytes(licence)
        digests[LICENCE_FILE] = hashlib.sha256(licence).hexdigest()
        (work / STAMP).write_text(json.dumps({"integrity": package.integrity, "files": digests}, indent=1) + "\n",
                                  encoding="utf-8")
        try:
            os.rename(work, folder)
        except OSError:
            if not intact(folder, package):  # (another process may have just put a good copy there)
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _extract(tarball: Path, work: Path, package: NpmPackage, url: str) -> dict[str, str]:
    """Each kept file written under `work`; its sha256 by path. Refuses a tarball that is not one, a
    member named outside the package and a kept file that is not a regular file."""
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            members = archive.getmembers()
            for member in members:
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts:
                    raise UsageError(f"{url} holds a file outside its package ({member.name!r}); refused")
            by_name = {member.name: member for member in members}
            digests = {}
            for file in package.files:
                member = by_name.get(f"package/{file}")
                if member is None or not member.isreg():
                    what = "has no" if member is None else "holds a link or device, not a regular file, at"
                    raise UsageError(f"{url} {what} package/{file}; refused "
                                     f"(is {package.name} {package.version} the version meant?)")
                target = work / file
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with archive.extractfile(member) as source, open(target, "wb") as out:
                    for block in iter(lambda: source.read(CHUNK), b""):
                        out.write(block)
                        digest.update(block)
                digests[file] = digest.hexdigest()
            return digests
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        if isinstance(error, OSError) and error.errno is not None:
            raise  # the disk, not the tarball: said as a download that could not be written
        # Its integrity matched, so this is the tarball npm publishes under that pin: the pin is wrong.
        raise UsageError(f"{url} is not a readable .tgz ({download_failure(error)}); "
                         f"check the pinned version and integrity of {package.name}") from None
