"""The concepts view's show half: a unit's scored concept labels, polysemanticity, its most correlated
units and its family; the layer's families and best concepts. Reads store/concepts.py's records; no torch.

Every number a page says of a concept is a held-out one: the labels were chosen on one half of the
images and are scored here on the other, so a label is not praised by the images that picked it.
Concept names link to the model's concepts page (`concepts.html#c-<segment(id)>`), which lists each
concept's units.
"""
from __future__ import annotations

import math
import posixpath
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from microscope.names import segment
from microscope.store import ConceptScore, LayerConcepts, Store, UnitConcepts, UnitSimilarity
from microscope.view import LayerPage, Panel, Shown, UnitPage

HOW = ("Concept labels come with the dataset examples of a labelled dataset: build with --labels folders or "
       "--labels FILE.csv")
POLYSEMANTIC_AT = 0.5  # a unit is marked polysemantic from this score (concepts/labels.py: the lower AP over the higher)
CONCEPTS_PAGE = "concepts.html"  # the model's page of concepts, beside its layers' folders


def concept_anchor(concept_id: str) -> str:
    """The fragment of a concept's entry on the model's concepts page."""
    return "c-" + segment(concept_id)


@dataclass
class ConceptsData:
    """A layer's stored concepts (None without labels) and similarity (None before issue 28's pass)."""

    concepts: LayerConcepts | None
    similar: UnitSimilarity | None
    _families: dict | None = field(default=None, repr=False)

    def best(self, unit: int) -> ConceptScore | None:
        """The unit's best concept when it labels the unit, else None."""
        found = self.concepts.unit(unit) if self.concepts is not None else None
        return found.labels[0] if found is not None and found.labelled and found.labels else None

    def name(self, concept_id: str) -> str:
        info = self.concepts.concepts.get(concept_id) if self.concepts is not None else None
        return info.name if info is not None else concept_id

    @property
    def families(self) -> dict[int, dict]:
        """family -> {"units": its members, "concept": the id of its members' most common best labelled
        concept (the first member's, on a tie), or None}."""
        if self._families is None:
            self._families = {}
            if self.similar is not None:
                for family in sorted(set(self.similar.family.tolist()) - {-1}):
                    units = np.flatnonzero(self.similar.family == family).tolist()
                    bests = [best.id for unit in units if (best := self.best(unit)) is not None]
                    common = Counter(bests).most_common(1)[0][0] if bests else None
                    self._families[family] = {"units": units, "concept": common}
        return self._families

    def family_of(self, unit: int) -> int | None:
        if self.similar is None or not 0 <= unit < self.similar.family.size:
            return None
        family = int(self.similar.family[unit])
        return family if family >= 0 else None


def _short(value: float, digits: int = 4) -> float | None:
    value = float(value)
    return float(f"{value:.{digits}g}") if math.isfinite(value) else None


def _concept(data: ConceptsData, concept_id: str, href_base: str) -> dict:
    """A concept as a page names it: its name, link, gloss and synonyms."""
    info = data.concepts.concepts.get(concept_id) if data.concepts is not None else None
    return {"id": concept_id, "name": data.name(concept_id), "href": f"{href_base}#{concept_anchor(concept_id)}",
            "gloss": info.gloss if info else "", "synonyms": list(info.synonyms) if info else [],
            "classes": len(info.classes) if info else None}


def _label(data: ConceptsData, score: ConceptScore, href_base: str) -> dict:
    """A label; linked to the concepts page only if it passes (that page lists the concepts labelling a unit)."""
    return {**_concept(data, score.id, href_base), **({} if score.passes else {"href": None}), "ap": score.ap,
            "chance": score.chance, "threshold": score.threshold, "k": score.k,
            "hits": round(score.precision_at_k * score.k), "precision_at_k": score.precision_at_k, "lift": score.ap / score.chance if score.chance > 0 else None}


def _label_json(data: ConceptsData, score: ConceptScore) -> dict:
    info = data.concepts.concepts.get(score.id)
    return {"id": score.id, "name": data.name(score.id), "classes": list(info.classes) if info else [],
            "ap": score.ap, "precision_at_k": score.precision_at_k, "k": score.k, "chance": score.chance,
            "threshold": score.threshold}


def _linked_units(page: UnitPage, units, values) -> list[dict]:
    found = []
    for unit, value in zip(units, values):
        other = page.other(page.layer.name, int(unit))
        found.append({"unit": int(unit), "r": float(value), "href": other["href"], "thumb": other["thumb"],
                      "label": other["label"]})
    return found


def _similar(data: ConceptsData, unit: int, page: UnitPage) -> tuple[list[dict], dict | None]:
    """The unit's most correlated units (stored order, highest first) and its family, linked."""
    s = data.similar
    if s is None or not 0 <= unit < s.neighbours.shape[0]:
        return [], None
    keep = [(int(u), float(r)) for u, r in zip(s.neighbours[unit], s.neighbour_r[unit]) if u >= 0 and math.isfinite(r)]
    similar = _linked_units(page, [u for u, _ in keep], [r for _, r in keep])
    family = data.family_of(unit)
    if family is None:
        return similar, None
    found = data.families[family]
    members = _linked_units(page, found["units"], [math.nan] * len(found["units"]))
    for member in members:
        member["current"] = member["unit"] == unit
        member["href"] = None if member["current"] else member["href"]
    href_base = posixpath.relpath(f"{page.model_dir}/{CONCEPTS_PAGE}", page.folder)
    named = _concept(data, found["concept"], href_base) if found["concept"] else None
    return similar, {"family": family, "members": members, "concept": named}


def _labels_block(data: ConceptsData, entry: UnitConcepts, page: UnitPage) -> tuple[dict, dict]:
    """(panel data, unit.json part) of the unit's concept labels."""
    c = data.concepts
    href_base = posixpath.relpath(f"{page.model_dir}/{CONCEPTS_PAGE}", page.folder)
    labels = [_label(data, score, href_base) for score in entry.labels]
    marked = entry.polysemantic >= POLYSEMANTIC_AT
    images = {"choose": c.choose, "held_out": c.held_out, "sampled": c.sampled, "total": c.images}
    panel = {"labels": labels, "best": labels[0] if labels else None, "labelled": entry.labelled and bool(labels),
             "runners_up": labels[1:], "images": images, "source": c.source,
             "polysemantic": {"score": entry.polysemantic, "marked": marked, "at": POLYSEMANTIC_AT,
                              "unrelated": [_concept(data, cid, href_base) for cid in entry.unrelated]}}
    json_block = {"labels": [_label_json(data, score) for score in entry.labels], "labelled": entry.labelled,
                  "seed": c.seed, "images": images,
                  "polysemantic": {"score": entry.polysemantic, "marked": marked, "unrelated": list(entry.unrelated)}}
    return panel, json_block


def unit_panel(data: ConceptsData, unit: int, page: UnitPage) -> Panel:
    entry = data.concepts.unit(unit) if data.concepts is not None else None
    panel: dict = {"labels": None, "similar": [], "family": None, "how": HOW if data.concepts is None else None}
    json_block: dict = {}
    provenance = []
    if entry is not None:
        panel["labels"], json_block = _labels_block(data, entry, page)
        c = data.concepts
        provenance.append(f"Concepts: {c.scored} concepts ({c.source}) ranked by each unit's strongest response per "
                          f"image; chosen on {c.choose} images and scored on {c.held_out} others (seed {c.seed}).")
    similar, family = _similar(data, unit, page)
    panel["similar"], panel["family"] = similar, family
    if data.similar is not None:
        json_block["similar"] = [{"unit": e["unit"], "r": _short(e["r"], 6)} for e in similar]
        json_block["family"] = family["family"] if family else None
        provenance.append(f"Similar units: Pearson correlation over {int(data.similar.positions)} sampled positions; "
                          f"families cut at correlation distance {float(data.similar.cut):.2f}.")
    best = data.best(unit)
    summary = {"concept": data.name(best.id) if best else None, "concept_ap": _short(best.ap) if best else None,
               "polysemantic": _short(entry.polysemantic) if entry is not None else None,
               "family": family["family"] if family else None}
    settings = {"concepts": {"seed": data.concepts.seed, "min_images": data.concepts.min_images,
                             "floor": data.concepts.floor, "broad": data.concepts.broad}} if data.concepts else {}
    return Panel(data=panel, json=json_block, provenance=provenance, settings=settings, summary=summary,
                 links=[("concepts", "#concepts")] if best else [])


def layer_panel(data: ConceptsData, page: LayerPage) -> Panel | None:
    """The layer's families, each named and with its members as small thumbnails."""
    if not data.families:
        return None
    href_base = posixpath.relpath(f"{page.folder.rsplit('/', 1)[0]}/{CONCEPTS_PAGE}", page.folder)
    families = []
    for family, found in data.families.items():
        members = []
        for unit in found["units"]:
            other = page.other("", page.layer.name, unit) if page.other else {"href": None, "thumb": None}
            members.append({"unit": unit, "href": other["href"], "thumb": other["thumb"]})
        named = _concept(data, found["concept"], href_base) if found["concept"] else None
        families.append({"family": family, "concept": named, "members": members})
    return Panel(data={"families": families, "cut": float(data.similar.cut)}, json={})


class ConceptsShown(Shown):
    name = "concepts"
    title = "What is this unit?"
    # No note on pages without concepts: they come with the examples, whose own note says what is missing, and
    # an unlabelled dataset is a normal choice. A layer with similarity but no labels says HOW on its pages.
    missing = ""
    # Its section of the unit page and its unit.json block (3 labels with glosses, 8 similar units with
    # thumbnails, a family of a few); it writes no files of its own, so a built site measures it in "page".
    budget = {"concepts section of the page and its unit.json block": 6_000}

    def read(self, store: Store, model, layer) -> ConceptsData | None:
        concepts = store.read(store.concepts_file(model.name, layer.name), LayerConcepts)
        similar = store.read(store.similar_file(model.name, layer.name), UnitSimilarity)
        return None if concepts is None and similar is None else ConceptsData(concepts, similar)

    def units(self, data: ConceptsData) -> set[int]:
        if data.concepts is not None:
            return {entry.unit for entry in data.concepts.units}
        return set(range(data.similar.correlation.shape[0])) if data.similar is not None else set()

    def unit_panel(self, data: ConceptsData, unit: int, page: UnitPage) -> Panel:
        return unit_panel(data, unit, page)

    def layer_panel(self, data: ConceptsData, page: LayerPage) -> Panel | None:
        return layer_panel(data, page)

    def layer_json(self, data: ConceptsData) -> dict:
        c = data.concepts
        found: dict = {}
        if c is not None:
            found.update(source=c.source, seed=c.seed, images=c.images, sampled=c.sampled, choose=c.choose,
                         held_out=c.held_out, min_images=c.min_images, floor=c.floor, broad=c.broad, scored=c.scored,
                         labelled=sum(1 for entry in c.units if entry.labelled and entry.labels))
        if data.similar is not None:
            found.update(positions=int(data.similar.positions), cut=float(data.similar.cut),
                         families=[{"family": family, "name": data.name(f["concept"]) if f["concept"] else None,
                                    "units": f["units"]} for family, f in data.families.items()])
        return found


SHOWN = ConceptsShown()
