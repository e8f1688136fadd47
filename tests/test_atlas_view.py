"""The activation atlas through the real command line: `examples` draws the sample, `atlas` lays it out,
describes and renders its cells, `site` writes its page; every stored number is checked against a
brute-force recomputation, and the page is driven in a real Chromium (wheel, drag, hover, tap, keys).
Seeded random weights, 16 small generated photos, a 4 x 4 grid, icons of a few steps.
"""
import functools
import http.server
import json
import re
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import microscope
from microscope.atlas.attribution import Attribution
from microscope.atlas.cells import LevelCells, attribution_rows
from microscope.atlas.layout import LayoutSettings, cell_of
from microscope.atlas.page import icon_scale
from microscope.atlas.stored import icon_pixels, read_atlas
from microscope.data.images import ImageDataset, Framing
from microscope.errors import UsageError
from microscope.network.loaded import load_network
from microscope.settings import renamed_flags
from microscope.store import AtlasLayout, AtlasVectors, ExamplesResult, Store
from microscope.views.atlas import AtlasSettings
from generated import REPO, blob_photos, cli

MODEL = ["--model", "inceptionv1-caffe", "--weights", "random"]
LAYER = "inception_3a"
ATLAS = ["--grid", "4", "--icon-steps", "3", "--icon-size", "32", "--icon-batch-size", "5",
         "--attribution-vectors", "3", "--atlas-patches", "2", "--n-neighbors", "15"]
LABELS = [i % 3 for i in range(16)]  # class indices of the 16 photos (ImageNet classes 0-2)
CHROMIUM = Path("/usr/bin/chromium")
AXE = REPO / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return blob_photos(tmp_path_factory.mktemp("photos"), 16, seed=3)


@pytest.fixture(scope="module")
def built(photos, tmp_path_factory):
    root = tmp_path_factory.mktemp("atlas")
    store, site = root / "store", root / "www" / "site"
    labels = root / "labels.csv"
    labels.write_text("".join(f"p{i:02d}.png,{LABELS[i]}\n" for i in range(16)))
    cli("examples", *MODEL, "--layers", f"{LAYER},logits", "--top-k", "3", "--atlas-vectors", "600", "--images", photos,
        "--labels", labels, "--store", store, "--quiet")
    first = cli("atlas", *MODEL, "--layers", LAYER, *ATLAS, "--images", photos, "--store", store, "--quiet")
    again = cli("atlas", *MODEL, "--layers", LAYER, *ATLAS, "--images", photos, "--store", store, "--quiet")
    cli("site", "--store", store, "--out", site, "--quiet")
    return Store(store), site, first, again, photos


def stored(store):
    sample = store.read(store.atlas_vectors_file("inceptionv1-caffe", LAYER), AtlasVectors)
    layout = store.read(store.atlas_dir("inceptionv1-caffe", LAYER) / "layout.npz", AtlasLayout)
    return sample, layout, read_atlas(store, "inceptionv1-caffe", LAYER)


def test_command_reports_and_reuses(built):
    store, _, first, again, _ = built
    _, _, atlas = stored(store)
    assert "1 atlases computed, 0 reused" in first.stdout and "0 atlases computed, 1 reused" in again.stdout
    coarse, fine = len(atlas.cells["coarse"].row), len(atlas.cells["fine"].row)
    assert f"{LAYER}: {atlas.result.n_vectors} vectors, {coarse} coarse and {fine} fine cells" in first.stdout
    assert first.stdout.strip().splitlines()[-1].startswith("next: python build.py site")
    assert atlas.result.n_vectors == 600  # the reservoir's capacity: 16 photos x 38 positions drawn is more
    assert 0 < coarse <= 16 and 0 < fine <= 64


def test_cells_equal_a_brute_force_recomputation(built):
    """Counts from the layout, nearest units from the sample's vectors, patches: the most typical member."""
    store, *_ = built
    sample, layout, atlas = stored(store)
    vectors = sample.vectors.astype(np.float64)
    for level, side in (("coarse", 4), ("fine", 8)):
        cells = atlas.cells[level]
        row, column = cell_of(layout.xy, side)
        counts = np.bincount(row * side + column, minlength=side * side).reshape(side, side)
        shown = np.argwhere(counts > 5)
        assert [tuple(p) for p in shown] == list(zip(cells.row.tolist(), cells.column.tolist()))
        for i, (r, c) in enumerate(shown):
            members = np.flatnonzero((row == r) & (column == c))
            assert cells.count[i] == len(members)
            mean = vectors[members].mean(axis=0)
            cosine = mean / np.linalg.norm(mean)
            # The six units of largest cosine, closest first: the stage ranks float32 means, this float64 ones,
            # so units within float32 rounding of each other may swap; any other unit is off by far more.
            assert len(set(cells.units[i].tolist())) == 6
            assert np.allclose(cosine[cells.units[i]], np.sort(cosine)[::-1][:6], rtol=0, atol=1e-6)
            assert np.allclose(cells.unit_cos[i], cosine[cells.units[i]], atol=1e-5)
            similarity = vectors[members] @ mean / np.linalg.norm(vectors[members], axis=1)
            first = np.flatnonzero(members == cells.patches[i, 0])  # the member most like the mean, up to rounding
            assert first.size == 1 and np.isclose(similarity[first[0]], similarity.max(), rtol=1e-5, atol=0)
            picked = cells.patches[i][cells.patches[i] >= 0]
            assert set(picked) <= set(members) and len(set(sample.image[picked])) == len(picked)  # one per photo
            assert len(atlas.patches[(level, i)]) == len(picked)


def test_class_attribution_equals_activation_times_gradient(built):
    """The stored top classes are the mean over the cell's attributed vectors of a . d logit / d a at
    their position, recomputed here by backward passes, class by class."""
    store, _, _, _, photos = built
    sample, layout, atlas = stored(store)
    network = load_network("inceptionv1-caffe", "random", "cpu", 0)
    levels = [LevelCells.of(layout, level, 5) for level in range(2)]
    rows = attribution_rows(levels, 3, 0)
    cells = atlas.cells["coarse"]
    members = np.intersect1d(levels[0].members[0], rows)
    assert cells.attributed[0] == len(members)
    seen = store.read(store.examples_result_file("inceptionv1-caffe", LAYER), ExamplesResult).view
    dataset = ImageDataset(photos, view=Framing(seen.resize, seen.crop))  # as the examples pass saw them
    attribution = Attribution(network, LAYER)
    classes = cells.classes[0].tolist()
    totals = np.zeros(len(classes))
    for row in members:
        image, _ = dataset.load(int(sample.image[row]))
        with torch.no_grad():
            activation = network.activations(image[None].float() / 255, [LAYER])[LAYER]
        y, x = int(sample.y[row]), int(sample.x[row])
        assert np.allclose(activation[0, :, y, x], sample.vectors[row].astype(np.float32), rtol=1e-2, atol=1e-2)
        activation = activation.clone().requires_grad_(True)
        logits = attribution._logits(activation)
        for k, label in enumerate(classes):
            gradient, = torch.autograd.grad(logits[0, label], activation, retain_graph=True)
            totals[k] += float((gradient[0, :, y, x] * activation[0, :, y, x]).sum().detach())
    # Random weights give attributions ~1e-6 of logits ~1e-2: float32 cancellation (batched vs single
    # convolutions) leaves about 1 %; a wrong row, position or photo is off by far more (and often in sign).
    assert np.allclose(totals / len(members), cells.class_attr[0], rtol=3e-2, atol=0)
    assert np.all(np.diff(cells.class_attr[0]) <= 0)


def test_attribution_of_all_classes_in_one_pass(tmp_path):
    """Attribution's forward-mode pass equals backward passes for every class tried, in float64."""
    network = load_network("inceptionv1-caffe", "random", "cpu", 0)
    torch.manual_seed(0)
    activation = network.activations(torch.rand(2, 3, 96, 96), ["inception_4c"])["inception_4c"].double()
    attribution = Attribution(network, "inception_4c")
    attribution.tail.double()  # shares the network's modules: the network is float64 from here on
    rows, ys, xs = np.array([0, 1, 1]), np.array([1, 2, 3]), np.array([2, 1, 3])
    found = attribution(activation, rows, ys, xs)
    assert found.shape == (3, 1000)
    for r in range(3):
        a = activation[rows[r]:rows[r] + 1].clone().requires_grad_(True)
        logits = attribution._logits(a)
        for label in (0, 7, 500, 999):
            gradient, = torch.autograd.grad(logits[0, label], a, retain_graph=True)
            expected = float((gradient[0, :, ys[r], xs[r]] * a[0, :, ys[r], xs[r]]).sum().detach())
            assert found[r, label] == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_icons_resume_per_batch_and_reproduce(built, photos):
    store, *_ = built
    _, _, atlas = stored(store)
    before = {level: icon_pixels(store, atlas, level) for level in ("coarse", "fine")}
    notebook = microscope.open_store(store.root).model("inceptionv1-caffe").layer(LAYER).atlas
    assert np.array_equal(notebook.icon_pixels("fine"), before["fine"]) and len(notebook.layout().xy) == 600
    assert before["coarse"].shape == (len(atlas.cells["coarse"].row), 32, 32, 3)
    assert len({icon.tobytes() for icon in before["fine"]}) == len(before["fine"])  # every cell its own icon
    for level in ("coarse", "fine"):  # batches of 5; each level shows a cell, as 600 vectors > 5 x 64 cells
        found = [name for name in atlas.icons.files if name.startswith(f"icons/{level}-")]
        assert len(found) == -(-len(atlas.cells[level].row) // 5) >= 1
    redone = max(name for name in atlas.icons.files if name.startswith("icons/fine-"))
    kept = {name: (atlas.folder / name).stat().st_mtime_ns for name in atlas.icons.files if name != redone}
    (atlas.folder / redone).unlink()
    (atlas.folder / "icons.json").unlink()
    result = cli("atlas", *MODEL, "--layers", LAYER, *ATLAS, "--images", photos, "--store", store.root, "--quiet")
    assert "1 atlases computed" in result.stdout
    assert kept and all((atlas.folder / name).stat().st_mtime_ns == when for name, when in kept.items())  # not redone
    again = read_atlas(store, "inceptionv1-caffe", LAYER)
    assert np.array_equal(icon_pixels(store, again, "fine"), before["fine"])  # the redone batch is identical


def test_bad_input_is_one_line(built, photos, tmp_path):
    store, *_ = built
    for args, words in (
            (["--layers", "logits"], "has no spatial grid"),
            (["--layers", "inception_4a"], "--atlas-vectors 100000"),
            (["--layers", LAYER, "--grid", "100"], "it needs at least 2500"),
            (["--layers", LAYER, "--icon-size", "8"], "--icon-size 8 is too small")):
        result = cli("atlas", *MODEL, *args, "--images", photos, "--store", store.root, code=2)
        assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    other = tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (96, 96), (10, 20, 30)).save(other / "x.png")
    store_copy = tmp_path / "store"
    subprocess.run(["cp", "-r", str(store.root), str(store_copy)], check=True)
    for name in ("cells.json", "icons.json"):
        (store_copy / "inceptionv1-caffe" / LAYER / "atlas" / name).unlink()
    result = cli("atlas", *MODEL, "--layers", LAYER, *ATLAS, "--images", other, "--store", store_copy, code=2)
    assert "was drawn from other images" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_settings_have_one_name_from_the_flag_to_the_layout():
    """UMAP's own names (n_neighbors, min_dist) from the command line to LayoutSettings; the older flags
    still read; a value out of range is one line naming the flag."""
    assert renamed_flags([AtlasSettings]) == {"--umap-neighbours": "--n-neighbors", "--umap-min-dist": "--min-dist"}
    settings = AtlasSettings.from_values({"n_neighbors": 15, "min_dist": 0.1, "grid": 3})
    assert settings.layout(seed=7).layout == LayoutSettings(n_neighbors=15, min_dist=0.1, seed=7)
    for bad, words in ((dict(min_dist=1.5), "--min-dist must be at most 1"),
                       (dict(n_neighbors=1), "--n-neighbors must be at least 2"),
                       (dict(icon_batch_size=0), "--icon-batch-size must be at least 1"),
                       (dict(icon_size=8), "--icon-size 8 is too small")):
        with pytest.raises(UsageError, match=words):
            AtlasSettings(**bad)


def atlas_data(page_html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="atlas-data">(.*?)</script>', page_html, re.S)
                      .group(1))


def test_site_pages_link_and_ship_only_their_files(built):
    store, site, *_ = built
    _, _, atlas = stored(store)
    folder = site / "models" / "inceptionv1-caffe" / LAYER
    html = (folder / "atlas" / "index.html").read_text()
    data = atlas_data(html)
    assert str(store.root.parent) not in html and "/tmp" not in html
    for level in ("coarse", "fine"):
        found = data["levels"][level]
        assert len(found["cells"]) == len(atlas.cells[level].row)
        with Image.open(folder / "atlas" / found["sheet"]) as sheet:
            assert sheet.size[0] == found["columns"] * found["tile"] == found["columns"] * 32
        for i, cell in enumerate(found["cells"]):
            assert cell[:3] == [int(atlas.cells[level].row[i]), int(atlas.cells[level].column[i]),
                                int(atlas.cells[level].count[i])]
            assert (folder / "atlas" / "patches" / f"{level}-{i}.webp").is_file() == (cell[5] > 0)
    for unit, link in data["units"].items():
        assert (folder / "atlas" / link["href"]).resolve() == (folder / unit / "index.html").resolve()
        assert (folder / unit / "index.html").is_file()
    sample, layout, _ = stored(store)
    row, column = cell_of(layout.xy, 8)
    names = microscope.open_store(store.root).model("inceptionv1-caffe").record.categories
    for cell in data["levels"]["fine"]["cells"]:
        members = (row == cell[0]) & (column == cell[1])
        counts = np.bincount(np.array(LABELS)[sample.image[members]], minlength=3)
        expected = sorted(((-n, label) for label, n in enumerate(counts) if n), key=lambda t: t)
        assert cell[7] == [[names[label], -n] for n, label in expected]  # the photos' labels, most common first
    assert 'href="atlas/index.html"' in (folder / "index.html").read_text()
    logits = (site / "models" / "inceptionv1-caffe" / "logits" / "index.html").read_text()
    assert "No activation atlas: this layer has no spatial grid" in logits


@pytest.fixture(scope="module")
def server(built):
    _, site, *_ = built

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass  # the browser dropping a request it no longer needs

    httpd = Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site.parent)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/site/models/inceptionv1-caffe/{LAYER}/"
    httpd.shutdown()
    httpd.server_close()


def pinch(page, box) -> None:
    """Two touch pointers spreading from 20 px to 200 px apart around the canvas's centre."""
    page.evaluate("""([x, y]) => { const c = document.getElementById('atlas-map'), r = c.getBoundingClientRect();
        const fire = (type, id, dx) => c.dispatchEvent(new PointerEvent(type, {pointerId: id, pointerType: 'touch',
            isPrimary: id === 1, bubbles: true, clientX: r.left + x + dx, clientY: r.top + y}));
        fire('pointerdown', 1, -10); fire('pointerdown', 2, 10);
        for (let d = 10; d <= 100; d += 10) { fire('pointermove', 1, -d); fire('pointermove', 2, d); }
        fire('pointerup', 1, -100); fire('pointerup', 2, 100); }""", [box["width"] / 2, box["height"] / 2])


def test_atlas_page_in_a_real_browser(server):
    """Drawn from the sprite sheet; wheel zooms into the fine grid; hover and keys show a cell; a tap keeps
    it; its unit link leads to the unit page."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox",
                                                                                  "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        page.goto(server + "index.html")
        page.click("#atlas >> text=Open the atlas")
        page.wait_for_url("**/atlas/index.html")
        page.add_script_tag(path=str(AXE))
        result = page.evaluate("""async () => await axe.run(document, {
            runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}})""")
        assert [(v["id"], [n["target"] for n in v["nodes"]]) for v in result["violations"]] == []
        page.reload()
        page.wait_for_url("**/atlas/index.html")
        page.wait_for_load_state("networkidle")
        canvas = page.locator("#atlas-map")
        box = canvas.bounding_box()
        painted, width, height = page.evaluate("""() => { const c = document.getElementById('atlas-map');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
            for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
            return [n, c.width, c.height]; }""")
        assert page.locator("#atlas-level").inner_text().startswith("4×4")
        data = atlas_data(page.content())
        # Every coarse cell's icon is drawn, opaque, in a square of its own (the canvas is transparent elsewhere):
        # the painted pixels are the icons' areas, whatever number of cells the layout shows (edges antialiased).
        counts = [cell[2] for cell in data["levels"]["coarse"]["cells"]]
        step = min(width, height) / 4  # device pixels: the 4 x 4 grid fills the canvas's shorter side
        sides = [step * icon_scale(count, max(counts)) for count in counts]
        assert sum((side - 2) ** 2 for side in sides) <= painted <= sum((side + 2) ** 2 for side in sides)
        cell = data["levels"]["coarse"]["cells"][0]
        side = min(box["width"], box["height"])
        left = box["x"] + (box["width"] - side) / 2
        top = box["y"] + (box["height"] - side) / 2
        page.mouse.move(left + (cell[1] + 0.5) * side / 4, top + (cell[0] + 0.5) * side / 4)
        details = page.locator(".atlas-cell")
        details.wait_for()
        assert details.get_attribute("data-level") == "coarse" and details.get_attribute("data-cell") == "0"
        assert f"{cell[2]} of the {data['n_vectors']} vectors" in details.inner_text()
        assert page.locator(".atlas-cell .classes li").count() == 5
        page.wait_for_function("document.querySelector('.atlas-patches').naturalWidth > 0")
        for _ in range(4):
            page.mouse.wheel(0, -400)
        page.wait_for_function("document.getElementById('atlas-level').textContent.startsWith('8×8')")
        canvas.focus()
        page.keyboard.press("0")
        page.wait_for_function("document.getElementById('atlas-level').textContent.startsWith('4×4')")
        pinch(page, box)  # two fingers moving apart zoom in, as the wheel does
        page.wait_for_function("document.getElementById('atlas-level').textContent.startsWith('8×8')")
        page.mouse.move(box["x"] + 10, box["y"] + 10)
        page.mouse.down()
        page.mouse.move(box["x"] + 60, box["y"] + 40, steps=4)
        page.mouse.up()
        canvas.focus()
        page.keyboard.press("0")
        page.wait_for_function("document.getElementById('atlas-level').textContent.startsWith('4×4')")
        page.keyboard.press("ArrowRight")
        assert page.locator(".atlas-cell").count() == 1
        page.keyboard.press("Enter")
        focused = page.evaluate("document.activeElement.getAttribute('href')")
        assert focused and focused.endswith("/index.html")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(rf".*/{LAYER}/\d+/index.html"))
        assert page.locator("h1").inner_text().startswith(LAYER)
        assert errors == []
        browser.close()


def test_the_sample_is_drawn_only_when_asked_and_kept_by_a_run_that_does_not_ask(built, photos, tmp_path):
    """No --atlas-vectors: no sample is drawn (the pass pays nothing for it) and `atlas` says in one line what
    to run; a later run without it keeps the layer a sample was drawn for instead of computing it again."""
    store = tmp_path / "store"
    cli("examples", *MODEL, "--layers", LAYER, "--top-k", "3", "--images", photos, "--store", store, "--quiet")
    assert not Store(store).atlas_vectors_file("inceptionv1-caffe", LAYER).exists()
    refused = cli("atlas", *MODEL, "--layers", LAYER, *ATLAS, "--images", photos, "--store", store, code=2)
    assert "--atlas-vectors 100000" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    kept, _, _, _, _ = built
    result = kept.read(kept.examples_result_file("inceptionv1-caffe", LAYER), ExamplesResult)
    labels = kept.root.parent / "labels.csv"
    again = cli("examples", *MODEL, "--layers", f"{LAYER},logits", "--top-k", "3", "--images", photos,
                "--labels", labels, "--store", kept.root)
    assert "0 layers computed, 2 reused" in again.stdout, again.stdout
    assert kept.read(kept.examples_result_file("inceptionv1-caffe", LAYER), ExamplesResult).key == result.key
    assert kept.read(kept.atlas_vectors_file("inceptionv1-caffe", LAYER), AtlasVectors) is not None


def test_examples_and_atlas_in_one_run_need_a_sample_asked_for(photos, tmp_path):
    """Through the library, both views in one run: without --atlas-vectors the atlas says in one line what to add,
    before anything is computed."""
    from microscope.run.pipeline import run_views
    from microscope.run.session import Images
    network = load_network("inceptionv1-caffe", weights="random", seed=0, progress=False)
    with pytest.raises(UsageError, match="add --atlas-vectors 100000") as refused:
        run_views(network, ["examples", "atlas"], store=tmp_path / "store", layers=[LAYER],
                  images=Images(str(photos), None))
    assert "\n" not in str(refused.value) and not (tmp_path / "store" / "inceptionv1-caffe" / LAYER).exists()
