"""The site in a real browser: Playwright driving Debian's Chromium, headless.

The site is served by a real http.server from the folder *above* it, so every page lives under a
sub-path (/site/...) as on a GitHub project page, and once more straight from file://.
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from microscope.sae import panel as sae_panel
from microscope.site import layer_pages
from microscope.site.builder import build_site
from microscope.store import Store
from site_fixtures import WEIRD_LAYER, catalogue, layer_entry, make_store, write_featurevis, write_sae

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not CHROMIUM.exists():
    pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    make_store(base / "store")
    labels = {"conv1": {"2": {"label": "edges <b>bold</b>", "note": "a test label"}}, WEIRD_LAYER: {"0": "weird <i>"}}
    build_site(Store(base / "store"), base / "www" / "site", labels=labels, progress=False)
    return base / "www" / "site"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def served(site: Path):
    """Serve the folder above `site`, so that the site lives under a sub-path; yields the site's URL."""
    handler = functools.partial(QuietHandler, directory=str(site.parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/{site.name}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def server(site):
    yield from served(site)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


class Watched:
    """A page that records console errors and uncaught exceptions."""

    def __init__(self, browser, width=1280, height=900, **options):
        self.context = browser.new_context(viewport={"width": width, "height": height}, **options)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def close(self):
        self.context.close()


@contextlib.contextmanager
def watching(browser, **options):
    """A Watched page that must end without console errors or uncaught exceptions; closed after."""
    watched = Watched(browser, **options)
    try:
        yield watched.page
        assert watched.errors == []
    finally:
        watched.close()


def settle(page) -> None:
    """Scroll through the page so lazy images load, then wait for the network to go quiet."""
    page.wait_for_load_state("networkidle")
    page.evaluate("""async () => {
        for (let y = 0; y < document.body.scrollHeight; y += innerHeight / 2) {
            scrollTo(0, y); await new Promise(r => setTimeout(r, 30));
        }
        scrollTo(0, 0);
    }""")
    page.wait_for_load_state("networkidle")
    page.wait_for_function("[...document.images].filter(i => i.getAttribute('src')).every(i => i.complete)")


def undecoded_images(page) -> list[str]:
    """Displayed images that failed to decode (naturalWidth 0)."""
    return page.evaluate("""() => [...document.images]
        .filter(i => i.getAttribute('src') && i.getClientRects().length && getComputedStyle(i).visibility !== 'hidden')
        .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'))""")


def test_home_to_layer_to_unit_and_arrow_keys(browser, server, tmp_path):
    watched = Watched(browser)
    page = watched.page
    page.goto(server + "index.html")
    settle(page)
    assert undecoded_images(page) == []
    page.screenshot(path=str(tmp_path / "home.png"), full_page=True)

    page.click("text=Tiny test net")
    page.wait_for_url("**/models/tiny/index.html")
    settle(page)
    assert undecoded_images(page) == []
    page.click(".layers >> text=conv1")
    page.wait_for_url("**/models/tiny/conv1/index.html")
    settle(page)
    assert undecoded_images(page) == []
    assert page.locator("#grid img").count() == 4

    page.click("#grid > li >> nth=1 >> a >> nth=0")  # the tile (its second link goes to the circuit)
    page.wait_for_url("**/models/tiny/conv1/1/index.html")
    settle(page)
    assert undecoded_images(page) == []
    assert page.locator("h1").inner_text().startswith("conv1")

    page.keyboard.press("ArrowRight")
    page.wait_for_url("**/models/tiny/conv1/2/index.html")
    settle(page)
    assert undecoded_images(page) == []
    assert "edges <b>bold</b>" in page.locator(".label").inner_text()  # the label, as text
    page.keyboard.press("ArrowLeft")
    page.wait_for_url("**/models/tiny/conv1/1/index.html")
    assert watched.errors == []
    watched.close()


def test_hover_shows_the_full_photo_with_the_receptive_field(browser, server):
    watched = Watched(browser)
    page = watched.page
    page.goto(server + "models/tiny/conv1/0/index.html")
    settle(page)
    page.hover(".examples .tiles > a >> nth=0")
    popup = page.locator("#popup")
    popup.wait_for(state="visible")
    page.wait_for_function("document.getElementById('popup-img').complete && document.getElementById('popup-img').naturalWidth > 0")
    box = page.locator("#popup-box").bounding_box()
    frame = page.locator("#popup .frame").bounding_box()
    assert box and frame and 0 < box["width"] < frame["width"]  # an 11 px field in a 32 px view
    assert box["x"] >= frame["x"] - 1 and box["x"] + box["width"] <= frame["x"] + frame["width"] + 1
    assert "top 1:" in page.locator("#popup-cap").inner_text()
    page.mouse.move(5, 5)
    popup.wait_for(state="hidden")
    # Click (or tap) pins it; Escape closes it.
    page.click(".examples .tiles > a >> nth=1")
    popup.wait_for(state="visible")
    assert "top 2:" in page.locator("#popup-cap").inner_text()
    page.keyboard.press("Escape")
    popup.wait_for(state="hidden")
    # The pinned popup covered the tile under the pointer; hiding it must not reopen it on hover.
    page.wait_for_timeout(300)
    assert popup.is_hidden()
    assert watched.errors == []
    watched.close()


def test_search_and_layer_filter(browser, server):
    watched = Watched(browser)
    page = watched.page
    page.goto(server + "models/tiny/index.html")
    page.fill("#q", "conv1 3")
    page.wait_for_selector("#results a")
    assert page.locator("#results a >> nth=0").inner_text().startswith("conv1 unit 3")
    page.keyboard.press("Enter")
    page.wait_for_url("**/models/tiny/conv1/3/index.html")
    # Labels are searchable, from any page depth; the markup in them stays text.
    page.fill("#q", "weird <i")
    page.wait_for_selector("#results a")
    page.click("#results a >> nth=0")
    page.wait_for_url("**/models/tiny/*/0/index.html")
    assert page.locator("h1").inner_text().startswith(WEIRD_LAYER)

    page.goto(server + "models/tiny/mixed_a/index.html")
    page.fill("#filter", "1-3")
    assert page.locator("#grid li:visible").count() == 3
    page.fill("#filter", "4")
    assert page.locator("#grid li:visible").count() == 1
    page.fill("#filter", "no such label")
    assert page.locator("#grid li:visible").count() == 0 and page.locator("#none").is_visible()
    assert watched.errors == []
    watched.close()


def test_phone_width_has_no_sideways_scrolling(browser, server, tmp_path):
    watched = Watched(browser, width=390, height=844, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = watched.page
    for path in ("index.html", "models/tiny/index.html", "models/tiny/conv1/index.html", "models/tiny/conv1/0/index.html"):
        page.goto(server + path)
        settle(page)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
        assert undecoded_images(page) == []
        page.screenshot(path=str(tmp_path / (path.replace("/", "_") + ".png")), full_page=True)
    page.tap(".examples .tiles > a >> nth=0")  # a tap opens the photo view
    page.locator("#popup").wait_for(state="visible")
    assert watched.errors == []
    watched.close()


def test_missing_pages_get_the_404_page(browser, site, tmp_path):
    # GitHub Pages serves 404.html for any missing path; microscope's own server does the same.
    from microscope.site import make_server

    httpd = make_server(site, 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    watched = Watched(browser)
    page = watched.page
    response = page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/models/tiny/conv1/999/index.html")
    assert response.status == 404 and "Page not found" in page.content()
    page.click("#home")
    page.wait_for_url("**/index.html")
    assert page.locator("h1").inner_text() == "Microscope"
    httpd.shutdown()
    httpd.server_close()
    watched.close()


def test_the_404_page_links_home_on_its_own_site_whatever_the_address(browser, site):
    """A link to //other.example/... must not turn the 404 page's home link into a link to another site."""
    from microscope.site import make_server

    httpd = make_server(site, 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{httpd.server_address[1]}"
    watched = Watched(browser)
    page = watched.page
    try:
        for path in ("//evil.example/index.html", "//evil.example/models/x/", "/\\evil.example/models/x/",
                     "/models/../..//evil.example/"):
            response = page.goto(origin + path)
            assert response.status == 404 and "Page not found" in page.content(), path
            home = page.eval_on_selector("#home", "a => a.href")
            assert home.startswith(origin + "/"), (path, home)
    finally:
        httpd.shutdown()
        httpd.server_close()
    watched.close()  # (its console holds the 404s themselves)


def test_works_from_file_urls(browser, site, tmp_path):
    copy = tmp_path / "offline copy"  # a space in the path, as in many home folders
    shutil.copytree(site, copy)
    watched = Watched(browser)
    page = watched.page
    page.goto((copy / "index.html").as_uri())
    page.click("text=Tiny test net")
    page.click(".layers >> text=conv1")
    page.click("#grid a >> nth=0")
    settle(page)
    assert page.url.endswith("/models/tiny/conv1/0/index.html")
    assert undecoded_images(page) == []
    page.fill("#q", "mixed_a")  # the search index loads as a script, which file:// allows
    page.wait_for_selector("#results a")
    assert watched.errors == []
    watched.close()


AXE = Path(__file__).parent / "browser" / "node_modules" / "axe-core" / "axe.min.js"
AXE_PAGES = ["index.html", "models/tiny/index.html", "models/tiny/conv1/index.html", "models/tiny/conv1/2/index.html",
             "models/tiny/mixed_a/1/index.html", "404.html"]


def test_pages_have_no_accessibility_violations(browser, server):
    """axe-core's WCAG 2.0, 2.1 and 2.2 A and AA rules on every kind of page: home, model, layer, unit
    (with all views, and with one missing), 404. 2.2 brings target-size (2.5.8: links of 24 x 24 px or
    spaced as much), which Lighthouse's accessibility score counts; the atlas page is checked in
    tests/test_atlas_view.py."""
    watched = Watched(browser)
    try:
        for page_name in AXE_PAGES:
            watched.page.goto(server + page_name)
            watched.page.wait_for_load_state("networkidle")
            assert axe_violations(watched.page) == [], page_name
        assert watched.errors == []
    finally:
        watched.close()


def axe_violations(page) -> list:
    """axe-core's WCAG 2.0, 2.1 and 2.2 A and AA rules on the page as it is now: (rule, elements) that fail."""
    assert AXE.is_file(), f"axe-core is missing at {AXE}: run `bash install.sh --test` (npm ci in tests/browser)"
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("""async () => await axe.run(document, {
        runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}})""")
    assert len(result["passes"]) >= 5  # the rules really ran
    return [(v["id"], [n["target"] for n in v["nodes"]]) for v in result["violations"]]


# ------------------------------------------------------------------------------------------------
# A large layer in pieces (microscope/site/layer_pages.py), the threshold lowered so that a small layer has many

PIECE, TABLE_FIRST = 8, 10
SAE_LAYER, SAE_FEATURES = "mixed_a_sae", 128
EVIL = "stripes <img src=x onerror=window.pwned=1>"


@pytest.fixture(scope="module")
def pieced(tmp_path_factory):
    """(site folder, its URL, the SAE's weights): an SAE layer of 128 features in pieces of 8 tiles, renders for
    features 0 and 120-127, a label with markup on feature 125."""
    base = tmp_path_factory.mktemp("pieced")
    mixed_a = next(info for info in catalogue() if info.name == "mixed_a")
    store = make_store(base / "store", layers=[*catalogue(), layer_entry(SAE_LAYER, "sae", SAE_FEATURES, 4, 8, 27)])
    weights = write_sae(store, "tiny", mixed_a, features=SAE_FEATURES)
    write_featurevis(store, "tiny", SAE_LAYER, 7, [0, *range(120, SAE_FEATURES)])
    site = base / "www" / "pieced"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(layer_pages, "TILES_PER_PIECE", PIECE)
        patch.setattr(sae_panel, "TABLE_FIRST", TABLE_FIRST)
        build_site(store, site, labels={SAE_LAYER: {"125": EVIL}}, progress=False)
    for url in served(site):
        yield site, url + f"models/tiny/{SAE_LAYER}/index.html", weights


def grid_units(page, shown_only: bool = False) -> list[int]:
    """The units of the grid's tiles, in order (`shown_only`: those the filter keeps)."""
    return page.eval_on_selector_all("#grid > li", "(cells, shown) => cells.filter(c => !shown || !c.hidden)"
                                     ".map(cell => +cell.dataset.u)", shown_only)


def test_a_large_layer_loads_its_tiles_as_the_reader_scrolls(browser, pieced, tmp_path):
    _, layer_url, _ = pieced
    with watching(browser, width=390, height=844, device_scale_factor=2, is_mobile=True, has_touch=True) as page:
        page.goto(layer_url)
        page.wait_for_load_state("networkidle")
        first = len(grid_units(page))
        assert PIECE <= first < SAE_FEATURES and first % PIECE == 0  # the first screens, not the whole layer
        assert page.locator("#more").is_visible() and page.locator("#pieces").is_hidden()
        page.screenshot(path=str(tmp_path / "pieces-phone.png"))
        page.evaluate("document.getElementById('more').click()")  # asking (the button, far below) loads one piece
        page.wait_for_function(f"document.querySelectorAll('#grid > li').length === {first + PIECE}")
        while (count := len(grid_units(page))) < SAE_FEATURES:  # and scrolling the ones after it
            page.evaluate("scrollTo(0, document.body.scrollHeight)")
            page.wait_for_function(f"document.querySelectorAll('#grid > li').length > {count}")
        assert grid_units(page) == list(range(SAE_FEATURES)) and page.locator("#more").is_hidden()
        links = page.eval_on_selector_all("#grid > li > a:first-child", "all => all.map(a => a.getAttribute('href'))")
        assert links == [f"{unit}/index.html" for unit in range(SAE_FEATURES)]
        settle(page)
        assert undecoded_images(page) == []  # the thumbnails of the last piece
        assert page.locator('#grid > li[data-u="125"] .cap').text_content() == f"125 {EVIL}"  # a label is text
        assert page.evaluate("window.pwned") is None and page.locator('img[src="x"]').count() == 0
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.locator('#grid > li[data-u="127"] > a >> nth=0').click()
        page.wait_for_url(f"**/models/tiny/{SAE_LAYER}/127/index.html")
        assert page.locator("h1").inner_text().startswith(SAE_LAYER)


def test_the_filter_finds_units_in_pieces_not_loaded_yet(browser, pieced):
    site, layer_url, _ = pieced
    with watching(browser) as page:
        count = "document.getElementById('count').textContent === {!r}"
        page.goto(layer_url + "#filter=125")
        page.wait_for_function(count.format("1 unit"))
        assert grid_units(page, shown_only=True) == [125]
        page.fill("#filter", "60-63")
        page.wait_for_function(count.format("4 units"))
        assert grid_units(page, shown_only=True) == [60, 61, 62, 63]
        page.fill("#filter", "")
        page.wait_for_function(count.format(f"{SAE_FEATURES} units"))
        assert grid_units(page, shown_only=True) == list(range(SAE_FEATURES))
        page.goto((site / "models" / "tiny" / SAE_LAYER / "index.html").as_uri())  # pieces are scripts: file:// works
        page.fill("#filter", "stripes")
        page.wait_for_function(count.format("1 unit"))
        page.click("#grid > li:visible >> nth=0 >> a >> nth=0")
        assert page.url.endswith(f"/{SAE_LAYER}/125/index.html")


def test_the_sae_table_shows_every_feature_on_request_and_pages_pass_axe(browser, pieced):
    _, layer_url, weights = pieced
    with watching(browser) as page:
        page.goto(layer_url)
        page.click(".sae-features summary")
        assert page.locator("#sae-rows tr").count() == TABLE_FIRST
        page.click("button[data-rows]")
        page.wait_for_function(f"document.querySelectorAll('#sae-rows tr').length === {SAE_FEATURES}")
        order = page.eval_on_selector_all("#sae-rows tr td:first-child a", "links => links.map(a => +a.textContent)")
        assert order == np.argsort(-weights.firing, kind="stable").tolist()  # by how often they fire, as before
        assert page.locator("button[data-rows]").is_hidden()
        assert axe_violations(page) == []
        page.goto(layer_url.replace("index.html", "page-2.html"))  # a piece's own page
        assert axe_violations(page) == []


def test_without_scripts_every_piece_is_a_page_of_its_own(browser, pieced):
    _, layer_url, _ = pieced
    with watching(browser, java_script_enabled=False) as page:
        page.goto(layer_url)
        assert grid_units(page) == list(range(PIECE)) and page.locator("#pieces").is_visible()
        page.click("#pieces >> text=units 120–127")
        page.wait_for_url(f"**/{SAE_LAYER}/page-16.html")
        assert grid_units(page) == list(range(120, 128))
        page.click('#grid > li[data-u="121"] > a >> nth=0')
        page.wait_for_url(f"**/{SAE_LAYER}/121/index.html")


# ------------------------------------------------------------------------------------------------
# Concepts (microscope/concepts/panel.py): the grid sorted by concept AP across pieces, and axe on its pages


@pytest.fixture(scope="module")
def concepts_site(tmp_path_factory):
    base = tmp_path_factory.mktemp("concepts")
    store = make_store(base / "store", examples_layers=("conv1", "mixed_b"), concept_layers=("conv1", "mixed_b"))
    site = base / "www" / "concepts"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(layer_pages, "TILES_PER_PIECE", 2)
        build_site(store, site, progress=False)
    (site / "models" / "tiny" / "concepts.html").write_text(  # another part's page: a stand-in
        "<!doctype html><html lang=en><title>concepts</title><main><h1>concepts</h1></main></html>")
    for url in served(site):
        yield store, url


def test_the_layer_grid_sorts_by_concept_ap_and_polysemanticity(browser, concepts_site):
    from microscope.store import LayerConcepts
    store, url = concepts_site
    concepts = store.read(store.concepts_file("tiny", "mixed_b"), LayerConcepts)
    ap = {e.unit: e.labels[0].ap if e.labelled else None for e in concepts.units}
    by_ap = sorted(ap, key=lambda u: (ap[u] is None, -(ap[u] or 0), u))
    poly = {e.unit: e.polysemantic for e in concepts.units}
    by_poly = sorted(poly, key=lambda u: (-poly[u], u))
    with watching(browser) as page:
        page.goto(url + "models/tiny/mixed_b/index.html")
        page.wait_for_load_state("networkidle")
        assert page.locator("#sort").is_visible() and page.locator("#grid").get_attribute("data-pieces") == "3"
        page.select_option("#sort", "ap")
        page.wait_for_function("document.querySelectorAll('#grid > li').length === 6")
        page.wait_for_function(f"[...document.querySelectorAll('#grid > li')].map(c => +c.dataset.u).join() === {','.join(map(str, by_ap))!r}")
        assert grid_units(page) == by_ap
        page.select_option("#sort", "p")
        assert grid_units(page) == by_poly
        page.select_option("#sort", "unit")
        assert grid_units(page) == list(range(6))
        assert page.locator('#grid > li[data-u="0"] .concept-cap').text_content() == "dog"
        assert axe_violations(page) == []
        page.goto(url + "models/tiny/conv1/1/index.html")
        page.wait_for_load_state("networkidle")
        assert page.locator(".poly-mark").is_visible()
        assert axe_violations(page) == []
        assert page.evaluate("window.pwned") is None and page.locator('img[src="x"]').count() == 0
    with watching(browser, java_script_enabled=False) as page:  # without scripts: no sort, the pieces' pages
        page.goto(url + "models/tiny/mixed_b/index.html")
        assert page.locator("#sort").is_hidden() and grid_units(page) == [0, 1]
