"""The "Try an image" page: the real Caffe weights exported to ONNX, run by onnxruntime-web in real Chromium, against
the Python network on the same photos (top classes, each layer's unit maxima and ranks, the overlay map)."""
from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from generated import QUICK_CARICATURES, cli
from microscope.data.images import Framing, load_rgb
from microscope.featurevis.objectives import as_4d
from microscope.network.loaded import load_network
from test_site import check_links, parse

MODEL = "inceptionv1-caffe"
LAYERS = ("conv2", "inception_4c")
PHOTOS = ("n01440764_tench", "n02085620_Chihuahua", "n03954731_plane", "n07753592_banana", "n02504458_African_elephant",
          "n04254680_soccer_ball")
CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).parent / "browser" / "node_modules" / "axe-core" / "axe.min.js"
# float16 weights, float32 compute: the page's values within 1 % of the layer's largest - the export's own tolerance
# (inbrowser/half.py), which the file met against torch before onnxruntime-web's kernels ran it (measured: 1.4e-3).
TOLERANCE = 0.01


@pytest.fixture(scope="module")
def tried(tmp_path_factory, shared_dir):
    root = tmp_path_factory.mktemp("try")
    photos = root / "photos"
    photos.mkdir()
    for name in PHOTOS:
        shutil.copy(shared_dir / "data" / "imagenet-sample" / f"{name}.JPEG", photos / f"{name}.jpg")
    weights = shared_dir / "weights" / "bvlc_googlenet.npz"
    store, site = root / "store", root / "site"
    result = cli("build", "--model", MODEL, "--weights", weights, "--layers", ",".join(LAYERS), "--units", "0-1",
                 "--steps", "2", "--size", "48", "--objectives", "channel", "--images", photos, *QUICK_CARICATURES, "--try-page", "auto",
                 "--store", store, "--out", site, "--quiet")
    if not (site / "models" / MODEL / "try.html").is_file():
        pytest.skip("no Try page was built (the runtime could not be fetched?): " + result.stderr[-400:])
    network = load_network(MODEL, weights=str(weights), progress=False)
    return root, site, photos, network


def python_outputs(network, layers, photo: Path) -> dict[str, torch.Tensor]:
    """What the page computes, in Python: the model's framing of the photo, then the network."""
    preprocessing = network.spec.preprocessing
    framed = Framing(resize=preprocessing.resize, crop=preprocessing.crop).tensor(load_rgb(photo))
    with torch.no_grad():
        out = network.extractor(list(layers) + ["logits"])(framed[None].float() / 255)
    return {name: value[0].float() for name, value in out.items()}


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # one line per request would bury the output
        pass


class Server:
    def __init__(self, folder: Path):
        handler = functools.partial(Quiet, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def browser(tried):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    server = Server(tried[1])
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
        yield chromium, server.url
        chromium.close()
    server.close()


def open_page(chromium, url: str):
    page = chromium.new_page(viewport={"width": 1200, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(url)
    return page, errors


def test_the_site_links_the_page_and_ships_its_files(tried):
    _, site, _, network = tried
    model_dir = site / "models" / MODEL
    data = json.loads((model_dir / "try" / "try.json").read_text())
    assert [layer["layer"] for layer in data["layers"]] == list(LAYERS) and data["logits"] == "logits"
    assert data["weights_dtype"] == "float16" and (model_dir / "try" / "model.onnx").stat().st_size == data["onnx_bytes"]
    weights = sum(p.numel() for p in network.module.parameters())
    assert 2 * weights < data["onnx_bytes"] < 2.1 * weights  # two bytes a weight, and little else
    for path in data["runtime"].values():
        assert (model_dir / path).exists(), path
    assert "MIT" in (site / "static" / "ort" / "LICENSE.txt").read_text()
    model_page = parse(model_dir / "index.html")
    assert ("a", "try.html") in model_page.links and "Try an image" in model_page.text
    for layer in LAYERS:
        assert ("a", "../try.html") in parse(model_dir / layer / "index.html").links
    page = parse(model_dir / "try.html")
    assert not page.scripts_inline and ("script", "../../static/try.js") in page.links
    manifest = json.loads((site / "manifest.json").read_text())
    paths = set(manifest["files"])
    assert {f"models/{MODEL}/try/model.onnx", "static/ort/ort.wasm.min.js", "static/ort/LICENSE.txt"} <= paths
    check_links(site)


def test_in_chromium_the_page_agrees_with_the_python_network(tried, browser):
    """For each photo: the top-5 classes, every layer's unit maxima (within TOLERANCE of the layer's largest) and
    its ranked units (where maxima are not within the tolerance of each other) equal Python's; the page lists the
    unit links in that order in [data-layer]; the overlay is the unit's map upsampled as torch does."""
    _, site, photos, network = tried
    chromium, url = browser
    page, errors = open_page(chromium, f"{url}models/{MODEL}/try.html")
    page.wait_for_function("document.querySelector('[data-try]').dataset.state === 'ready'", timeout=120_000)
    for name in PHOTOS[:3]:
        photo = photos / f"{name}.jpg"
        page.set_input_files("#try-file", str(photo))
        page.wait_for_function("window.microscopeTry.result && window.microscopeTry.result.name === "
                               f"{json.dumps(photo.name)}", timeout=60_000)
        result = page.evaluate("window.microscopeTry.result")
        expected = python_outputs(network, LAYERS, photo)
        logits = expected["logits"].numpy()
        assert [c["index"] for c in result["classes"]] == list(np.argsort(-logits, kind="stable")[:5])
        for layer in LAYERS:
            maxima = as_4d(expected[layer][None])[0].flatten(1).max(dim=1).values.numpy()
            got = np.array(result["layers"][layer]["maxima"])
            scale = maxima.max()
            assert np.abs(got - maxima).max() <= TOLERANCE * scale, layer
            top = result["layers"][layer]["top"]
            python_top = list(np.lexsort((np.arange(len(maxima)), -maxima))[:len(top)])
            for a, b in zip(top, python_top):  # equal, or a near-tie the tolerance cannot order
                assert a == b or abs(maxima[a] - maxima[b]) <= TOLERANCE * scale, (layer, top, python_top)
            links = page.locator(f'[data-layer="{layer}"] a[data-unit]')
            assert [int(links.nth(i).get_attribute("data-unit")) for i in range(links.count())] == top
            href = links.nth(0).get_attribute("href")
            assert href == f"{layer}/{top[0]}/index.html"
    # The overlay of the last photo's first unit in inception_4c.
    layer, unit = "inception_4c", result["layers"]["inception_4c"]["top"][0]
    page.locator(f'[data-layer="{layer}"] li[data-unit="{unit}"] .try-where').click()
    overlay = page.evaluate("Array.from(window.microscopeTry.overlay.map)")
    grid = as_4d(expected[layer][None])[0, unit]
    big = F.interpolate(grid[None, None], size=(224, 224), mode="bilinear", align_corners=False)[0, 0].numpy()
    assert np.abs(np.array(overlay) - big.ravel()).max() <= TOLERANCE * big.max()
    assert page.locator(f'[data-layer="{layer}"] li[data-unit="{unit}"] .try-where').get_attribute("aria-pressed") == "true"
    assert errors == []
    page.close()


def open_page_without_webassembly(chromium, url: str):
    page = chromium.new_page()
    page.add_init_script("delete window.WebAssembly;")
    page.goto(url)
    page.wait_for_function("document.querySelector('[data-try]').dataset.state === 'unavailable'", timeout=30_000)
    return page, None


def test_bad_input_and_file_urls_say_what_is_needed(tried, browser):
    _, site, photos, network = tried
    chromium, url = browser
    page, errors = open_page(chromium, f"{url}models/{MODEL}/try.html")
    page.wait_for_function("document.querySelector('[data-try]').dataset.state === 'ready'", timeout=120_000)
    fake = photos.parent / "holiday.jpg"
    fake.write_text("not a photo")
    page.set_input_files("#try-file", str(fake))
    page.wait_for_function("window.microscopeTry.error", timeout=30_000)
    assert "is not an image" in page.locator("#try-status").inner_text()
    assert page.locator("[data-try]").get_attribute("data-state") == "ready"  # another photo may follow
    # A huge photo (downscaled first) and a grayscale one: results, the classes of their framing.
    elephant = Image.open(photos / "n02504458_African_elephant.jpg").convert("RGB")
    huge, gray = photos.parent / "huge.png", photos.parent / "gray.png"
    elephant.resize((6000, 4000)).save(huge)
    elephant.convert("L").save(gray)
    for path in (huge, gray):
        page.set_input_files("#try-file", str(path))
        page.wait_for_function(f"window.microscopeTry.result && window.microscopeTry.result.name === {json.dumps(path.name)}",
                               timeout=60_000)
    assert page.evaluate("window.microscopeTry.result.classes[0].index") == \
        int(np.argmax(python_outputs(network, LAYERS, gray)["logits"].numpy()))
    assert errors == []
    page.close()
    bare, _ = open_page_without_webassembly(chromium, f"{url}models/{MODEL}/try.html")
    assert "needs a browser with WebAssembly" in bare.locator("#try-status").inner_text()
    bare.close()
    offline, _ = open_page(chromium, (site / "models" / MODEL / "try.html").as_uri())
    text = offline.locator("#try-status").inner_text()
    assert "served over HTTP" in text and "build.py serve" in text
    assert offline.locator("[data-try]").get_attribute("data-state") == "unavailable"
    offline.close()


def test_the_page_is_usable_with_the_keyboard_and_passes_axe(tried, browser):
    _, site, photos, _ = tried
    chromium, url = browser
    page, errors = open_page(chromium, f"{url}models/{MODEL}/try.html")
    page.wait_for_function("document.querySelector('[data-try]').dataset.state === 'ready'", timeout=120_000)
    page.locator(".try-example").first.focus()
    page.keyboard.press("Enter")  # an example photo, chosen with the keyboard
    page.wait_for_function("document.querySelector('[data-try]').dataset.state === 'done'", timeout=60_000)
    where = page.locator(".try-where").first
    where.focus()
    page.keyboard.press("Enter")
    assert where.get_attribute("aria-pressed") == "true"
    # A photo dropped on the page, then one pasted: each gives its results.
    for event in ("drop", "paste"):
        page.evaluate("""async (event) => {
            const blob = await (await fetch(document.querySelector('.try-example').dataset.src)).blob();
            const carried = new DataTransfer();
            carried.items.add(new File([blob], event + '.webp', {type: blob.type}));
            const made = event === 'drop'
                ? new DragEvent('drop', {dataTransfer: carried, bubbles: true, cancelable: true})
                : new ClipboardEvent('paste', {clipboardData: carried, bubbles: true, cancelable: true});
            (event === 'drop' ? document.getElementById('try-drop') : document).dispatchEvent(made);
        }""", event)
        name = "drop.webp" if event == "drop" else "the pasted image"
        page.wait_for_function(f"window.microscopeTry.result.name === {json.dumps(name)}", timeout=60_000)
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async () => await axe.run(document, {
        runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}})""")
    assert [(v["id"], [n["target"] for n in v["nodes"]]) for v in found["violations"]] == []
    assert errors == []
    page.close()


def test_try_json_lists_layers_with_pages_in_order_an_sae_after_its_layer():
    """Only outputs whose layer has pages reach try.json; an SAE's features follow the layer they decompose;
    the logits are named, not listed; paths are the layers' folders (names.segment)."""
    from microscope.site.try_page import try_data
    from microscope.store import ExportedModel, ModelRecord
    from microscope.store.inbrowser import ExportedOutput, InputPreparation

    outputs = [ExportedOutput("a", "a", "conv", 4, 8, 8), ExportedOutput("b c", "b c", "block", 6, 4, 4),
               ExportedOutput("d", "d", "block", 2, 2, 2), ExportedOutput("a_sae", "a_sae", "sae", 16, 8, 8),
               ExportedOutput("logits", "logits", "logits", 3, 1, 1)]
    record = ExportedModel(key="k", model="m", weights_id="w", opset=17, input_name="image", input_size=32,
                           preprocessing=InputPreparation("BGR", 255.0, [1.0, 2.0, 3.0], [1.0, 1.0, 1.0], 36, 32),
                           outputs=outputs, weights_dtype="float16", tolerance=0.01, max_error={"a": 1e-3},
                           code_changes={}, check_photos=4, onnx_bytes=1000, files={})
    rows = [{"name": name, "href": f"{name}/index.html" if name != "d" else None} for name in ("a", "b c", "d", "a_sae")]
    model = ModelRecord(name="m", title="M", description="", weights_id="w", input_size=32,
                        categories=["x", "<b>y</b>", "z"], layers=[])
    data = try_data(model, record, rows, [], {"wasm": "w.js", "webgpu": "g.js", "dir": "ort/"})
    assert [layer["layer"] for layer in data["layers"]] == ["a", "a_sae", "b c"]  # d has no pages
    spaced = data["layers"][2]
    assert spaced["dir"].endswith("/") and " " not in spaced["dir"] and spaced["json"] == spaced["dir"] + "layer.json"
    assert data["logits"] == "logits" and data["classes"][1] == "<b>y</b>"  # data: try.js writes it as text
    assert data["preprocessing"] == {"channel_order": "BGR", "scale": 255.0, "mean": [1.0, 2.0, 3.0],
                                     "std": [1.0, 1.0, 1.0], "resize": 36, "crop": 32}
