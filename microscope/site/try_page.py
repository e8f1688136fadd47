"""A model's "Try an image" page, `<model_dir>/try.html`: the visitor's own photo through the network, in the
browser (static/try.js runs the exported ONNX file with onnxruntime-web; no server).

What the page reads, beside it:
    try/model.onnx     the network exported by the inbrowser view (normalised image in; each layer with pages and
                       the logits out), copied from the store
    try/try.json       what try.js needs: the input and the model's preprocessing, the outputs and the layer folders
                       whose layer.json give each unit's page, thumbnail, label and best dataset example, the class
                       names, a few example photos, the runtime's files
The runtime itself is shared by the site's models under static/ort/ (web/runtime.py, written by the builder). A model without an exported
network (none stored, or its export failed) has no page and no link to one.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from microscope.names import segment
from microscope.site.output import SiteWriter
from microscope.site.render import Renderer
from microscope.store import ModelRecord

PAGE = "try.html"  # beside the model's index.html (names.RESERVED keeps layer folders off it and off FOLDER)
FOLDER = "try"
EXAMPLES = 6  # example photos offered on the page
SCRIPTS = ("try.js", "preprocess.js")  # the static files only a site with a Try page needs


def try_files(model_dir: str) -> list[str]:
    """The page's files, site-relative (what the model's size estimate counts)."""
    return [f"{model_dir}/{PAGE}", f"{model_dir}/{FOLDER}/model.onnx", f"{model_dir}/{FOLDER}/try.json"]


def try_data(model: ModelRecord, record, rows: list[dict], examples: list[dict], runtime: dict) -> dict:
    """try.json: the exported outputs whose layer has pages in the site (and the logits), in the model's order,
    an SAE's features right after the layer they decompose."""
    with_pages = {row["name"]: row for row in rows if row.get("href")}
    order = {row["name"]: i for i, row in enumerate(rows)}

    def place(output) -> tuple:
        source = output.layer.removesuffix("_sae") if output.kind == "sae" else output.layer
        return order.get(source, len(order)), output.kind == "sae"

    layers = []
    for output in sorted(record.outputs, key=place):
        if output.kind == "logits" or output.layer not in with_pages:
            continue
        folder = segment(output.layer)
        layers.append({"output": output.name, "layer": output.layer, "kind": output.kind,
                       "channels": output.channels, "height": output.height, "width": output.width,
                       "dir": f"{folder}/", "json": f"{folder}/layer.json", "href": f"{folder}/index.html"})
    logits = next((output.name for output in record.outputs if output.kind == "logits"), None)
    return {
        "model": model.name, "title": model.title or model.name,
        "onnx": f"{FOLDER}/model.onnx", "onnx_bytes": record.onnx_bytes, "weights_dtype": record.weights_dtype,
        "max_error": record.max_error, "input": {"name": record.input_name, "size": record.input_size},
        "preprocessing": asdict(record.preprocessing), "layers": layers, "logits": logits,
        "classes": list(model.categories), "examples": examples[:EXAMPLES], "runtime": runtime,
    }


def example_photos(rows: list[dict]) -> list[dict]:
    """A few photos the network saw, offered as examples: the caricatures' photos (one per photo, from the first
    layer that has them), paths relative to the model's folder."""
    seen, found = set(), []
    for row in rows:
        for entry in row.get("caricatures") or []:
            if entry["key"] in seen or not row.get("href"):
                continue
            seen.add(entry["key"])
            found.append({"src": f"{row['href'].rsplit('/', 1)[0]}/{entry['photo']}", "name": entry["name"],
                          "label": entry.get("label")})
    return found[:EXAMPLES]


def write_try_page(writer: SiteWriter, renderer: Renderer, model: ModelRecord, model_dir: str, exported,
                   rows: list[dict], runtime: dict | None) -> str | None:
    """Write the page, its data and the model file; returns the page's name, or None when it is left out (no
    exported network, or no runtime to run it with)."""
    if exported is None or runtime is None:
        return None
    record, onnx_path = exported
    data = try_data(model, record, rows, example_photos(rows), runtime)
    if not data["layers"] and data["logits"] is None:
        return None
    writer.write(f"{model_dir}/{FOLDER}/model.onnx", Path(onnx_path).read_bytes())
    writer.write_text(f"{model_dir}/{FOLDER}/try.json", json.dumps(data, indent=1, allow_nan=False) + "\n")
    title = model.title or model.name
    writer.write_text(f"{model_dir}/{PAGE}", renderer.render(
        "try.html", root="../../", page_title=f"Try an image - {title}", model=model, model_title=title,
        data=data, examples=data["examples"]))
    return PAGE
