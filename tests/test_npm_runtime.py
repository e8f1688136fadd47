"""Vendoring an npm package: a real http.server on 127.0.0.1 plays the registry, serving tarballs built here.

Nothing is mocked: the download, the integrity check, the extraction and the cache run as they do against
registry.npmjs.org; only the package (small, made in the test) and the registry's address differ.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import io
import tarfile
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from microscope.data.npm import LICENCE_FILE, NpmPackage, fetch_package
from microscope.errors import UsageError
from microscope.web.runtime import ONNXRUNTIME_WEB, runtime_files

FILES = {"dist/tiny.min.js": b"/*! tiny */ var tiny = 1;\n", "dist/tiny.wasm": bytes(range(256)) * 40,
         "dist/tiny.mjs": b"export default 2;\n"}


def tarball(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A .tgz as npm packs one: every path under package/; `links` adds symlinks (name -> target)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return buffer.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def package_for(data: bytes, version: str = "1.0.0") -> NpmPackage:
    return NpmPackage("tiny-runtime", version, integrity(data), files=tuple(FILES),
                      copyright="Copyright (c) Tiny Authors.", source="https://example.org/tiny")


class Registry:
    """A real registry on 127.0.0.1: serves <root>/<name>/-/<name>-<version>.tgz, can stop and start."""

    def __init__(self, root: Path):
        self.root = root
        self.httpd = None
        self.requests = 0

    def publish(self, name: str, version: str, data: bytes) -> None:
        path = self.root / name / "-" / f"{name}-{version}.tgz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def start(self) -> str:
        registry = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                registry.requests += 1
                super().do_GET()

            def log_message(self, format, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(self.root)))
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> str:
        url = self.url  # the same address, nobody listening there now
        self.httpd.shutdown()
        self.httpd.server_close()
        return url


@pytest.fixture
def registry(tmp_path):
    served = Registry(tmp_path / "registry")
    served.start()
    yield served
    if served.httpd is not None:
        served.httpd.shutdown()
        served.httpd.server_close()


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text and text
    return text


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_fetch_extracts_the_listed_files_and_writes_the_licence(tmp_path, registry):
    data = tarball({f"package/{name}": content for name, content in FILES.items()}
                   | {"package/package.json": b"{}", "package/dist/unlisted.js": b"x"})
    registry.publish("tiny-runtime", "1.0.0", data)
    package = package_for(data)
    folder = fetch_package(package, cache_dir=tmp_path / "cache", registry=registry.url, progress=False)
    assert folder == tmp_path / "cache" / "tiny-runtime-1.0.0"
    for name, content in FILES.items():
        assert (folder / name).read_bytes() == content
    assert not (folder / "package.json").exists() and not (folder / "dist" / "unlisted.js").exists()
    licence = (folder / LICENCE_FILE).read_text()
    assert "tiny-runtime 1.0.0" in licence and "Copyright (c) Tiny Authors." in licence
    assert "https://registry.npmjs.org/tiny-runtime/-/tiny-runtime-1.0.0.tgz" in licence  # not the mirror's
    assert "Permission is hereby granted, free of charge" in licence
    assert leftovers(tmp_path / "cache") == ["tiny-runtime-1.0.0"]  # no temp file or folder left


def test_a_second_fetch_is_served_from_the_cache_with_the_registry_down(tmp_path, registry):
    data = tarball({f"package/{name}": content for name, content in FILES.items()})
    registry.publish("tiny-runtime", "1.0.0", data)
    package = package_for(data)
    first = fetch_package(package, cache_dir=tmp_path / "cache", registry=registry.url, progress=False)
    gone = registry.stop()
    again = fetch_package(package, cache_dir=tmp_path / "cache", registry=gone, progress=False)
    assert again == first and (again / "dist/tiny.wasm").read_bytes() == FILES["dist/tiny.wasm"]
    assert registry.requests == 1


def test_a_damaged_cached_file_is_fetched_again(tmp_path, registry):
    data = tarball({f"package/{name}": content for name, content in FILES.items()})
    registry.publish("tiny-runtime", "1.0.0", data)
    package = package_for(data)
    folder = fetch_package(package, cache_dir=tmp_path / "cache", registry=registry.url, progress=False)
    wasm = folder / "dist/tiny.wasm"
    wasm.write_bytes(b"\xff" + wasm.read_bytes()[1:])  # same size, one byte changed
    fetch_package(package, cache_dir=tmp_path / "cache", registry=registry.url, progress=False)
    assert wasm.read_bytes() == FILES["dist/tiny.wasm"] and registry.requests == 2
    (folder / LICENCE_FILE).unlink()  # a missing file counts as damage too
    gone = registry.stop()
    with pytest.raises(UsageError) as error:
        fetch_package(package, cache_dir=tmp_path / "cache", registry=gone, progress=False)
    line = one_line(error)
    assert line.startswith(f"could not download {gone}/tiny-runtime/-/tiny-runtime-1.0.0.tgz (")
    assert "MICROSCOPE_NPM_REGISTRY" in line
    assert leftovers(tmp_path / "cache") == []  # the damaged copy is not kept as if it were good


def test_the_registry_comes_from_the_environment(tmp_path, registry, monkeypatch):
    data = tarball({f"package/{name}": content for name, content in FILES.items()})
    registry.publish("tiny-runtime", "2.0.0", data)
    monkeypatch.setenv("MICROSCOPE_NPM_REGISTRY", registry.url + "/")
    folder = fetch_package(package_for(data, "2.0.0"), cache_dir=tmp_path / "cache", progress=False)
    assert (folder / "dist/tiny.mjs").read_bytes() == FILES["dist/tiny.mjs"]


def test_a_wrong_integrity_is_one_line_and_caches_nothing(tmp_path, registry):
    data = tarball({f"package/{name}": content for name, content in FILES.items()})
    registry.publish("tiny-runtime", "1.0.0", data)
    pinned = package_for(data + b"something else")
    with pytest.raises(UsageError) as error:
        fetch_package(pinned, cache_dir=tmp_path / "cache", registry=registry.url, progress=False)
    line = one_line(error)
    assert "wrong checksum" in line and pinned.integrity in line and integrity(data) in line
    assert leftovers(tmp_path / "cache") == []


def test_a_missing_version_is_one_line(tmp_path, registry):
    with pytest.raises(UsageError) as error:
        fetch_package(package_for(b"never published"), cache_dir=tmp_path / "cache", registry=registry.url,
                      progress=False)
    assert "HTTP 404" in one_line(error)
    assert leftovers(tmp_path / "cache") == []


@pytest.mark.parametrize("case", ["traversal", "absolute", "listed symlink", "missing file", "not gzip"])
def test_a_hostile_or_damaged_tarball_is_refused(tmp_path, registry, case):
    members = {f"package/{name}": content for name, content in FILES.items()}
    links = None
    if case == "traversal":
        members["package/../evil"] = b"outside"
    elif case == "absolute":
        members[str(tmp_path / "evil")] = b"outside"
    elif case == "listed symlink":
        del members["package/dist/tiny.mjs"]
        links = {"package/dist/tiny.mjs": "/etc/passwd"}
    elif case == "missing file":
        del members["package/dist/tiny.mjs"]
    data = b"\x1f\x8b not really gzip" if case == "not gzip" else tarball(members, links)
    registry.publish("tiny-runtime", "1.0.0", data)
    with pytest.raises(UsageError) as error:  # the integrity matches: the tarball itself is refused
        fetch_package(package_for(data), cache_dir=tmp_path / "cache", registry=registry.url, progress=False)
    line = one_line(error)
    assert "tiny-runtime-1.0.0.tgz" in line
    assert ("not a readable .tgz" if case == "not gzip" else "refused") in line
    assert leftovers(tmp_path / "cache") == []
    assert not (tmp_path / "evil").exists() and not (tmp_path / "cache" / "evil").exists()


def test_a_package_refuses_paths_outside_it_and_other_checksums():
    good = package_for(b"x")
    for files in [("../evil",), ("/etc/passwd",), ("dist//a.js",), ("",)]:
        with pytest.raises(ValueError):
            replace(good, files=files)
    with pytest.raises(ValueError):
        replace(good, integrity="sha1-" + base64.b64encode(hashlib.sha1(b"x").digest()).decode())


def test_the_runtime_lies_flat_under_ort_with_its_licence(tmp_path, registry):
    """The site's files: the real pin's file list, served from a tarball that has the same layout."""
    contents = {name: f"/* {name} */".encode() for name in ONNXRUNTIME_WEB.files}
    data = tarball({f"package/{name}": content for name, content in contents.items()})
    package = replace(ONNXRUNTIME_WEB, integrity=integrity(data))
    registry.publish(package.name, package.version, data)
    files = runtime_files(package, cache_dir=tmp_path / "cache", registry=registry.url, progress=False)
    assert set(files) == {"ort/ort.wasm.min.js", "ort/ort-wasm-simd-threaded.mjs", "ort/ort-wasm-simd-threaded.wasm",
                          "ort/ort.min.js", "ort/ort-wasm-simd-threaded.jsep.mjs",
                          "ort/ort-wasm-simd-threaded.jsep.wasm", "ort/LICENSE.txt"}
    assert files["ort/ort-wasm-simd-threaded.wasm"] == contents["dist/ort-wasm-simd-threaded.wasm"]
    licence = files["ort/LICENSE.txt"].decode()
    assert "onnxruntime-web 1.31.1" in licence and "Microsoft Corporation" in licence and "MIT" in licence
