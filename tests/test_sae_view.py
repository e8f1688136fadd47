"""SAE features as units, through the real command line: `sae` trains and stores an SAE, `build` makes its
features' pages with every view, and the numbers on them are checked against the stored weights and a
brute-force computation. Seeded random weights, 20 small generated photos, a few dozen training steps.
"""
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from microscope.network.catalogue import catalogue
from microscope.cli import main
from microscope.data.images import ImageDataset, Framing
from microscope.network.loaded import load_network
from microscope.sae.panel import TABLE_FIRST
from microscope.sae.stored import read_sae
from microscope.store import ExamplesSummary, Store
from generated import REPO, blob_photos, cli, QUICK_CARICATURES
from site_fixtures import piece_html

MODEL = ["--model", "inceptionv1-caffe", "--weights", "random"]
LAYER, FEATURES = "inception_3a", "inception_3a_sae"
TRAIN = ["--layers", LAYER, "--expansion", "2", "--k", "8", "--steps", "40", "--batch-size", "64", "--quiet"]
TOP = 4
CHROMIUM = Path("/usr/bin/chromium")
AXE = REPO / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return blob_photos(tmp_path_factory.mktemp("photos"), 20, seed=1)


@pytest.fixture(scope="module")
def built(photos, tmp_path_factory):
    root = tmp_path_factory.mktemp("sae")
    store, site = root / "store", root / "site"
    trained = cli("sae", *MODEL, *TRAIN, "--images", photos, "--store", store)
    again = cli("sae", *MODEL, *TRAIN, "--images", photos, "--store", store)
    cli("build", *MODEL, *QUICK_CARICATURES, "--layers", f"{LAYER},{FEATURES}", "--units", "0-1", "--steps", "4", "--size", "48",
        "--atlas-vectors", "200",
        "--objectives", "channel", "--top-k", str(TOP), "--images", photos, "--store", store, "--out", site, "--quiet")
    return Store(store), site, trained, again


def test_sae_command_reports_and_reuses(built):
    store, _, trained, again = built
    result, weights = read_sae(store, "inceptionv1-caffe", LAYER, "random-seed0")
    last = trained.stdout.strip().splitlines()
    assert last[0] == "plan: sparse autoencoder 1 SAEs (not timed)"  # said before the work; training has no estimate
    # The sample is chosen from the data: 32 vectors per feature aimed at (16,384), at most 256 positions per
    # image; 18 training images give 4,608, of which 96 per image (1,728, 3.4 per feature) count against the 16
    # per feature below which the plan warns, with the fix.
    assert last[1].startswith(f"{LAYER}: 256 positions per image x 18 training images = 4,608 vectors for 512 "
                              "features (9.0 per feature), 40 steps at most (positions chosen from the data")
    warned = [line for line in trained.stderr.splitlines() if "under the 16 an SAE needs" in line]
    assert len(warned) == 1 and warned[0].startswith(f"{LAYER}: 18 training images give 3.4 vectors per feature")
    assert "use 96 images or more" in warned[0] and "--expansion 1" in warned[0]
    assert "held-out FVU" in trained.stdout and f"(training {result.train_fvu:.3f})" in trained.stdout
    assert f"{FEATURES}: 512 features, k 8; held-out FVU {result.fvu:.3f}" in trained.stdout
    assert last[-1].startswith("next: python build.py build") and FEATURES in last[-1]
    assert "1 SAEs computed, 0 reused" in trained.stdout and "0 SAEs computed, 1 reused" in again.stdout
    assert result.features == 512 and weights.W_dec.shape == (256, 512) and result.k == 8
    assert np.allclose(np.linalg.norm(weights.W_dec, axis=0), 1, atol=1e-5)
    assert 0 < result.fvu < 1 and 0 < result.l0 <= 8 and len(result.curve) == 4
    # held out: 2 of 20 images, every position one step or more from the edge of the 28 x 28 grid; one image
    # stops training early, the other gives the reported numbers
    assert result.held_vectors == 26 * 26 and result.validation_vectors == 26 * 26
    assert result.train_vectors == 18 * 256 and result.sampling["positions_per_image"] == 256
    assert result.steps_trained == result.best_step == 40 and [s for s, _ in result.validation_curve] == [40]
    assert not list(store.root.rglob("checkpoint.npz"))


def encode(weights, scale, k, x, slack=1e-5):
    """The stored SAE's code of (n, C) vectors, in float64 numpy (independent of the derived module), as two
    bounds: (the code without, the code with) the features within `slack` of a row's k-th largest
    pre-activation, where the layer's float32 may pick either of two near-tied features."""
    pre = (x.astype(np.float64) / scale - weights.b_pre) @ weights.W_enc.T.astype(np.float64) + weights.b_enc
    ranked = np.sort(pre, axis=1)
    margin = slack * np.abs(pre).max(axis=1)
    surely_in = pre > (ranked[:, -k - 1] + margin)[:, None]  # above the (k+1)-th by more than rounding
    maybe_in = pre >= (ranked[:, -k] - margin)[:, None]  # not below the k-th by more than rounding
    return (np.where(surely_in, np.maximum(pre, 0), 0), np.where(maybe_in, np.maximum(pre, 0), 0))


def test_feature_examples_equal_brute_force(built, photos):
    store, *_ = built
    result, weights = read_sae(store, "inceptionv1-caffe", LAYER, "random-seed0")
    summary = store.read(store.examples_summary_file("inceptionv1-caffe", FEATURES), ExamplesSummary)
    network = load_network("inceptionv1-caffe", weights="random", seed=0)
    dataset = ImageDataset(photos, view=Framing(224, 224))
    with torch.inference_mode():
        images = torch.stack([dataset.load(i)[0] for i in range(len(dataset))]).float().div_(255)
        activation = network.activations(images, [LAYER])[LAYER].numpy()
    n, c, h, w = activation.shape
    low, high = (code.reshape(n, h, w, -1)[:, 1:-1, 1:-1].reshape(n, (h - 2) * (w - 2), -1).max(axis=1)
                 for code in encode(weights, result.scale, result.k, activation.transpose(0, 2, 3, 1).reshape(-1, c)))
    assert np.mean(low == high) > 0.99  # near ties are rare: the bounds pin almost every value exactly
    assert not store.atlas_vectors_file("inceptionv1-caffe", FEATURES).exists()  # the atlas is the source's
    assert store.atlas_vectors_file("inceptionv1-caffe", LAYER).is_file()
    found = summary.top_values > 0
    assert found.any() and not np.isin(summary.top_y[found], [0, h - 1]).any()  # never at the border
    assert not np.isin(summary.top_x[found], [0, w - 1]).any()

    def between(value, lower, upper):  # lower <= value <= upper, within the layer's float32 rounding
        return np.all(value >= lower - 1e-4 * np.abs(lower) - 1e-5) and \
            np.all(value <= upper + 1e-4 * np.abs(upper) + 1e-5)

    for feature in range(result.features):
        stored = summary.top_values[feature]
        # rank for rank, the brute-force top values (bounded where a near tie may drop or add the feature)
        assert between(stored, -np.sort(-low[:, feature])[:TOP], -np.sort(-high[:, feature])[:TOP]), feature
        # and the stored images hold them (the same images, up to near ties)
        held = summary.top_index[feature]
        assert between(stored, low[held, feature], high[held, feature]), feature


class Page(HTMLParser):
    def __init__(self, path: Path):
        super().__init__()
        self.links, self.text, self.classes = [], [], {}
        self._open = None
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        self._open = attrs.get("class")

    def handle_data(self, data):
        self.text.append(data)
        if self._open and data.strip():
            self.classes.setdefault(self._open, data.strip())

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


def test_feature_neuron_and_layer_pages(built):
    store, site, *_ = built
    result, weights = read_sae(store, "inceptionv1-caffe", LAYER, "random-seed0")
    model = site / "models/inceptionv1-caffe"
    feature = int(np.argmax(weights.firing))
    page = Page(model / FEATURES / str(feature) / "index.html")
    nearest = int(np.argmax(weights.W_dec[:, feature]))
    assert f"{LAYER} {nearest}" in page.words
    assert float(page.classes["cosine"]) == pytest.approx(weights.W_dec[nearest, feature], abs=1e-3)
    neuron_links = [href for href in page.links if href.startswith(f"../../{LAYER}/")]
    top = np.argsort(-weights.W_dec[:, feature], kind="stable")[:8]
    assert neuron_links[:9] == [f"../../{LAYER}/{nearest}/index.html"] + [f"../../{LAYER}/{u}/index.html" for u in top]
    for href in neuron_links:
        assert (model / FEATURES / str(feature) / href).resolve().is_file()
    assert "Dataset examples" in page.words and "Feature visualization" in page.words
    assert "No circuits" not in page.words  # circuits do not apply to SAE features
    unit_json = json.loads((model / FEATURES / str(feature) / "unit.json").read_text())
    assert unit_json["sae"]["nearest_neuron"] == nearest and unit_json["examples"]

    neuron = Page(model / LAYER / str(nearest) / "index.html")
    loading = np.argsort(-weights.W_dec[nearest], kind="stable")[:6]
    assert [h for h in neuron.links if f"/{FEATURES}/" in h] == [f"../../{FEATURES}/{f}/index.html" for f in loading]

    layer = Page(model / FEATURES / "index.html")
    assert layer.classes["fvu"] == f"{result.fvu:.3g}"
    assert layer.classes["train-fvu"].startswith(f"{result.train_fvu:.3g}")
    # 18 training images for 512 features memorise: the page says so when the FVUs are far apart
    assert ("far below the held-out FVU" in layer.classes["train-fvu"]) == (result.fvu > 1.5 * result.train_fvu)
    assert layer.classes["dead"].startswith(f"{100 * result.dead_fraction:.1f} %")
    html = (model / FEATURES / "index.html").read_text(encoding="utf-8")
    table = html[html.index('<details class="sae-features">'):]
    table = table[:table.index("</details>")]
    first = [int(unit) for unit in re.findall(r'href="(\d+)/index.html"', table)]
    assert len(first) == TABLE_FIRST < result.features and 'data-rows="features.js"' in table
    later = re.findall(r'href="(\d+)/index.html"', piece_html(model / FEATURES / "features.js"))  # on request
    listed = first + [int(unit) for unit in later]
    assert sorted(listed) == list(range(result.features))
    assert np.all(np.diff(weights.firing[listed]) <= 0)  # by how often they fire
    missing = int((weights.nearest_cosine < 0.5).sum())
    assert layer.classes["missing-count"].startswith(f"{missing} ")
    page_bytes = sum(p.stat().st_size for p in (model / FEATURES / str(feature)).iterdir())
    assert page_bytes < 94_000
    assert f"../{FEATURES}/index.html" in Page(model / LAYER / "index.html").links  # the neurons' layer links to it


def test_links_to_another_layer_come_from_the_site():
    from microscope.site.pages import LayerContext

    context = LayerContext(None, None, "models/m/inception_3a", {}, {}, {}, None, None,
                           index={FEATURES: {0, 1}, "inception_3b": set()}, all_labels={})
    href = context.layer_href("models/m/inception_3a")
    assert href(FEATURES) == f"../{FEATURES}/index.html"
    assert href("inception_3b") is None and href("inception_9z") is None  # the site has no page of it: no link


@pytest.mark.parametrize("extra, message", [
    (["--layers", LAYER, "--k", "512", "--expansion", "2"], "--k must be at least 1 and below the number of features (512)"),
    (["--layers", LAYER, "--expansion", "0"], "'--expansion': 0 is not in the range x>=1"),
    (["--layers", LAYER, "--lr", "0"], "--lr must be above 0"),
    (["--layers", "inception_5b", "--positions-per-image", "26"], "fewer than --positions-per-image 26"),
    (["--layers", "logits"], "is not a layer of the model's grid"),
    (["--layers", "inception_9z"], "unknown layer 'inception_9z'"),
])
def test_bad_sae_input_is_one_line(tmp_path, photos, extra, message):
    result = CliRunner().invoke(main, ["sae", *MODEL, "--images", str(photos), "--store", str(tmp_path / "s"), *extra])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "s").exists()


def test_the_older_flags_still_work_with_a_note(tmp_path, photos):
    result = CliRunner().invoke(main, ["sae", *MODEL, "--images", str(photos), "--store", str(tmp_path / "s"),
                                       "--layer", LAYER, "--sae-batch-size", "0"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "note: --layer is now --layers; the old name still works for now",
        "note: --sae-batch-size is now --batch-size; the old name still works for now",
        "error: Invalid value for '--batch-size': 0 is not in the range x>=1. (see: main sae --help)"]
    assert not (tmp_path / "s").exists()


def test_one_command_trains_several_layers(photos, tmp_path):
    layers = ["inception_3a", "inception_3b"]
    small = ["--expansion", "1", "--k", "4", "--positions-per-image", "4", "--steps", "12", "--batch-size", "16"]
    trained = cli("sae", *MODEL, "--layers", ",".join(layers), *small, "--images", photos, "--store", tmp_path,
                  "--quiet")
    assert "2 SAEs computed, 0 reused" in trained.stdout
    assert trained.stdout.strip().splitlines()[-1].startswith(
        "next: python build.py build --model inceptionv1-caffe --layers inception_3a_sae,inception_3b_sae ")
    for layer, width in zip(layers, (256, 480)):
        result, weights = read_sae(Store(tmp_path), "inceptionv1-caffe", layer, "random-seed0")
        assert result.layer == layer and result.features == width and result.k == 4 and result.training["steps"] == 12
        assert result.training["batch_size"] == 16 and result.sampling["positions_per_image"] == 4
        assert weights.W_dec.shape == (width, width)
        assert f"{layer}_sae: {width} features, k 4; held-out FVU {result.fvu:.3f}" in trained.stdout


def test_an_sae_of_other_weights_is_refused(built, tmp_path):
    store, *_ = built
    before = sorted(p for p in store.root.rglob("*") if p.is_file() and p.name != ".lock")
    result = CliRunner().invoke(main, ["build", "--model", "inceptionv1-caffe", "--weights", "random", "--seed", "1",
                                       "--layers", FEATURES, "--store", str(store.root), "--out", str(tmp_path / "site")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "trained for other weights" in lines[0] and "build.py sae" in lines[0], result.stderr
    assert sorted(p for p in store.root.rglob("*") if p.is_file() and p.name != ".lock") == before
    assert not (tmp_path / "site").exists()


def test_the_notebook_api_reads_the_sae(built):
    import microscope

    store, *_ = built
    result, weights = read_sae(store, "inceptionv1-caffe", LAYER, "random-seed0")
    for name in (LAYER, FEATURES):
        found_result, found_weights = microscope.open_store(store.root).model("inceptionv1-caffe").layer(name).sae
        assert found_result == result and np.array_equal(found_weights.W_dec, weights.W_dec)


def test_a_build_past_one_gigabyte_says_what_to_drop_before_the_work():
    from torch import nn

    from microscope.models import LayerSpec
    from microscope.run.pipeline import site_size_warning as size_warning
    from microscope.site.estimate import UNIT_BYTES

    network = load_network("inceptionv1-caffe", weights="random", seed=0)
    assert size_warning(network) is None  # every unit of the model alone fits
    base = sum(layer.channels for layer in catalogue(network)
               if layer.kind in ("conv", "block", "logits"))
    assert base * UNIT_BYTES < 1e9
    for source, features in (("inception_3b", 3840), ("inception_4c", 4096)):
        spec = LayerSpec(name=f"{source}_sae", nodes=(), kind="sae", relu_of_twin=False)
        width = 480 if source == "inception_3b" else 512
        network.derive(spec, source, nn.Conv2d(width, features, 1), key=source)
    warning = size_warning(network)
    total = (base + 3840 + 4096) * UNIT_BYTES
    assert warning.startswith(f"a site of every unit of inceptionv1-caffe ({base + 7936} units, about {total / 1e9:.2f} GB")
    # the biggest SAE layer goes first, and dropping it is enough only if the rest fits
    assert "inception_4c_sae (4096 features" in warning
    assert ("inception_3b_sae (3840" in warning) == ((base + 3840) * UNIT_BYTES > 1e9)


def test_sae_pages_have_no_accessibility_violations(built):
    """axe-core in a real browser on the SAE layer page, its most-firing feature and that feature's nearest neuron."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    store, site, *_ = built
    _, weights = read_sae(store, "inceptionv1-caffe", LAYER, "random-seed0")
    feature = int(np.argmax(weights.firing))
    nearest = int(np.argmax(weights.W_dec[:, feature]))
    model = site / "models" / "inceptionv1-caffe"
    pages = [model / FEATURES / "index.html", model / FEATURES / str(feature) / "index.html",
             model / LAYER / str(nearest) / "index.html"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox",
                                                                                  "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        for path in pages:
            page.goto(path.as_uri())
            page.add_script_tag(path=str(AXE))
            found = page.evaluate("""async () => (await axe.run(document, {runOnly: {type: 'tag',
                values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}})).violations
                .map(v => [v.id, v.nodes.map(n => n.target)])""")
            assert found == [], (path.relative_to(site), found)
        browser.close()
