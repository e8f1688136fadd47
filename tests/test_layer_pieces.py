"""Large layer pages in pieces (microscope/site/layer_pages.py): the first view stays small, and every unit
is still linked from a plain page (no script needed) and from the piece scripts static/layer.js adds.

The large layer is an SAE of 4,096 features, laid out by the real site code and templates from its stored
SAE (tests/site_fixtures.py) with every unit labelled; its 4,096 unit pages are not built (they do not
change the layer's pages). The real browser side is in tests/test_site_browser.py.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from microscope.sae import panel as sae_panel
from microscope.site import layer_pages
from microscope.site.builder import build_site
from microscope.site.output import SiteWriter
from microscope.site.pages import LayerContext, layer_panels, layer_record
from microscope.site.render import Renderer
from microscope.views.shown import SHOWN
from site_fixtures import catalogue, layer_entry, make_store, piece_html, write_sae
from test_site import Page, check_links, parse

FIRST_VIEW_LIMIT = 300_000  # bytes of HTML of a layer page's first view (issue 27)
SOURCE = layer_entry("mixed_big", "block", 512, 4, 8, 43)
FEATURES = layer_entry("mixed_big_sae", "sae", 4096, 4, 8, 43)
LABEL = "long label of unit {}: curves & <b>stripes</b> facing left"  # every unit labelled, markup kept as text


def unit_links(html: str) -> list[int]:
    """The units a grid's tiles link to, in order (each tile links its unit page, then its sections)."""
    found = [int(unit) for unit in re.findall(r'<a href="(\d+)/index\.html">', html)]
    return list(dict.fromkeys(found))


def grid_of(path) -> str:
    html = path.read_text(encoding="utf-8")
    return html[html.index('<ul class="grid"'):html.index("</ul>", html.index('<ul class="grid"'))]


@pytest.fixture(scope="module")
def large_layer(tmp_path_factory):
    """The pages of an SAE layer of 4,096 labelled features: (its folder, the SAE's weights)."""
    root = tmp_path_factory.mktemp("large")
    store = make_store(root / "store", featurevis_layers=(), examples_layers=(), circuits=(), layers=[SOURCE, FEATURES])
    weights = write_sae(store, "tiny", SOURCE, features=FEATURES.channels)
    model = store.read_model("tiny")
    writer = SiteWriter(root / "site")
    ctx = LayerContext(model, FEATURES, "models/tiny/mixed_big_sae", {"sae": SHOWN["sae"].read(store, model, FEATURES)},
                       {}, {}, writer, Renderer(), {}, {})
    records = [{"unit": unit, "label": LABEL.format(unit), "thumb": "thumb.webp", "thumb_rank": unit,
                "thumb_pixelated": False, "bytes": {"sae": 4000}, "links": [["SAE", "#sae"], ["circuit", "#circuit"]],
                "firing": float(weights.firing[unit])} for unit in range(FEATURES.channels)]
    views = [SHOWN["sae"]]
    layer_pages.write_layer_pages(writer, ctx.renderer, ctx.layer_dir, model, layer_record(ctx, records, views),
                                  layer_panels(ctx, views)[0])
    return writer.path(ctx.layer_dir), weights


def test_the_first_view_of_4096_features_stays_under_300_kB(large_layer):
    folder, _ = large_layer
    first = folder / "index.html"
    assert first.stat().st_size < FIRST_VIEW_LIMIT
    page = parse(first)
    assert "All 4096 features by how often they fire" in " ".join(page.text)  # the SAE's panel is there
    assert unit_links(grid_of(first)) == list(range(layer_pages.TILES_PER_PIECE))
    assert "&lt;b&gt;stripes&lt;/b&gt;" in grid_of(first)  # labels are text
    for other in folder.glob("page-*.html"):
        assert other.stat().st_size < FIRST_VIEW_LIMIT
        parse(other)  # balanced markup


def test_every_unit_is_linked_from_a_plain_page_and_from_a_piece(large_layer):
    folder, _ = large_layer
    size = layer_pages.TILES_PER_PIECE
    pieces = -(-FEATURES.channels // size)
    pager = [href for tag, href in parse(folder / "index.html").links if re.fullmatch(r"page-\d+\.html", href)]
    assert pager == [f"page-{n}.html" for n in range(2, pieces + 1)]  # the first page links every other one
    linked = unit_links(grid_of(folder / "index.html"))
    for number in range(2, pieces + 1):
        units = unit_links(grid_of(folder / f"page-{number}.html"))
        assert units == list(range((number - 1) * size, min(number * size, FEATURES.channels)))
        tiles = piece_html(folder / f"tiles-{number}.js")
        assert tiles == grid_of(folder / f"page-{number}.html").split(">", 1)[1].lstrip("\n")  # the same tiles
        linked += units
    assert linked == list(range(FEATURES.channels))
    assert not (folder / "page-1.html").exists() and not (folder / f"page-{pieces + 1}.html").exists()


def test_the_sae_table_lists_the_most_firing_features_then_the_rest_on_request(large_layer):
    folder, weights = large_layer
    html = (folder / "index.html").read_text(encoding="utf-8")
    table = html[html.index('<tbody id="sae-rows">'):html.index("</tbody>")]
    first = [int(u) for u in re.findall(r'href="(\d+)/index\.html"', table)]
    rest = [int(u) for u in re.findall(r'href="(\d+)/index\.html"', piece_html(folder / sae_panel.ROWS_FILE))]
    assert len(first) == sae_panel.TABLE_FIRST and 'data-rows="features.js"' in html
    assert first + rest == np.argsort(-weights.firing, kind="stable").tolist()


def test_layer_json_holds_the_full_table_one_unit_a_line(large_layer):
    folder, weights = large_layer
    text = (folder / "layer.json").read_text(encoding="utf-8")
    record = json.loads(text)
    assert [unit["unit"] for unit in record["units"]] == list(range(FEATURES.channels))
    assert record["units"][7]["url"] == "7/index.html" and record["units"][7]["label"] == LABEL.format(7)
    lines = text.splitlines()
    assert sum(line.startswith('{"unit":') for line in lines) == FEATURES.channels
    assert record["n_units"] == FEATURES.channels and record["views"]["sae"]["features"] == FEATURES.channels


def test_a_built_site_links_every_piece_and_drops_them_when_they_are_not_needed(tmp_path, monkeypatch):
    mixed_a = next(info for info in catalogue() if info.name == "mixed_a")
    features = layer_entry("mixed_a_sae", "sae", 7, 4, 8, 27)
    store = make_store(tmp_path / "store", layers=[*catalogue(), features])
    write_sae(store, "tiny", mixed_a, features=features.channels)
    labels = {"mixed_a_sae": {"6": "<img src=x onerror=alert(1)> & more"}}
    monkeypatch.setattr(layer_pages, "TILES_PER_PIECE", 3)
    monkeypatch.setattr(sae_panel, "TABLE_FIRST", 2)
    site = tmp_path / "site"
    build_site(store, site, labels=labels, progress=False)
    assert check_links(site) > 100  # page-<n>.html and their links resolve
    folder = site / "models" / "tiny" / "mixed_a_sae"
    assert sorted(p.name for p in folder.glob("page-*")) == ["page-2.html", "page-3.html"]
    assert sorted(p.name for p in folder.glob("*.js")) == ["features.js", "tiles-2.js", "tiles-3.js"]
    last = piece_html(folder / "tiles-3.js")
    assert unit_links(last) == [6] and "<img src=x" not in last
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; more" in last  # the label as text, escaped as on a page
    assert "\\u003c" in (folder / "tiles-3.js").read_text()  # no "<" in the script's text at all
    assert Page((folder / "index.html").read_text()).links.count(("a", "page-3.html")) == 1

    monkeypatch.undo()  # the real sizes: 7 features fit one piece and one table
    build_site(store, site, labels=labels, progress=False)
    assert not list(folder.glob("page-*")) and not list(folder.glob("*.js"))  # stale pieces are pruned
    assert unit_links(grid_of(folder / "index.html")) == list(range(features.channels))
    assert 'id="pieces"' not in (folder / "index.html").read_text()
