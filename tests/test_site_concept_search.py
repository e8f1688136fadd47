"""Finding units by concept: the search index's concepts and the model's concepts page, checked against the
concept records (store/concepts.py) they come from; then search in a real Chromium, from a sub-path and from
file://, and the page through axe-core.

The store: model "tiny" with concepts for three layers (a branch, the layer with an unsafe name, and an SAE's
features), in which the hostile concept name is one feature's best label; model "other" with concepts for
conv1 and the best dog unit of all; model "plain" without concepts.
"""
from __future__ import annotations

import html.parser
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from microscope.names import segment
from microscope.site.builder import build_site
from microscope.site.concepts_page import TOP, anchor
from microscope.site.estimate import estimate_size
from microscope.site.output import SiteWriter
from microscope.store import LayerConcepts, Store
from site_fixtures import CONCEPTS, WEIRD_LAYER, catalogue, layer_entry, make_store, write_concepts

SAE = "mixed_a_sae"
LAYERS = [*catalogue(), layer_entry(SAE, "sae", 16, 4, 8, 27)]  # 16 features: dog labels more than TOP units
INFO = {info.name: info for info in LAYERS}
CONCEPT_LAYERS = {"tiny": ("mixed_a_1x1", WEIRD_LAYER, SAE), "other": ("conv1",)}
HOSTILE = "class:3"
DOG = "wn:n02084071"


def change_unit(store: Store, model: str, layer: str, unit: int, change) -> None:
    """Rewrite one unit's concept labels in a layer's record."""
    path = store.concepts_file(model, layer)
    record = store.read(path, LayerConcepts)
    units = list(record.units)
    units[unit] = change(units[unit])
    store.write(path, replace(record, units=units))


def concept_store(root: Path) -> Store:
    store = make_store(root, layers=LAYERS, featurevis_layers=("conv1", *CONCEPT_LAYERS["tiny"]),
                       examples_layers=(WEIRD_LAYER,), circuits=())
    for model in ("other", "plain"):
        make_store(root, model=model, featurevis_layers=("conv1",), examples_layers=(), circuits=())
    for model, layers in CONCEPT_LAYERS.items():
        for layer in layers:
            write_concepts(store, model, INFO[layer])
    # The hostile name as a best label: SAE feature 1's labels (dog 0.8, hostile 0.7) the other way round.
    change_unit(store, "tiny", SAE, 1, lambda u: replace(u, labels=u.labels[::-1]))
    # The best dog unit of the site is in the other model.
    change_unit(store, "other", "conv1", 0, lambda u: replace(u, labels=[replace(u.labels[0], ap=0.95), *u.labels[1:]]))
    return store


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("concepts")
    store = concept_store(base / "store")
    site = base / "www" / "site"
    report = build_site(store, site, progress=False)
    return store, site, report


def records(store: Store) -> list[tuple[str, int, str, object, object]]:
    """(model, layer position, layer, unit entry, concepts) of every unit of every concept record, brute force."""
    found = []
    for model in store.models():
        for position, info in enumerate(store.read_model(model).layers):
            record = store.read(store.concepts_file(model, info.name), LayerConcepts)
            for entry in record.units if record else []:
                found.append((model, position, info.name, entry, record.concepts))
    return found


# ------------------------------------------------------------------------------------------------
# The concepts page


class ConceptsPage(html.parser.HTMLParser):
    """Each concept section of the page: its id, name (h2), the first layer's link and the units' links."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.sections: list[dict] = []
        self.links: list[str] = []
        self.images: list[dict] = []
        self._where = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("href") or attrs.get("src"):
            self.links.append(attrs.get("href") or attrs.get("src"))
        if tag == "img":
            self.images.append(attrs)
        if tag == "section" and attrs.get("class") == "concept":
            self.sections.append({"id": attrs["id"], "name": "", "first": None, "units": [], "text": ""})
        elif self.sections and tag == "h2":
            self._where = "name"
        elif self.sections and tag == "a" and attrs["href"].endswith("/index.html"):
            section = self.sections[-1]
            if attrs["href"].count("/") == 1 and section["first"] is None:
                section["first"] = attrs["href"]
            elif attrs["href"].count("/") == 2:
                section["units"].append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "h2":
            self._where = None

    def handle_data(self, data):
        if self.sections:
            self.sections[-1]["text"] += data
            if self._where == "name":
                self.sections[-1]["name"] += data


def expected_page(store: Store, model: str) -> dict[str, dict]:
    """concept id -> its name, first layer and units (those it labels: a unit's best label when the unit is
    labelled, a runner-up above its own threshold)."""
    found: dict[str, dict] = {}
    for owner, position, layer, entry, concepts in records(store):
        if owner != model:
            continue
        passing = ([entry.labels[0]] if entry.labelled else []) + [s for s in entry.labels[1:] if s.ap > s.threshold]
        for label in passing:
            concept = found.setdefault(label.id, {"name": concepts[label.id].name, "units": []})
            concept["units"].append((-label.ap, position, entry.unit, layer))
    for concept in found.values():
        concept["units"].sort()
        concept["first"] = min(concept["units"], key=lambda u: u[1])[3]
    return found


def test_the_concepts_page_shows_each_concept_its_first_layer_and_best_units(built):
    store, site, _ = built
    page_path = site / "models" / "tiny" / "concepts.html"
    page = ConceptsPage(page_path.read_text(encoding="utf-8"))
    expected = expected_page(store, "tiny")
    assert set(expected) == {DOG, "wn:n02121808", HOSTILE}  # the hostile one is a best label once
    assert [s["id"] for s in page.sections] == [anchor(cid) for cid in
                                                 sorted(expected, key=lambda c: expected[c]["name"].casefold())]
    for cid, section in zip(sorted(expected, key=lambda c: expected[c]["name"].casefold()), page.sections):
        want = expected[cid]
        assert section["id"] == "c-" + segment(cid) and section["name"] == want["name"]
        assert section["first"] == f"{segment(want['first'])}/index.html"
        assert section["units"] == [f"{segment(layer)}/{unit}/index.html" for _, _, unit, layer in want["units"][:TOP]]
        assert f"labels {len(want['units'])} unit" in section["text"]
        for synonym in CONCEPTS[cid].synonyms:
            assert synonym in section["text"]
    # The first appearances differ: dog in the branch, cat in the layer after it; the hostile one is the best
    # label only in the SAE, but a passing runner-up (unit 1's) already in the branch.
    assert [expected[c]["first"] for c in (DOG, "wn:n02121808", HOSTILE)] == ["mixed_a_1x1", WEIRD_LAYER, "mixed_a_1x1"]
    assert len(expected[DOG]["units"]) > TOP  # so the page really cuts the list at TOP
    # APs on the page are in the order of the units: best first.
    dog = next(s for s in page.sections if s["id"] == anchor(DOG))
    aps = [float(ap) for ap in re.findall(r"AP (\d\.\d\d)", dog["text"])]
    assert aps == sorted(aps, reverse=True) and len(aps) == TOP


def test_the_concepts_page_escapes_names_and_every_link_resolves(built):
    _, site, _ = built
    page_path = site / "models" / "tiny" / "concepts.html"
    text = page_path.read_text(encoding="utf-8")
    page = ConceptsPage(text)
    assert "&lt;img src=x onerror=" in text and "<img src=x" not in text
    assert all(image["src"] != "x" for image in page.images)
    assert any(s["name"] == CONCEPTS[HOSTILE].name for s in page.sections)  # as text, once parsed
    for url in page.links:
        target = page_path.parent / unquote(urlsplit(url).path)
        assert url.startswith("#") or target.resolve().is_file(), url
    anchors = {s["id"] for s in page.sections}
    assert {url[1:] for url in page.links if url.startswith("#")} == anchors
    thumbs = [image["src"] for image in page.images]
    assert thumbs and all(src.endswith("/thumb.webp") for src in thumbs)  # the units' grid thumbnails


def test_model_and_layer_pages_link_to_the_concepts_page_only_where_there_is_one(built):
    _, site, _ = built
    for model, has in (("tiny", True), ("other", True), ("plain", False)):
        folder = site / "models" / model
        assert (folder / "concepts.html").is_file() == has
        assert ('href="concepts.html"' in (folder / "index.html").read_text()) == has
        layer_pages = list(folder.glob("*/index.html"))
        assert layer_pages
        for layer_page in layer_pages:
            assert ('href="../concepts.html"' in layer_page.read_text()) == has, layer_page
        assert (json.loads((folder / "model.json").read_text())["concepts"] is not None) == has


def test_rebuilding_one_layer_keeps_the_concepts_of_the_others(built, tmp_path):
    store, site, _ = built
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    build_site(store, copy, layers=[WEIRD_LAYER], progress=False)
    for name in ("models/tiny/concepts.html", "search.js"):
        assert (copy / name).read_bytes() == (site / name).read_bytes(), name


def test_the_size_estimate_counts_the_concepts_page(tmp_path):
    model = make_store(tmp_path / "store", featurevis_layers=(), examples_layers=()).read_model("tiny")
    writer = SiteWriter(tmp_path / "site")
    writer.write_text("models/tiny/concepts.html", "x" * 1234)
    without = estimate_size(model, {}, writer, "models/tiny", {"page": 100})
    with_page = estimate_size(model, {}, writer, "models/tiny", {"page": 100}, pages=["models/tiny/concepts.html"])
    assert with_page["estimate_bytes"] - without["estimate_bytes"] == 1234


def test_no_concepts_no_page(tmp_path):
    store = make_store(tmp_path / "store", circuits=())
    build_site(store, tmp_path / "site", progress=False)
    assert not list((tmp_path / "site").rglob("concepts.html"))
    assert "concepts.html" not in (tmp_path / "site" / "models" / "tiny" / "index.html").read_text()


# ------------------------------------------------------------------------------------------------
# The search index


def search_index(site: Path) -> dict:
    text = (site / "search.js").read_text(encoding="utf-8")
    return json.loads(text[text.index("=") + 1:].rstrip().rstrip(";"))


def test_the_search_index_has_every_passing_label_once_per_concept(built):
    store, site, _ = built
    index = search_index(site)
    # Brute force: every label that passes (the best when labelled, a runner-up at its threshold or above).
    expected: dict[tuple, set] = {}
    for model, _, layer, entry, concepts in records(store):
        for rank, score in enumerate(entry.labels):
            if (entry.labelled if rank == 0 else score.ap > score.threshold):
                info = concepts[score.id]
                expected.setdefault((info.name, tuple(info.synonyms)), set()).add((model, layer, entry.unit, score.ap))
    found = {}
    for name, synonyms, flat in index["concepts"]:
        assert (name, tuple(synonyms)) not in found  # one entry per concept
        units = [flat[i:i + 3] for i in range(0, len(flat), 3)]
        aps = [ap for _, _, ap in units]
        assert aps == sorted(aps, reverse=True)  # best first
        found[name, tuple(synonyms)] = {(index["layers"][p][0], index["layers"][p][1], unit, ap / 1000)
                                        for p, unit, ap in units}
    assert found == expected
    assert any(model == "other" for units in found.values() for model, *_ in units)  # across models
    assert any(layer == SAE for units in found.values() for _, layer, *_ in units)  # SAE features too
    # Small: about a dozen bytes per labelled unit, the names said once.
    labelled = sum(len(units) for units in found.values())
    assert len(json.dumps(index["concepts"], separators=(",", ":"))) < 12 * labelled + 150


def test_every_url_of_the_search_index_resolves(built):
    _, site, _ = built
    index = search_index(site)
    for _, _, flat in index["concepts"]:
        for position, unit in zip(flat[::3], flat[1::3]):
            url = index["layers"][position][4].removesuffix("index.html") + f"{unit}/index.html"
            assert (site / url).is_file(), url


# ------------------------------------------------------------------------------------------------
# In Chromium: typing "dog" finds the best dog unit first, from a sub-path and from file://

try:  # its helpers: the sub-path server, watched pages, axe; it skips itself without Playwright or Chromium
    import test_site_browser as browser_tests
except (ImportError, pytest.skip.Exception) as missing:
    browser_tests, BROWSER_MISSING = None, str(missing)


@pytest.fixture(scope="module")
def browser():
    if browser_tests is None:
        pytest.skip(BROWSER_MISSING)
    with browser_tests.sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(browser_tests.CHROMIUM), args=browser_tests.ARGS)
        yield chromium
        chromium.close()


def best_unit(store: Store, concept: str) -> tuple[str, str, int]:
    """(model, layer, unit) of the best passing label of `concept` in the whole store."""
    best = max(((score.ap, model, layer, entry.unit) for model, _, layer, entry, _ in records(store)
                for rank, score in enumerate(entry.labels) if score.id == concept
                and (entry.labelled if rank == 0 else score.ap > score.threshold)), key=lambda b: b[0])
    return best[1], best[2], best[3]


def unit_path(model: str, layer: str, unit: int) -> str:
    return f"models/{model}/{segment(layer)}/{unit}/index.html"


def search(page, query: str) -> list[str]:
    page.fill("#q", query)
    page.wait_for_selector("#results li")
    return page.locator("#results li").all_inner_texts()


@pytest.fixture(scope="module")
def server(browser, built):
    yield from browser_tests.served(built[1])


def test_search_finds_units_by_concept_name_and_synonym_best_first(browser, built, server):
    store, _, _ = built
    model, layer, unit = best_unit(store, DOG)
    assert model == "other"
    with browser_tests.watching(browser) as page:
        page.goto(server + "models/tiny/mixed_a_1x1/index.html")
        results = search(page, "dog")
        assert results[0].startswith("dog") and f"{layer} unit {unit} · AP 0.95" in results[0]
        aps = [float(r.rsplit("AP ", 1)[1]) for r in results]
        assert aps == sorted(aps, reverse=True)
        assert any(f"{SAE} feature" in r for r in results)  # SAE features are found like units
        assert search(page, "Domestic D")[0].startswith("dog (domestic dog)")  # a synonym, any case, word prefixes
        assert all(r.startswith("domestic cat") for r in search(page, "cat"))
        assert search(page, "og") == ["No match"]  # words are matched from their start
        search(page, "dog")
        page.click("#results a >> nth=0")
        page.wait_for_url("**/" + unit_path(model, layer, unit))


def test_search_by_concept_works_from_file_urls(browser, built, tmp_path):
    store, site, _ = built
    copy = tmp_path / "offline copy"
    shutil.copytree(site, copy)
    model, layer, unit = best_unit(store, DOG)
    with browser_tests.watching(browser) as page:
        page.goto((copy / unit_path("tiny", WEIRD_LAYER, 2)).as_uri())
        assert search(page, "dog")[0].startswith("dog")
        page.click("#results a >> nth=0")
        page.wait_for_url("**/" + unit_path(model, layer, unit))
        assert Path(unquote(urlsplit(page.url).path)) == copy / unit_path(model, layer, unit)


def test_the_concepts_page_passes_axe(browser, server):
    with browser_tests.watching(browser) as page:
        for name in ("models/tiny/concepts.html", "models/tiny/index.html", f"models/tiny/{SAE}/index.html"):
            page.goto(server + name)
            page.wait_for_load_state("networkidle")
            assert browser_tests.axe_violations(page) == [], name


def test_a_csv_dataset_names_its_classes_as_imagenet_does(tmp_path):
    """Labels from a file,class_index CSV have no class names: the page names ImageNet's classes by WordNet."""
    from dataclasses import replace
    from microscope.site.concept_labels import dataset_classes
    from microscope.store import DatasetIndex
    from site_fixtures import FINGERPRINT
    store = make_store(tmp_path / "store", examples_layers=("conv1",))
    index = store.read(store.dataset_file("tiny", FINGERPRINT), DatasetIndex)
    store.write(store.dataset_file("tiny", FINGERPRINT), replace(index, classes=None, labels=[0, 160, 151] + [1] * 7))
    names = dataset_classes(store, "tiny", "conv1")
    assert len(names) == 161 and names[0] == "tench" and names[160] == "Afghan hound"
