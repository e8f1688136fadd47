"""The circuits view's show half: a unit's inputs and outputs, and the layer's weights.npz export.

No torch. Each input's expanded-weight map is one tile of a small PNG strip per unit (its maps side by
side, one pixel per position, shown enlarged without smoothing), coloured on a diverging scale
centred on zero - red excites, blue inhibits, white is zero - with one scale for all of a unit's
inputs, so tiles compare. Links go only to pages the site has; thumbnails only where they exist.
"""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from microscope.circuits.ranking import ranked
from microscope.circuits.stored import LayerCircuits, read_circuits
from microscope.selection import MAIN_KINDS
from microscope.view import Panel, Shown

SIMILAR_TOP = 5  # units of the same layer listed as having the most similar inputs
RED, BLUE, WHITE = np.array([178, 24, 43]), np.array([33, 102, 172]), np.array([255, 255, 255])


def colours(values: np.ndarray, scale: float) -> np.ndarray:
    """Values -> RGB uint8 on the diverging scale: +scale red, 0 white, -scale blue."""
    v = np.clip(values / scale, -1, 1)[..., None] if scale > 0 else np.zeros(values.shape + (1,))
    rgb = np.where(v >= 0, WHITE + v * (RED - WHITE), WHITE - v * (BLUE - WHITE))
    return np.rint(rgb).astype(np.uint8)


def strip_png(maps: np.ndarray, scale: float) -> tuple[bytes, dict]:
    """(n, h, w) maps -> one PNG of n tiles side by side, h x w pixels each."""
    n, height, width = maps.shape
    pixels = colours(maps, scale).transpose(1, 0, 2, 3).reshape(height, n * width, 3)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue(), {"tile": [height, width]}


def _entries(page, layer: str, units, values, categories=None, thumbs: bool = True) -> list[dict]:
    """Inputs show the earlier layer's thumbnails (its pages are written first); outputs none, so that a
    page never depends on which later layers were already built."""
    found = []
    for position, (unit, value) in enumerate(zip(units, values)):
        other = page.other(layer, int(unit))
        found.append({"unit": int(unit), "value": float(value), "tile": position, "href": other["href"],
                      "thumb": other["thumb"] if thumbs else None, "label": other["label"],
                      "name": categories[unit] if categories is not None and unit < len(categories) else None})
    return found


def similar_inputs(sums: np.ndarray, unit: int, top: int = SIMILAR_TOP) -> list[tuple[int, float]]:
    """The `top` other units whose expanded-weight input vectors (their rows of `sums`: one summed map per
    unit of the previous layer) point most nearly the way `unit`'s does, by cosine, highest first (ties to
    the lower unit). Units whose inputs are all zero have no direction and are left out."""
    rows = sums.astype(np.float64)
    norms = np.linalg.norm(rows, axis=1)
    if norms[unit] == 0:
        return []
    cosine = rows @ rows[unit] / np.where(norms > 0, norms, np.inf) / norms[unit]
    cosine[unit] = -np.inf
    cosine[norms == 0] = -np.inf
    order = np.argsort(-cosine, kind="stable")[:top]
    return [(int(u), float(cosine[u])) for u in order if np.isfinite(cosine[u])]


def _similar_entries(data, unit: int, page) -> list[dict]:
    found = similar_inputs(data.incoming.arrays.sums, unit)
    return _entries(page, data.layer, [u for u, _ in found], [c for _, c in found])


def unit_panel(data, unit: int, page) -> Panel:
    panel = {"previous": data.previous, "next": data.next, "first": data.previous is None, "excite": [],
             "inhibit": [], "strip": None, "scale": None, "local": True, "outputs": None,
             "refused": data.refused_in, "refused_out": data.refused_out, "similar": []}
    json_block: dict = {"previous": data.previous, "next": data.next}
    if data.incoming is not None:
        arrays, result = data.incoming.arrays, data.incoming.result
        t = arrays.top_index.shape[1] // 2
        entries = _entries(page, data.previous, arrays.top_index[unit], arrays.top_value[unit])
        panel["local"] = result.local
        if result.local:
            top, left, height, width = (int(v) for v in arrays.box[unit])
            maps = arrays.maps[unit][:, top:top + height, left:left + width]
            scale = float(np.abs(maps).max())
            if height and width and scale > 0:
                meta = page.produce("circuit.png", [data.incoming.weights_file], {"unit": unit, "v": 1},
                                    lambda: strip_png(maps, scale))
                panel["strip"] = {"file": "circuit.png", "count": len(entries), "tile": meta["tile"]}
                panel["scale"] = scale
        panel["excite"] = [e for e in entries[:t] if e["value"] > 0]
        panel["inhibit"] = [e for e in entries[t:] if e["value"] < 0]
        json_block["inputs"] = [{"unit": e["unit"], "sum": _short(e["value"])} for e in entries]
        json_block["linearised"] = result.linearised
        panel["similar"] = _similar_entries(data, unit, page)
        json_block["similar_inputs"] = [{"unit": e["unit"], "cosine": _short(e["value"])} for e in panel["similar"]]
    if data.outgoing is not None:
        column = data.outgoing.arrays.sums[:, unit]
        t = min(data.outgoing.result.top, column.size)
        chosen = ranked(column, t)
        logits = data.next == "logits" or not data.outgoing.result.local
        categories = page.model.categories if logits else None
        entries = _entries(page, data.next, chosen, column[chosen], categories, thumbs=False)
        panel["outputs"] = {"excite": [e for e in entries[:t] if e["value"] > 0],
                            "inhibit": [e for e in entries[t:] if e["value"] < 0], "classes": logits}
        json_block["outputs"] = [{"unit": e["unit"], "sum": _short(e["value"]), **({"class": e["name"]} if logits else {})}
                                 for e in entries]
    if data.refused_in:
        json_block["refused"] = data.refused_in
        line = f"Circuit: no expanded weights from {data.previous}: {data.refused_in}."
    elif data.previous and data.incoming is not None:
        line = (f"Circuit: expanded weights from {data.previous} (the network between the layers linearised: "
                "ReLUs as the identity, max pools as average pools), at the unit's centre position.")
    elif data.previous:
        line = f"Circuit: no expanded weights from {data.previous} were computed (only those into {data.next})."
    else:
        line = f"Circuit: {data.layer} is the first layer; its inputs are the image's pixels."
    settings = {"circuits": {"previous": data.previous, "next": data.next,
                             "top": data.incoming.result.top if data.incoming else None}}
    return Panel(data=panel, json=json_block, provenance=[line], settings=settings, links=[("circuit", "#circuit")])


def layer_panel(data, page) -> Panel | None:
    """The layer's expanded weights from the previous layer as a download, float16; or why there are none."""
    if data.refused_in:
        return Panel(data={"previous": data.previous, "refused": data.refused_in}, json={"refused": data.refused_in})
    if data.incoming is None:
        return None
    arrays = data.incoming.arrays
    export = {"previous": np.array(data.previous), "layer": np.array(data.layer),
              "top_index": arrays.top_index.astype(np.int32), "top_value": arrays.top_value.astype(np.float16),
              "maps": arrays.maps.astype(np.float16), "box": arrays.box.astype(np.int16),
              "sums": arrays.sums.astype(np.float16)}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **export)
    size = page.write("weights.npz", buffer.getvalue())
    return Panel(data={"previous": data.previous, "units": arrays.top_index.shape[0], "inputs": arrays.sums.shape[1],
                       "top": arrays.top_index.shape[1] // 2, "bytes": size,
                       "linearised": data.incoming.result.linearised, "refused": None},
                 json={"weights": "weights.npz"})


def _short(value: float) -> float:
    return float(f"{value:.5g}") if math.isfinite(value) else None


class CircuitsShown(Shown):
    name = "circuits"
    title = "Circuit"
    missing = "No circuits were computed for this layer (run the circuits stage)."
    budget = {"circuit section of the page (24 inputs, 24 outputs, 5 similar units)": 11_000, "map strip": 600,
              "unit.json block": 1_600}

    def applies(self, layer) -> bool:
        return layer.kind in MAIN_KINDS + ("logits",)  # the chain of layers; not branches or SAE features

    def read(self, store, model, layer) -> LayerCircuits | None:
        return read_circuits(store, model, layer)

    def units(self, data: LayerCircuits) -> set[int]:
        if data.incoming is not None:
            return set(range(data.incoming.arrays.top_index.shape[0]))
        if data.outgoing is not None:
            return set(range(data.outgoing.arrays.sums.shape[1]))
        return set()  # refused both ways: the other views' units carry the note

    def unit_panel(self, data: LayerCircuits, unit: int, page) -> Panel:
        return unit_panel(data, unit, page)

    def layer_panel(self, data: LayerCircuits, page) -> Panel | None:
        return layer_panel(data, page)

    def layer_json(self, data: LayerCircuits) -> dict:
        return {"previous": data.previous, "next": data.next,
                "linearised": data.incoming.result.linearised if data.incoming else None,
                **({"refused": data.refused_in} if data.refused_in else {})}


SHOWN = CircuitsShown()
