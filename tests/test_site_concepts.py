"""The concepts view on the site (microscope/concepts/panel.py), and the numbers issue 28 adds to the circuits and
SAE panels: parsed pages, unit.json and layer.json against the stored records, hostile names, and brute force.

The model's concepts page (site/concepts_page.py) is tested in test_site_concept_search.py; here its links are
only checked to resolve.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from microscope.concepts.panel import POLYSEMANTIC_AT, concept_anchor
from microscope.names import segment
from microscope.sae import panel as sae_panel
from microscope.site import layer_pages
from microscope.site.builder import build_site
from microscope.store import CircuitArrays, LayerConcepts, SaeWeights, Store, UnitSimilarity
from site_fixtures import CONCEPTS, catalogue, make_store, piece_html, write_sae
from test_site import Page, check_links, parse

LAYERS = ("conv1", "mixed_b")  # 4 and 6 units: mixed_b has unit 5, an unlabelled one
HOSTILE = CONCEPTS["class:3"].name
PIECE = 2  # tiles per piece of the layers' grids: mixed_b's has 3 pieces
SAE_FEATURES = 16


def hostile_first(store: Store) -> None:
    """mixed_b unit 0 gets the hostile concept as its best label, so that it reaches the grid's tiles and names
    family 0 (a tie of one unit each: the first member's concept)."""
    path = store.concepts_file("tiny", "mixed_b")
    concepts = store.read(path, LayerConcepts)
    first = concepts.units[0]
    hostile = dataclasses.replace(first.labels[1], ap=0.95, choose_ap=0.95)
    units = [dataclasses.replace(first, labels=[hostile, first.labels[0]]), *concepts.units[1:]]
    store.write(path, dataclasses.replace(concepts, units=units))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("concepts")
    store = make_store(base / "store", examples_layers=LAYERS, featurevis_layers=("conv1", "mixed_a"),
                       concept_layers=LAYERS)
    hostile_first(store)
    mixed_a = next(info for info in catalogue() if info.name == "mixed_a")
    write_sae(store, "tiny", mixed_a, features=SAE_FEATURES)
    site = base / "www" / "site"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(layer_pages, "TILES_PER_PIECE", PIECE)
        report = build_site(store, site, progress=False)
    return store, site, report


def unit_dir(site: Path, layer: str, unit: int) -> Path:
    return site / "models" / "tiny" / segment(layer) / str(unit)


def section(path: Path, marker: str) -> tuple[str, Page]:
    """The HTML of the <section> holding `marker` (e.g. id="concepts"), and it parsed."""
    text = path.read_text(encoding="utf-8")
    start = text.rindex("<section", 0, text.index(marker))
    html = text[start:text.index("</section>", start) + len("</section>")]
    return html, Page(html)


def words(page: Page) -> str:
    return re.sub(r"\s+", " ", "".join(page.text))


def records(store: Store, layer: str) -> tuple[LayerConcepts, UnitSimilarity]:
    return (store.read(store.concepts_file("tiny", layer), LayerConcepts),
            store.read(store.similar_file("tiny", layer), UnitSimilarity))


def unit_json(site: Path, layer: str, unit: int) -> dict:
    return json.loads((unit_dir(site, layer, unit) / "unit.json").read_text())


def best_labelled(concepts: LayerConcepts, unit: int):
    entry = concepts.units[unit]
    return entry.labels[0] if entry.labelled else None


# ------------------------------------------------------------------------------------------------
# The unit page


def test_every_link_resolves_and_concept_links_name_their_anchor(built):
    _, site, _ = built
    assert check_links(site) > 100
    html, page = section(unit_dir(site, "conv1", 1) / "index.html", 'id="concepts"')
    concept_links = [url for _, url in page.links if "concepts.html" in url]
    assert concept_links and all(url.startswith("../../concepts.html#c-") for url in concept_links)
    assert f"../../concepts.html#{concept_anchor('wn:n02084071')}" in concept_links
    assert concept_anchor("class:3") == "c-" + segment("class:3")


def test_best_label_in_words_with_held_out_counts_and_chance(built):
    store, site, _ = built
    concepts, _ = records(store, "conv1")
    best = concepts.units[0].labels[0]
    name = concepts.concepts[best.id].name
    _, page = section(unit_dir(site, "conv1", 0) / "index.html", 'id="concepts"')
    text = words(page)
    assert (f"{name} · AP {best.ap:.2f} on {concepts.held_out} held-out photos · "
            f"{round(best.precision_at_k * best.k)} of its top {best.k} held-out photos") in text
    assert f"A random ranking gives {best.chance:.2f}" in text
    assert CONCEPTS[best.id].gloss in text and "domestic dog" in text  # WordNet gloss and synonyms
    runner = concepts.units[0].labels[1]
    assert f"{concepts.concepts[runner.id].name} · AP {runner.ap:.2f} (chance {runner.chance:.2f})" in text
    assert "Polysemanticity 0.00" in text and "poly-mark" not in section(unit_dir(site, "conv1", 0) / "index.html",
                                                                            'id="concepts"')[0]


def test_polysemantic_unit_is_marked_and_names_its_unrelated_concepts(built):
    store, site, _ = built
    concepts, _ = records(store, "conv1")
    entry = concepts.units[1]
    assert entry.polysemantic >= POLYSEMANTIC_AT
    html, page = section(unit_dir(site, "conv1", 1) / "index.html", 'id="concepts"')
    text = words(page)
    assert f"Polysemanticity {entry.polysemantic:.2f}" in text and "polysemantic: it also responds to" in text
    assert 'class="poly-mark"' in html
    assert HOSTILE in text  # the unrelated concept, named as text
    assert not any(image.get("src") == "x" for image in page.images)


def test_unlabelled_unit_says_so_with_its_best_candidate(built):
    store, site, _ = built
    concepts, _ = records(store, "mixed_b")
    entry = concepts.units[5]
    assert not entry.labelled
    candidate = entry.labels[0]
    _, page = section(unit_dir(site, "mixed_b", 5) / "index.html", 'id="concepts"')
    text = words(page)
    assert "No concept labels this unit." in text
    assert (f"{concepts.concepts[candidate.id].name}, has AP {candidate.ap:.2f} on {concepts.held_out} held-out "
            f"photos, under the {candidate.threshold:.2f} a label needs") in text
    assert "held-out photos ·" not in text  # no best-label line


def test_neighbours_and_family_link_to_existing_pages(built):
    store, site, _ = built
    _, similar = records(store, "mixed_b")
    for unit in range(6):
        folder = unit_dir(site, "mixed_b", unit)
        html, page = section(folder / "index.html", 'id="concepts"')
        lists = re.findall(r'<ol class="units">(.*?)</ol>', html, re.S)
        neighbours = [int(u) for u in re.findall(r'href="\.\./(\d+)/index\.html"', lists[0])]
        stored = [int(u) for u in similar.neighbours[unit] if u >= 0]
        assert neighbours == stored
        shown_r = re.findall(r"r (-?\d\.\d\d)</span>", lists[0])
        assert shown_r == [f"{float(r):.2f}" for r in similar.neighbour_r[unit][:len(stored)]]
        members = [int(u) for u in np.flatnonzero(similar.family == similar.family[unit])]
        linked = [int(u) for u in re.findall(r'href="\.\./(\d+)/index\.html"', lists[1])]
        assert linked == [m for m in members if m != unit] and "(this unit)" in lists[1]
        for _, url in page.links:
            if "concepts.html" not in url:
                assert (folder / url.split("#")[0]).resolve().is_file(), url
        thumbs = [image["src"] for image in page.images]
        assert thumbs and all((folder / src).resolve().is_file() for src in thumbs)


def test_unit_json_block_equals_the_records(built):
    store, site, _ = built
    for layer in LAYERS:
        concepts, similar = records(store, layer)
        for entry in concepts.units:
            block = unit_json(site, layer, entry.unit)["concepts"]
            keep = [(int(u), float(r)) for u, r in zip(similar.neighbours[entry.unit], similar.neighbour_r[entry.unit])
                    if u >= 0 and math.isfinite(r)]
            family = int(similar.family[entry.unit])
            expected = {
                "labels": [{"id": s.id, "name": concepts.concepts[s.id].name, "classes": concepts.concepts[s.id].classes,
                            "ap": s.ap, "precision_at_k": s.precision_at_k, "k": s.k, "chance": s.chance,
                            "threshold": s.threshold} for s in entry.labels],
                "labelled": entry.labelled, "seed": concepts.seed,
                "images": {"choose": concepts.choose, "held_out": concepts.held_out, "sampled": concepts.sampled,
                           "total": concepts.images},
                "polysemantic": {"score": entry.polysemantic, "marked": entry.polysemantic >= POLYSEMANTIC_AT,
                                 "unrelated": entry.unrelated},
                "similar": [{"unit": u, "r": pytest.approx(r, rel=1e-5)} for u, r in keep],
                "family": family if family >= 0 else None}
            assert block == expected


def test_layer_json_summaries_and_families_equal_the_records(built):
    store, site, _ = built
    for layer in LAYERS:
        concepts, similar = records(store, layer)
        record = json.loads((site / "models" / "tiny" / layer / "layer.json").read_text())
        for unit in record["units"]:
            best = best_labelled(concepts, unit["unit"])
            family = int(similar.family[unit["unit"]])
            assert {k: unit[k] for k in ("concept", "concept_ap", "polysemantic", "family")} == {
                "concept": concepts.concepts[best.id].name if best else None,
                "concept_ap": pytest.approx(best.ap, rel=1e-3) if best else None,
                "polysemantic": pytest.approx(concepts.units[unit["unit"]].polysemantic, rel=1e-3),
                "family": family if family >= 0 else None}
        families = []
        for family in sorted(set(similar.family.tolist()) - {-1}):
            members = np.flatnonzero(similar.family == family).tolist()
            bests = [b.id for m in members if (b := best_labelled(concepts, m)) is not None]
            counts = Counter(bests)
            top = max(counts.values()) if counts else 0
            name = next((concepts.concepts[b].name for b in bests if counts[b] == top), None)
            families.append({"family": family, "name": name, "units": members})
        assert record["views"]["concepts"]["families"] == families
    assert record["views"]["concepts"]["families"][0]["name"] == HOSTILE  # mixed_b's family 0: the hostile tie


def test_layer_page_lists_families_and_each_tiles_best_concept(built):
    store, site, _ = built
    concepts, similar = records(store, "mixed_b")
    folder = site / "models" / "tiny" / "mixed_b"
    html, page = section(folder / "index.html", 'id="families"')
    for family in sorted(set(similar.family.tolist()) - {-1}):
        members = np.flatnonzero(similar.family == family).tolist()
        row = re.search(rf"Family {family}\b.*?</li>", html, re.S).group(0)
        assert re.findall(r'href="(\d+)/index\.html"', row) == [str(m) for m in members]
    assert all((folder / image["src"]).is_file() for image in page.images) and page.images
    tiles = "".join(piece_html(piece) for piece in folder.glob("tiles-*.js")) + (folder / "index.html").read_text()
    for unit in range(6):
        best = best_labelled(concepts, unit)
        tile = re.search(rf'<li data-u="{unit}"[^>]*>.*?</li>', tiles, re.S).group(0)
        if best:
            assert f'data-ap="{best.ap}"' in tile
        else:
            assert "data-ap" not in tile and "concept-cap" not in tile


def test_hostile_concept_name_is_text_everywhere(built):
    _, site, _ = built
    escaped = HOSTILE.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")
    pages = [unit_dir(site, "mixed_b", 0) / "index.html", unit_dir(site, "conv1", 1) / "index.html",
             site / "models" / "tiny" / "mixed_b" / "index.html"]
    for path in pages:
        text = path.read_text()
        assert HOSTILE not in text and escaped in text, path
        page = parse(path)
        assert not any(image.get("src") == "x" or "onerror" in image for image in page.images), path
        assert HOSTILE in words(page), path
    for piece in (site / "models" / "tiny" / "mixed_b").glob("tiles-*.js"):
        raw = piece.read_text()
        assert "<" not in raw.split("] = ", 1)[1]  # inline JSON: "<" escaped, no </script> can end it
        tiles = Page(piece_html(piece))
        assert not any(image.get("src") == "x" for image in tiles.images)
    assert unit_json(site, "mixed_b", 0)["concepts"]["labels"][0]["name"] == HOSTILE  # data, intact
    assert "<img" not in (site / "search.js").read_text()


def test_a_rebuild_writes_nothing(built, tmp_path):
    """Pages of one layer link each other's thumbnails by what the views offer (Shown.thumbs), not by which files
    a build has written so far: the same store gives the same pages."""
    store, site, _ = built
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(layer_pages, "TILES_PER_PIECE", PIECE)
        report = build_site(store, site, progress=False)
    assert report.written == 0 and report.removed == 0


# ------------------------------------------------------------------------------------------------
# Circuits: similar expanded-weight inputs; the SAE: how many features load on a neuron


def test_units_with_the_most_similar_inputs_against_brute_force(built):
    store, site, _ = built
    sums = store.read(store.circuit_weights_file("tiny", "mixed_a"), CircuitArrays).sums
    for unit in range(sums.shape[0]):
        cosines = []
        for other in range(sums.shape[0]):
            if other != unit:
                a, b = sums[unit], sums[other]
                cosines.append((-sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b)),
                                other))
        expected = [(other, -c) for c, other in sorted(cosines)[:5]]
        block = unit_json(site, "mixed_a", unit)["circuits"]["similar_inputs"]
        assert [e["unit"] for e in block] == [u for u, _ in expected]
        assert [e["cosine"] for e in block] == pytest.approx([c for _, c in expected], rel=1e-4)
        folder = unit_dir(site, "mixed_a", unit)
        html, page = section(folder / "index.html", 'id="circuit"')
        listed = html[html.index("<ol", html.index("most similar inputs")):]
        listed = listed[:listed.index("</ol>") + len("</ol>")]
        assert re.findall(r'href="\.\./(\d+)/index\.html"', listed) == [str(u) for u, _ in expected]
        images = Page(listed).images
        assert images and all((folder / image["src"]).resolve().is_file() for image in images)


def test_sae_loadings_of_a_neuron_against_brute_force(built):
    store, site, _ = built
    weights = store.read(store.sae_weights_file("tiny", "mixed_a", "random-seed0"), SaeWeights)
    record = json.loads((site / "models" / "tiny" / "mixed_a" / "layer.json").read_text())
    for neuron in range(weights.W_dec.shape[0]):
        loads = []
        for feature in range(weights.W_dec.shape[1]):
            column = [float(v) for v in weights.W_dec[:, feature]]
            cosine = abs(column[neuron]) / math.sqrt(sum(v * v for v in column))
            if cosine > sae_panel.LOADS_ABOVE:
                loads.append(cosine)
        total = sum(c * c for c in loads)
        entropy = -sum(c * c / total * math.log2(c * c / total) for c in loads) if loads else None
        block = unit_json(site, "mixed_a", neuron)["sae"]["loadings"]
        assert block["threshold"] == sae_panel.LOADS_ABOVE and block["count"] == len(loads)
        assert block["entropy_bits"] == (pytest.approx(entropy, abs=1e-3) if loads else None)
        summary = next(u for u in record["units"] if u["unit"] == neuron)
        assert summary["sae_loadings"] == len(loads)
        _, page = section(unit_dir(site, "mixed_a", neuron) / "index.html", 'class="small sae-loadings"')
        text = words(page)
        assert f"{len(loads)} of the {SAE_FEATURES} features" in text and f"above {sae_panel.LOADS_ABOVE}" in text
    assert {u["sae_loadings"] for u in record["units"]} != {0}  # the fixture's features do load on its neurons


def test_similarity_without_labels_still_gives_similar_units_and_families(tmp_path):
    store = make_store(tmp_path / "store", concept_layers=("conv1",))
    store.concepts_file("tiny", "conv1").unlink()  # an unlabelled dataset: similar.npz only
    build_site(store, tmp_path / "site", progress=False)
    block = unit_json(tmp_path / "site", "conv1", 0)["concepts"]
    assert set(block) == {"similar", "family"} and block["family"] == 0
    _, page = section(unit_dir(tmp_path / "site", "conv1", 0) / "index.html", 'id="concepts"')
    assert "build with --labels" in words(page) and "Most correlated units of conv1" in words(page)
    record = json.loads((tmp_path / "site" / "models" / "tiny" / "conv1" / "layer.json").read_text())
    assert {k: record["units"][0][k] for k in ("concept", "concept_ap", "polysemantic", "family")} == {
        "concept": None, "concept_ap": None, "polysemantic": None, "family": 0}
    assert record["views"]["concepts"]["families"][0] == {"family": 0, "name": None, "units": [0, 1]}
