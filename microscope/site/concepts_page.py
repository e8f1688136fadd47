"""A model's concepts page, `<model_dir>/concepts.html`: every concept that labels at least one unit (a passing
label, best or runner-up: site/concept_labels.py), in alphabetical order of name, each in an element with id
`c-<segment(concept id)>` that unit pages link to. Per concept: its name, synonyms, gloss, the dataset classes
it covers, the layer where it first appears (the earliest, in the model's layer order, with a unit it labels)
and the units and SAE features that detect it best (the top `TOP` by held-out AP), each with the unit's
grid thumbnail where its page has one. A model without concepts has no page (and no link to one).
"""
from __future__ import annotations

from collections import Counter

from microscope.names import segment
from microscope.site.concept_labels import Labelled, first_layers
from microscope.site.output import SiteWriter
from microscope.site.pages import THUMB
from microscope.site.render import Renderer
from microscope.store import ModelRecord

PAGE = "concepts.html"  # beside the model's index.html (names.RESERVED keeps layer folders off this name)
TOP = 8  # units shown per concept: a row of tiles on a desktop screen
CLASSES_INLINE = 12  # more classes than this fold into a <details>


def anchor(concept_id: str) -> str:
    """The id of a concept's element on the page: unit pages link to `concepts.html#<anchor>`."""
    return f"c-{segment(concept_id)}"


def page_name(concepts: dict[str, Labelled]) -> str | None:
    """The page's name in the model's folder, if some concept labels a unit; else None."""
    return PAGE if any(labelled.detectors for labelled in concepts.values()) else None


def write_concepts_page(writer: SiteWriter, renderer: Renderer, model: ModelRecord, model_dir: str,
                        concepts: dict[str, Labelled]) -> None:
    """Write the page, if the model has one (`page_name`)."""
    shown = {cid: labelled for cid, labelled in concepts.items() if labelled.detectors}
    if not shown:
        return
    first = first_layers(shown, model)
    kinds = {info.name: info.kind for info in model.layers}
    order = sorted(shown, key=lambda cid: (shown[cid].info.name.casefold(), cid))
    entries = [_entry(cid, shown[cid], first[cid], kinds, writer, model_dir) for cid in order]
    named = Counter(entry["name"] for entry in entries)
    for entry in entries:  # two synsets of one name ("vessel": a ship, a container) told apart in the index
        hint = entry["synonyms"][:1] or [" ".join(entry["gloss"].split()[:4])] if entry["gloss"] else [entry["id"]]
        entry["twin"] = (entry["synonyms"][:1] or hint)[0] if named[entry["name"]] > 1 else None
    title = model.title or model.name
    writer.write_text(f"{model_dir}/{PAGE}", renderer.render(
        "concepts.html", root="../../", page_title=f"Concepts - {title}", model=model, model_title=title,
        concepts=entries, top=TOP, classes_inline=CLASSES_INLINE))


def _entry(cid: str, labelled: Labelled, first: str, kinds: dict, writer: SiteWriter, model_dir: str) -> dict:
    units = labelled.detectors
    return {
        "id": cid, "anchor": anchor(cid), "name": labelled.info.name, "synonyms": list(labelled.info.synonyms),
        "gloss": labelled.info.gloss, "classes": labelled.classes,
        "first": {"name": first, "href": f"{segment(first)}/index.html"},
        "units": len(units), "layers": len({d.layer for d in units}),
        "top": [_unit(d, kinds.get(d.layer), writer, model_dir) for d in units[:TOP]],
    }


def _unit(detector, kind: str | None, writer: SiteWriter, model_dir: str) -> dict:
    folder = f"{segment(detector.layer)}/{detector.unit}"
    has_thumb = writer.path(f"{model_dir}/{folder}/{THUMB}").is_file()  # the unit's grid thumbnail (site/pages.py)
    return {"layer": detector.layer, "unit": detector.unit, "ap": detector.ap, "href": f"{folder}/index.html",
            "thumb": f"{folder}/{THUMB}" if has_thumb else None, "what": "feature" if kind == "sae" else "unit"}
