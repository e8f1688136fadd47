"""The network runtime a site's "Try an image" page runs in the visitor's browser: onnxruntime-web.

Pinned to one version and vendored into the site's `static/ort/` with its licence, so a published site
depends on no CDN. Two builds are kept, each a script that loads its `.mjs` and `.wasm` from the folder it
came from (so the files lie side by side):
- `ort.wasm.min.js`: WebAssembly only (15 MB of .wasm), for browsers without WebGPU;
- `ort.min.js`: the package's default build, WebGPU (JSEP) with the WebAssembly kernels it falls back to
  (30 MB). Not `ort.webgpu.min.js`: in this version that one is the newer native WebGPU backend and loads the
  `.asyncify` pair instead of the JSEP one.
"""
from __future__ import annotations

from pathlib import Path

from microscope.data.npm import LICENCE_FILE, NpmPackage, fetch_package

RUNTIME_FOLDER = "ort"  # under the site's static/
ENTRY_SCRIPTS = {"wasm": "ort.wasm.min.js", "webgpu": "ort.min.js"}  # the build a page loads, by its WebGPU adapter

ONNXRUNTIME_WEB = NpmPackage(
    "onnxruntime-web", "1.31.1",
    "sha512-5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw==",
    files=(
        # WebAssembly only
        "dist/ort.wasm.min.js", "dist/ort-wasm-simd-threaded.mjs", "dist/ort-wasm-simd-threaded.wasm",
        # WebGPU (JSEP) and WebAssembly: the default build, whose script loads the .jsep pair
        "dist/ort.min.js", "dist/ort-wasm-simd-threaded.jsep.mjs", "dist/ort-wasm-simd-threaded.jsep.wasm",
    ),
    # The tarball has no LICENSE file; package.json says MIT and each script's header says this.
    copyright="Copyright (c) Microsoft Corporation. All rights reserved.\nLicensed under the MIT License.",
    source="https://github.com/microsoft/onnxruntime",
)


def runtime_files(package: NpmPackage = ONNXRUNTIME_WEB, cache_dir: Path | None = None,
                  registry: str | None = None, progress: bool = True) -> dict[str, bytes]:
    """{path relative to the site's static/: bytes} of the runtime and its LICENSE.txt, e.g.
    'ort/ort.wasm.min.js' - what the site builder hands its SiteWriter as `static/<path>`.

    The files lie flat in one folder (the scripts find their .mjs and .wasm beside themselves).
    Downloads the package once (cached, checked: `fetch_package`); raises UsageError when it cannot.
    """
    folder = fetch_package(package, cache_dir=cache_dir, registry=registry, progress=progress)
    names = [*package.files, LICENCE_FILE]
    flat = {Path(name).name: name for name in names}
    if len(flat) != len(names):
        raise ValueError(f"{package.name}: two kept files share a name, they cannot lie in one folder")
    return {f"{RUNTIME_FOLDER}/{base}": (folder / name).read_bytes() for base, name in flat.items()}


def page_paths(static: str) -> dict[str, str]:
    """What a page is told of the runtime (try.json's `runtime`): each build's script and the folder its .mjs and
    .wasm lie in, under `static`, the relative URL of the site's static/ from the page."""
    folder = f"{static}{RUNTIME_FOLDER}/"
    return {**{kind: folder + name for kind, name in ENTRY_SCRIPTS.items()}, "dir": folder}
