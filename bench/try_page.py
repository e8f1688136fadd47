"""The "Try an image" page in headless Chromium against the Python network: agreement and time, per model.

    python bench/try_page.py --site SITE --photos DIR --weights W [--model inceptionv1-caffe] [--count 50]

SITE is a built site with a Try page (build ... --images ...); the page runs in /usr/bin/chromium (one WebAssembly
thread: a page served without cross-origin isolation, as GitHub Pages serves it), the same photos go through the
Python network (torch, float32). Prints the bytes the page downloads, the time from opening the page to the first
result, the time from choosing a photo to its results, and per layer how often the page's top-5 units (by maximum
over positions) are Python's, in the same order and as a set, with the largest difference of a unit's maximum
relative to the layer's largest; and how often the top class is the same.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from microscope.data.images import Framing, load_rgb  # noqa: E402
from microscope.featurevis.objectives import as_4d  # noqa: E402
from microscope.network.loaded import load_network  # noqa: E402

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def python_maxima(network, layers: list[str], photo: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    pre = network.spec.preprocessing
    framed = Framing(resize=pre.resize, crop=pre.crop).tensor(load_rgb(photo))
    with torch.no_grad():
        out = network.extractor(layers + ["logits"])(framed[None].float() / 255)
    maxima = {name: as_4d(out[name]).flatten(2).max(dim=2).values[0].numpy() for name in layers}
    return maxima, out["logits"][0].numpy()


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # one line per request would bury the output
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(Quiet, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, required=True)
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--model", default="inceptionv1-caffe")
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright  # a test dependency: only this bench needs it

    model_dir = args.site / "models" / args.model
    data = json.loads((model_dir / "try" / "try.json").read_text())
    layers = [layer["layer"] for layer in data["layers"]]
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in SUFFIXES)[:args.count]
    network = load_network(args.model, weights=args.weights, progress=False)
    wasm_bytes = sum((model_dir / data["runtime"]["dir"] / name).stat().st_size for name in
                     ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"))
    httpd, url = serve(args.site)
    same = {layer: [0, 0] for layer in layers}
    worst = {layer: 0.0 for layer in layers}
    top1, seconds = 0, []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
        page = browser.new_page()
        opened = time.perf_counter()
        page.goto(f"{url}models/{args.model}/try.html")
        page.wait_for_function("document.querySelector('[data-try]').dataset.state === 'ready'", timeout=300_000)
        ready = time.perf_counter() - opened
        first = None
        for photo in photos:
            page.set_input_files("#try-file", str(photo))
            page.wait_for_function(f"window.microscopeTry.result && window.microscopeTry.result.name === {json.dumps(photo.name)}",
                                   timeout=120_000)
            result = page.evaluate("window.microscopeTry.result")
            seconds.append(result["seconds"])
            first = first if first is not None else time.perf_counter() - opened
            maxima, logits = python_maxima(network, layers, photo)
            top1 += int(result["classes"][0]["index"] == int(np.argmax(logits)))
            for layer in layers:
                want = list(np.lexsort((np.arange(len(maxima[layer])), -maxima[layer]))[:5])
                got = result["layers"][layer]["top"][:5]
                same[layer][0] += int(got == want)
                same[layer][1] += int(set(got) == set(want))
                diff = np.abs(np.array(result["layers"][layer]["maxima"]) - maxima[layer]).max()
                worst[layer] = max(worst[layer], float(diff / max(maxima[layer].max(), 1e-12)))
        backend = result["backend"]
        browser.close()
    httpd.shutdown()
    n = len(photos)
    print(f"model {args.model}: {n} photos, backend {backend}, weights {data['weights_dtype']}")
    print("| what | value |\n|---|---|")
    print(f"| model.onnx | {data['onnx_bytes'] / 1e6:.1f} MB |")
    print(f"| runtime (WebAssembly build: ort.wasm.min.js + .mjs + .wasm) | {wasm_bytes / 1e6:.1f} MB |")
    print(f"| page open to ready (fetch model + runtime, start session) | {ready:.1f} s |")
    print(f"| page open to first result | {first:.1f} s |")
    print(f"| photo chosen to results: median / max | {statistics.median(seconds):.2f} / {max(seconds):.2f} s |")
    print(f"| top-1 class same as Python | {top1} of {n} |")
    print("\n| layer | top-5 units same order | same set | max abs(page - python) / layer max |\n|---|---|---|---|")
    for layer in layers:
        print(f"| {layer} | {same[layer][0]} of {n} | {same[layer][1]} of {n} | {worst[layer]:.1e} |")


if __name__ == "__main__":
    main()
