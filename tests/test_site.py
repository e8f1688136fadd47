"""The static site: pages, data export, links, escaping, incremental rebuilds, sizes.

Every test builds from a small artifact store written file by file (tests/site_fixtures.py) with
solid-colour images, so pixels and numbers on the site can be checked against their sources.
"""
from __future__ import annotations

import html.parser
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from PIL import Image

from microscope.errors import UsageError
from microscope.site.builder import build_site
from microscope.store import Store
from microscope.site.builder import SITE_LOCK
from microscope.names import segment
from microscope.store import load_npz
from site_fixtures import (ACTIVATION_MAX, FINGERPRINT, N_IMAGES, TOP_K, WEIRD_LAYER, make_store, patch_colour,
                           render_colour, write_featurevis)

LABELS = {"conv1": {"1": {"label": "curve <script>alert(1)</script>", "note": "see ../../etc/passwd \"quoted\""}},
          WEIRD_LAYER: {2: "eye </title><b>"}}


class Page(html.parser.HTMLParser):
    """Collects links, images, text and scripts of one HTML page; fails on unbalanced markup."""

    VOID = {"meta", "link", "img", "input", "br", "hr", "source", "path", "rect", "line"}

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []  # (tag, url)
        self.images: list[dict] = []
        self.scripts_inline: list[str] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.title = ""
        self._in = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("href", "src"):
            if attrs.get(key) is not None:
                self.links.append((tag, attrs[key]))
        if tag == "img":
            self.images.append(attrs)
        if tag not in self.VOID:
            self.stack.append(tag)
        self._in = tag

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "script":
            self.scripts_inline.append(data)
        elif self.stack and self.stack[-1] == "title":
            self.title += data
        else:
            self.text.append(data)


def parse(path: Path) -> Page:
    page = Page(path.read_text(encoding="utf-8"))
    assert not page.stack, f"{path}: unclosed {page.stack}"
    return page


def check_links(site: Path) -> int:
    """Every href/src of every page is relative and names a file inside the site. Returns the count."""
    checked = 0
    root = site.resolve()
    for page_path in site.rglob("*.html"):
        for tag, url in parse(page_path).links:
            parts = urlsplit(url)
            if url.startswith("#") or parts.scheme in ("data", "mailto"):
                continue
            assert not parts.scheme and not parts.netloc and not url.startswith("/"), f"{page_path}: absolute link {url}"
            target = (page_path.parent / unquote(parts.path)).resolve()
            if url.endswith("/"):
                target = target / "index.html"
            assert root in target.parents, f"{page_path}: {url} leaves the site"
            assert target.is_file(), f"{page_path.relative_to(site)}: broken {tag} link {url}"
            checked += 1
    return checked


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("site")
    make_store(base / "store")
    report = build_site(Store(base / "store"), base / "site", labels=LABELS, progress=False)
    return base / "store", base / "site", report


def unit_dir(site: Path, layer: str, unit: int) -> Path:
    return site / "models" / "tiny" / segment(layer) / str(unit)


# ------------------------------------------------------------------------------------------------
# Pages and links


def test_every_link_and_image_resolves(built):
    _, site, _ = built
    assert check_links(site) > 200


def test_site_has_pages_for_models_layers_and_units(built):
    _, site, report = built
    assert (site / ".nojekyll").is_file() and (site / "404.html").is_file()
    home = parse(site / "index.html")
    assert ("a", "models/tiny/index.html") in home.links
    model = parse(site / "models" / "tiny" / "index.html")
    hrefs = [url for tag, url in model.links if tag == "a"]
    # Layers with artifacts are linked, in network order; the block without artifacts is listed, unlinked.
    linked = [h for h in hrefs if h.endswith("/index.html") and h.count("/") == 1]
    assert linked[:3] == ["conv1/index.html", "mixed_a/index.html", f"{segment(WEIRD_LAYER)}/index.html"]
    assert "mixed_b" in "".join(model.text) and "mixed_b/index.html" not in hrefs
    assert "mixed_a_1x1" not in "".join(model.text)  # a branch without artifacts is not listed
    layer = parse(site / "models" / "tiny" / "conv1" / "index.html")
    units = [url for tag, url in layer.links if tag == "a" and re.fullmatch(r"\d+/index\.html", url)]
    assert units == [f"{u}/index.html" for u in range(4)]
    assert report.models["tiny"]["units_built"] == 4 + 5 + 3


def test_unit_page_shows_renders_examples_and_navigation(built):
    _, site, _ = built
    page = parse(unit_dir(site, "conv1", 1) / "index.html")
    shown = [img for img in page.images if "src" in img]  # the hover view's <img> gets its src on hover
    sources = [img["src"] for img in shown]
    assert sources[:5] == ["channel.webp", "neuron.webp", "negative.webp", "diversity-0.webp", "diversity-1.webp"]
    assert sources.count("top.webp") == TOP_K
    assert ("link", "../0/index.html") in page.links and ("link", "../2/index.html") in page.links
    assert ("a", "index.html") in page.links  # the permalink
    assert all(img.get("alt") for img in shown), "every image has alt text"
    assert shown[0]["alt"] == "channel feature visualization of conv1 unit 1"
    description = re.search(r'<meta name="description" content="([^"]+)">', (unit_dir(site, "conv1", 1) / "index.html").read_text())
    assert description.group(1).startswith("Feature visualization, dataset examples and circuit of unit 1 of conv1 (curve")
    text = " ".join(page.text)
    assert "Negative examples" in text and "Top classes" in text and "<cls2>" in text
    assert "Provenance" in text and "Across the range" in text
    # Every example links to the dataset photo it came from.
    photos = [url for tag, url in page.links if tag == "a" and "/datasets/" in url]
    assert photos and all(url.startswith(f"../../datasets/{FINGERPRINT}/") for url in photos)


def test_histogram_is_inline_svg_of_the_stored_counts(built):
    store, site, _ = built
    text = (unit_dir(site, "conv1", 2) / "index.html").read_text()
    path = re.search(r'<path class="bars" d="([^"]+)"', text).group(1)
    counts = load_npz(store / "tiny" / "conv1" / "examples" / "summary.npz")["hist_counts"][2]
    used = counts[np.flatnonzero(counts)[0]:np.flatnonzero(counts)[-1] + 1]
    heights = [float(v) for v in re.findall(r"V([\d.]+)H", path)]
    assert len(heights) == len(used)
    base = float(re.search(r"M[\d.]+ ([\d.]+)", path).group(1))
    bars = base - np.array(heights)
    # Log scale: bar heights are proportional to log(1 + count).
    np.testing.assert_allclose(bars / bars.max(), np.log1p(used) / np.log1p(used).max(), atol=0.01)


# ------------------------------------------------------------------------------------------------
# Data export


def test_unit_json_matches_the_store(built):
    store, site, _ = built
    summary = load_npz(store / "tiny" / "conv1" / "examples" / "summary.npz")
    files = json.loads((store / "tiny" / "datasets" / FINGERPRINT / "images.json").read_text())["files"]
    for unit in range(4):
        data = json.loads((unit_dir(site, "conv1", unit) / "unit.json").read_text())
        assert (data["model"], data["layer"], data["unit"]) == ("tiny", "conv1", unit)
        examples = data["examples"]
        valid = summary["top_index"][unit] >= 0
        expected = [{"image": files[i], "value": pytest.approx(float(v), rel=1e-5), "y": int(y), "x": int(x)}
                    for i, v, y, x in zip(summary["top_index"][unit][valid], summary["top_values"][unit][valid],
                                          summary["top_y"][unit][valid], summary["top_x"][unit][valid])]
        assert examples["top_examples"] == expected
        values = [e["value"] for e in examples["top_examples"]]
        assert values == sorted(values, reverse=True)
        assert [e["value"] for e in examples["bottom_examples"]] == pytest.approx(summary["bottom_values"][unit].tolist(), rel=1e-5)
        renders = data["featurevis"]["renders"]
        assert renders == {"channel": "channel.webp", "neuron": "neuron.webp", "negative": "negative.webp",
                           "diversity-0": "diversity-0.webp", "diversity-1": "diversity-1.webp"}
        for image in renders.values():
            assert (unit_dir(site, "conv1", unit) / image).is_file()
        assert data["featurevis"]["config"]["seed"] == 0
        assert examples["dataset"] == {"fingerprint": FINGERPRINT, "name": "photos", "images": N_IMAGES}
        assert sum(examples["histogram"]["counts"]) == int(summary["hist_counts"][unit].sum())
    # The last unit has one empty top slot: it is left out, not exported as NaN.
    last = json.loads((unit_dir(site, "conv1", 3) / "unit.json").read_text())
    assert len(last["examples"]["top_examples"]) == TOP_K - 1


def test_activation_ratio_is_computed_where_both_views_are_known(built):
    """A render's activation over the unit's best dataset example: neither stage knows both, the site does."""
    store, site, _ = built
    best = load_npz(store / "tiny" / "conv1" / "examples" / "summary.npz")["top_values"][:, 0]
    for unit in range(4):
        data = json.loads((unit_dir(site, "conv1", unit) / "unit.json").read_text())
        assert data["featurevis"]["activation_ratio"]["channel"] == pytest.approx(ACTIVATION_MAX / best[unit])
        page = (unit_dir(site, "conv1", unit) / "index.html").read_text()
        assert f"activates the unit {ACTIVATION_MAX / best[unit]:.3g}× as much" in page
    # mixed_a has renders but no examples: no ratio, and no claim about one.
    data = json.loads((unit_dir(site, "mixed_a", 0) / "unit.json").read_text())
    assert data["featurevis"]["activation_ratio"] == {} and "examples" not in data


def test_layer_json_indexes_every_unit(built):
    _, site, _ = built
    data = json.loads((site / "models" / "tiny" / "mixed_a" / "layer.json").read_text())
    assert data["layer"] == "mixed_a" and [u["unit"] for u in data["units"]] == list(range(5))
    assert list(data["views"]) == ["featurevis", "circuits"] and data["views"]["featurevis"]["units"] == 5
    assert data["missing"] == ["No dataset examples were computed for this layer (run with --images)."]
    for unit in data["units"]:
        assert (site / "models" / "tiny" / "mixed_a" / unit["url"]).is_file()
        assert (site / "models" / "tiny" / "mixed_a" / str(unit["unit"]) / unit["featurevis"]["channel"]).is_file()
    conv = json.loads((site / "models" / "tiny" / "conv1" / "layer.json").read_text())
    assert set(conv["views"]) == {"featurevis", "examples", "circuits"}  # conv1 feeds mixed_a
    assert conv["units"][0]["examples"]["max"] == pytest.approx(
        float(json.loads((site / "models/tiny/conv1/0/unit.json").read_text())["examples"]["stats"]["max"]))


# ------------------------------------------------------------------------------------------------
# Images


def test_images_are_compact_webp_with_the_source_pixels(built):
    _, site, _ = built
    folder = unit_dir(site, "conv1", 2)
    with Image.open(folder / "channel.webp") as image:
        assert image.format == "WEBP" and image.size == (40, 40)  # small renders are not enlarged
        np.testing.assert_allclose(np.asarray(image.convert("RGB"))[20, 20], render_colour(0, 2, 0), atol=6)
    with Image.open(folder / "thumb.webp") as image:
        assert max(image.size) <= 96
    # Tile i of the strip holds top patch i (solid colours, checked at each tile's centre).
    with Image.open(folder / "top.webp") as strip:
        strip = np.asarray(strip.convert("RGB"))
    tile = strip.shape[0]
    assert strip.shape[1] == tile * TOP_K
    for rank in range(TOP_K):
        np.testing.assert_allclose(strip[tile // 2, rank * tile + tile // 2], patch_colour(2, 0, rank), atol=12)


def test_bottom_and_band_examples_are_cropped_from_shared_photos(built):
    _, site, _ = built
    photos = sorted((site / "models" / "tiny" / "datasets" / FINGERPRINT).glob("*.jpg"))
    assert 0 < len(photos) <= N_IMAGES
    page = parse(unit_dir(site, WEIRD_LAYER, 0) / "index.html")
    crops = [img for img in page.images if img.get("class") == "c"]
    assert crops and all(img["src"].startswith(f"../../datasets/{FINGERPRINT}/") for img in crops)
    assert not (unit_dir(site, WEIRD_LAYER, 0) / "bottom.webp").exists()
    # conv1's 11 px field would be a blur cut out of a 48 px photo: it gets a strip of patches.
    assert (unit_dir(site, "conv1", 0) / "bottom.webp").is_file()


# ------------------------------------------------------------------------------------------------
# Unsafe names


def test_unsafe_names_are_escaped_and_stay_inside_the_site(built):
    _, site, _ = built
    folder = site / "models" / "tiny" / segment(WEIRD_LAYER)
    assert folder.is_dir() and re.fullmatch(r"[A-Za-z0-9_-]+", folder.name)
    for path in site.rglob("*"):
        assert site.resolve() in path.resolve().parents
    assert (built[0] / "tiny" / segment(WEIRD_LAYER)).is_dir()  # the store's folders are safe names too
    text = (site / "models" / "tiny" / "conv1" / "1" / "index.html").read_text()
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    page = parse(site / "models" / "tiny" / "conv1" / "1" / "index.html")
    assert not any("alert" in s for s in page.scripts_inline)
    assert "curve <script>alert(1)</script>" in " ".join(page.text)  # shown as text, intact
    weird = (folder / "2" / "index.html").read_text()
    assert 'a<b"c' not in weird and "a&lt;b&#34;c" in weird
    assert "</title><b>" not in weird
    assert parse(folder / "2" / "index.html").title.startswith('a<b"c unit 2')
    search = (site / "search.js").read_text()
    assert "<" not in search and "\\u003cscript>" in search


def test_search_index_lists_layers_units_and_labels(built):
    _, site, _ = built
    text = (site / "search.js").read_text()
    index = json.loads(text[text.index("=") + 1:].rstrip().rstrip(";"))
    layers = {layer[1]: layer for layer in index["layers"]}
    assert set(layers) == {"conv1", "mixed_a", WEIRD_LAYER}
    assert layers["conv1"][4] == "models/tiny/conv1/index.html" and layers["conv1"][5] == [[0, 3]]
    labels = {(index["layers"][pos][1], unit): label for pos, unit, label in index["labels"]}
    assert labels == {("conv1", 1): "curve <script>alert(1)</script>", (WEIRD_LAYER, 2): "eye </title><b>"}
    for _, _, _, _, url, _ in index["layers"]:
        assert (site / url).is_file()


# ------------------------------------------------------------------------------------------------
# Partial stores


def test_featurevis_only_and_examples_only_say_what_is_missing(tmp_path):
    make_store(tmp_path / "store", featurevis_layers=("conv1",), examples_layers=("mixed_a",))
    build_site(Store(tmp_path / "store"), tmp_path / "site", progress=False)
    conv = (tmp_path / "site" / "models" / "tiny" / "conv1" / "0" / "index.html").read_text()
    assert "No dataset examples were computed" in conv and "--images" in conv
    mixed = (tmp_path / "site" / "models" / "tiny" / "mixed_a" / "0" / "index.html").read_text()
    assert "No feature visualizations were computed" in mixed
    # Without renders the grid thumbnail is the unit's strongest dataset patch.
    assert (tmp_path / "site" / "models" / "tiny" / "mixed_a" / "0" / "thumb.webp").is_file()
    check_links(tmp_path / "site")


def test_damaged_or_unknown_records_are_said_once_and_left_out(tmp_path, caplog):
    store = make_store(tmp_path / "store")
    record = store.render_file("tiny", "conv1", 2, "neuron")
    record.write_text(record.read_text().replace('"format": 1', '"format": 7'))  # a newer microscope's
    summary = store.examples_summary_file("tiny", WEIRD_LAYER)
    summary.write_bytes(summary.read_bytes()[:-50])  # truncated: its stamp no longer matches
    (store.renders_dir("tiny", "conv1", 1) / "channel.png").write_bytes(b"garbage")
    build_site(store, tmp_path / "site", progress=False)
    said = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(said) == 3 and all("\n" not in line for line in said)
    assert any("neuron.json" in line and "format 7" in line for line in said)
    assert any("summary.npz" in line for line in said)
    assert not (unit_dir(tmp_path / "site", "conv1", 2) / "neuron.webp").exists()
    assert (unit_dir(tmp_path / "site", "conv1", 2) / "channel.webp").exists()
    assert not (unit_dir(tmp_path / "site", "conv1", 1) / "channel.webp").exists()
    weird = (unit_dir(tmp_path / "site", WEIRD_LAYER, 0) / "index.html").read_text()
    assert "No dataset examples were computed" in weird  # not trusted, so not shown
    check_links(tmp_path / "site")


def test_units_with_renders_for_part_of_a_layer(tmp_path):
    make_store(tmp_path / "store", featurevis_layers=("mixed_a",), examples_layers=(), featurevis_units=[1, 3],
               circuits=())
    build_site(Store(tmp_path / "store"), tmp_path / "site", progress=False)
    layer = tmp_path / "site" / "models" / "tiny" / "mixed_a"
    assert sorted(p.name for p in layer.iterdir() if p.is_dir()) == ["1", "3"]
    assert "2 of 5 units have been computed" in (layer / "index.html").read_text()
    unit = parse(layer / "1" / "index.html")
    assert ("link", "../3/index.html") in unit.links  # next skips the missing unit 2


# ------------------------------------------------------------------------------------------------
# Incremental rebuilds


def _mtimes(folder: Path) -> dict[str, int]:
    """Every file's mtime, but the lock a build holds while it writes (it is no file of the site)."""
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*")
            if p.is_file() and p.name != SITE_LOCK}


def test_rebuilding_one_layer_touches_only_that_layer_and_the_indexes(tmp_path):
    store = make_store(tmp_path / "store")
    site = tmp_path / "site"
    build_site(store, site, progress=False)
    before = _mtimes(site)
    # Nothing changed: a full rebuild writes nothing.
    report = build_site(store, site, progress=False)
    assert report.written == 0 and report.removed == 0 and _mtimes(site) == before

    # New renders for mixed_a only, rebuilt with --layers mixed_a and a new label.
    write_featurevis(store, "tiny", "mixed_a", 9, range(5))
    report = build_site(store, site, layers=["mixed_a"], labels={"mixed_a": {"4": "new label"}}, progress=False)
    after = _mtimes(site)
    changed = {path for path in after if after[path] != before.get(path)}
    assert changed, "the layer's files were rewritten"
    allowed = re.compile(r"models/tiny/mixed_a/.*|models/tiny/(index\.html|model\.json)|index\.html|search\.js|manifest\.json")
    assert all(allowed.fullmatch(path) for path in changed), sorted(p for p in changed if not allowed.fullmatch(p))
    assert "models/tiny/mixed_a/0/channel.webp" in changed
    assert "models/tiny/mixed_a/4/index.html" in changed  # the new label
    assert not any(path.startswith("models/tiny/conv1/") for path in changed)
    assert set(after) == set(before)
    assert "new label" in (site / "search.js").read_text()


def test_writes_leave_no_temporary_files_and_readable_pages(built):
    _, site, _ = built
    assert not [p for p in site.rglob("*.tmp")]
    umask = os.umask(0)
    os.umask(umask)
    for path in (site / "index.html", unit_dir(site, "conv1", 0) / "top.webp", site / "static" / "site.js"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # a web server can read them


# ------------------------------------------------------------------------------------------------
# Sizes and the report


def test_report_counts_bytes_and_estimates_the_full_site(built):
    _, site, report = built
    total = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    assert report.total_bytes == total and report.total_files == len([p for p in site.rglob("*") if p.is_file()])
    model = report.models["tiny"]
    assert model["estimate_units"] == 4 + 5 + 6 + 3 + 10  # conv, block and logits layers (+ built ones)
    assert model["estimate_bytes"] > model["bytes_per_unit"] * model["estimate_units"] * 0.99
    assert "GB" in report.summary() and "per-unit budget" in report.summary()


# ------------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_raises_one_line_usage_errors(tmp_path):
    store = make_store(tmp_path / "store")
    with pytest.raises(UsageError, match="no models"):
        build_site(Store(tmp_path / "empty"), tmp_path / "out", progress=False)
    with pytest.raises(UsageError, match="model 'nope' is not in"):
        build_site(store, tmp_path / "out", models=["nope"], progress=False)
    with pytest.raises(UsageError, match="layer 'mixed9'"):
        build_site(store, tmp_path / "out", layers=["mixed9"], progress=False)
    (tmp_path / "notasite").mkdir()
    (tmp_path / "notasite" / "thesis.tex").write_text("precious")
    with pytest.raises(UsageError, match="not a microscope site"):
        build_site(store, tmp_path / "notasite", progress=False)
    assert (tmp_path / "notasite" / "thesis.tex").read_text() == "precious"
    with pytest.raises(UsageError, match="unit number"):
        build_site(store, tmp_path / "out", labels={"conv1": {"one": "x"}}, progress=False)
    with pytest.raises(UsageError) as caught:
        build_site(store, tmp_path / "out", layers=["mixed9"], progress=False)
    assert "\n" not in str(caught.value)
    with pytest.raises(UsageError, match="cannot write the site"):
        build_site(store, "/proc/no-site-here", progress=False)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        build_site(store, tmp_path / "afile", progress=False)


def test_site_package_does_not_import_torch():
    code = "import sys, microscope.site; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_preview_server_serves_pages_and_the_404_page(built, tmp_path):
    import threading
    import urllib.error
    import urllib.request

    from microscope.site import make_server

    _, site, _ = built
    with pytest.raises(UsageError, match="build it first"):
        make_server(tmp_path / "nothing", 0)
    httpd = make_server(site, 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/"
        with urllib.request.urlopen(url + "models/tiny/conv1/0/") as response:
            assert response.status == 200 and b"conv1" in response.read()
        with urllib.request.urlopen(url + "models/tiny/conv1/0/top.webp") as response:
            assert response.headers["Content-Type"] == "image/webp"
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(url + "models/tiny/conv1/99/")
        assert missing.value.code == 404 and b"Page not found" in missing.value.read()
        with pytest.raises(UsageError, match="another --port"):
            make_server(site, httpd.server_address[1])
        import http.client  # a raw request: urllib would normalise the path
        connection = http.client.HTTPConnection("127.0.0.1", httpd.server_address[1])
        connection.request("GET", "//models")  # a folder without its slash: redirected, on this site
        answer = connection.getresponse()
        assert answer.status == 301 and answer.getheader("Location") == "/models/"
        answer.read()
        connection.request("GET", "//evil.example/")
        assert connection.getresponse().status == 404
    finally:
        httpd.shutdown()
        httpd.server_close()
