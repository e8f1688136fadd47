"""The client-side search index: every model, layer and labelled unit, in one small script file.

It is a `.js` file that assigns a global (not JSON fetched at run time) because browsers refuse
`fetch()` on `file://` pages, while a `<script src>` works everywhere. Pages load it only when the
search box is first used. Units without labels are not listed: "mixed4a 447" is resolved from the
layer's channel count, so the index stays a few kilobytes even for thousands of units.
"""
from __future__ import annotations

from microscope.site.render import script_json


def search_index(models: list[dict]) -> dict:
    """`models`: site model records (name, title, url, layers: [{name, kind, channels, url, units}]).

    Returns {"models": [[name, title, url]], "layers": [[model, layer, kind, channels, url, units]],
    "labels": [[layer_position, unit, label]]} with URLs relative to the site root.
    """
    index = {"models": [], "layers": [], "labels": []}
    for model in models:
        index["models"].append([model["name"], model.get("title") or model["name"], model["url"]])
        for layer in model["layers"]:
            if not layer.get("url"):
                continue
            position = len(index["layers"])
            index["layers"].append([model["name"], layer["name"], layer["kind"], layer["channels"],
                                    layer["url"], layer.get("units", [])])
            for unit, label in sorted(layer.get("labels", {}).items(), key=lambda kv: int(kv[0])):
                index["labels"].append([position, int(unit), label])
    return index


def search_script(index: dict) -> str:
    return f"window.MICROSCOPE_SEARCH={script_json(index)};\n"
