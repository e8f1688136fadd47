"""The client-side search index: every model, layer, labelled unit and concept label, in one small script file.

It is a `.js` file that assigns a global (not JSON fetched at run time) because browsers refuse
`fetch()` on `file://` pages, while a `<script src>` works everywhere. Pages load it only when the
search box is first used. Units without labels are not listed: "mixed4a 447" is resolved from the
layer's channel count, so the index stays a few kilobytes even for thousands of units.

Concepts (site/concept_labels.py) are one entry each, [name, synonyms, units], not one per unit and
synonym: static/site.js matches the query's words against the name and the synonyms, then lists the
concept's units, whose held-out APs rank the results.
"""
from __future__ import annotations

from microscope.site.concept_labels import Labelled
from microscope.site.render import script_json


def concept_rows(concepts: dict[str, Labelled]) -> list:
    """A model's concept labels as its model.json keeps them (so that a build of another model can index
    them again): [[id, name, synonyms, [[layer, unit, AP in thousandths], ...]]], best AP first."""
    return [[cid, labelled.info.name, list(labelled.info.synonyms),
             [[d.layer, d.unit, round(1000 * d.ap)] for d in labelled.detectors]]
            for cid, labelled in sorted(concepts.items()) if labelled.detectors]


def search_index(models: list[dict]) -> dict:
    """`models`: site model records (name, title, url, layers: [{name, kind, channels, url, units}],
    concepts: {"search": concept_rows} or None).

    Returns {"models": [[name, title, url]], "layers": [[model, layer, kind, channels, url, units]],
    "labels": [[layer_position, unit, label]], "concepts": [[name, synonyms, units]]} with URLs relative
    to the site root. A concept's units are one flat list, layer_position, unit, AP in thousandths
    (0 to 1000), ... best AP first: about 11 bytes per labelled unit ("12,447,812,": a layer position of
    up to 2 digits, a unit of up to 4, an AP of 3, and 3 commas), plus the concept's name and synonyms once. A concept of the same id and
    name in two models is one entry.
    """
    index = {"models": [], "layers": [], "labels": [], "concepts": []}
    concepts: dict[tuple, list] = {}  # (id, name, synonyms) -> [(AP, layer_position, unit)]
    for model in models:
        index["models"].append([model["name"], model.get("title") or model["name"], model["url"]])
        positions = {}
        for layer in model["layers"]:
            if not layer.get("url"):
                continue
            position = positions[layer["name"]] = len(index["layers"])
            index["layers"].append([model["name"], layer["name"], layer["kind"], layer["channels"],
                                    layer["url"], layer.get("units", [])])
            for unit, label in sorted(layer.get("labels", {}).items(), key=lambda kv: int(kv[0])):
                index["labels"].append([position, int(unit), label])
        for cid, name, synonyms, units in (model.get("concepts") or {}).get("search", []):
            found = concepts.setdefault((cid, name, tuple(synonyms)), [])
            found += [(ap, positions[layer], unit) for layer, unit, ap in units if layer in positions]
    for (_, name, synonyms), units in sorted(concepts.items(), key=lambda kv: kv[0][1].casefold()):
        if units:
            units.sort(key=lambda u: (-u[0], u[1], u[2]))
            index["concepts"].append([name, list(synonyms), [n for ap, position, unit in units
                                                             for n in (position, unit, ap)]])
    return index


def search_script(index: dict) -> str:
    return f"window.MICROSCOPE_SEARCH={script_json(index)};\n"
