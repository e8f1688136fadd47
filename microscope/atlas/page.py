"""The atlas view's show half (no torch): a layer's atlas on the site, `<layer>/atlas/index.html`, its
sprite sheets and patch strips.

    atlas/index.html            the page; the cells' data inline (works from file://), static/atlas.js draws it
    atlas/icons-coarse.webp     every coarse cell's icon in one sprite sheet (row-major, `columns` wide)
    atlas/icons-fine.webp       the same for the zoomed level, fetched when the reader first zooms in
    atlas/patches/<level>-<i>.webp   a cell's photos side by side, fetched when the cell is shown
    atlas/preview.webp          the coarse level drawn as on the page, for the layer page's panel

The layer page gets a panel linking to it (templates/views/atlas.html). The compute half is
microscope/views/atlas.py.
"""
from __future__ import annotations

import json
import math

import numpy as np
from PIL import Image

from microscope.atlas.layout import cell_members
from microscope.atlas.stored import LEVELS, AtlasData, NoGrid, icon_pixels, read_atlas
from microscope.store import AtlasVectors, DatasetIndex, ExamplesResult
from microscope.view import Panel, Shown
from microscope.web.images import encode_image, strip_webp

SHEET_QUALITY = 80
PATCH_TILE, PATCH_QUALITY = 64, 80
PREVIEW_TILE = 24  # px per coarse cell in the layer page's preview


def layer_panel(data, page) -> Panel | None:
    levels, units, files = {}, {}, {}
    labels = photo_labels(data, page.model)
    icons = {level: icon_pixels(data.store, data, level) for level in LEVELS}
    if any(pixels is None for pixels in icons.values()):
        return None  # a damaged icon batch (said once): no atlas until it is rebuilt
    for level, pixels in icons.items():
        cells = data.cells[level]
        sheet, columns = sprite_sheet(pixels)
        files[f"icons-{level}.webp"] = page.write(f"atlas/icons-{level}.webp", sheet)
        rows = []
        for i in range(len(cells.row)):
            refs = data.patches.get((level, i), [])
            if refs:
                strip, _ = strip_webp(refs, PATCH_TILE, PATCH_QUALITY)
                files[f"patches/{level}-{i}.webp"] = page.write(f"atlas/patches/{level}-{i}.webp", strip)
            for unit in cells.units[i].tolist():
                units.setdefault(unit, None)
            rows.append(cell_json(cells, i, page.model.categories, len(refs))
                        + [labels[level][i] if labels else []])
        side = int(data.result.sizes[LEVELS.index(level)])
        levels[level] = {"side": side, "tile": int(pixels.shape[1]) if len(pixels) else 0, "columns": columns,
                         "sheet": f"icons-{level}.webp", "cells": rows}
    for unit in units:
        link = page.other("atlas", page.layer.name, unit)
        units[unit] = {"href": link["href"], "label": link["label"]}
    files["preview.webp"] = page.write("atlas/preview.webp", preview(data, icons["coarse"]))
    atlas = {"model": page.model.name, "layer": page.layer.name, "levels": levels,
             "units": {str(unit): link for unit, link in sorted(units.items())},
             "n_vectors": data.result.n_vectors, "min_count": data.result.min_count}
    inline = json.dumps(atlas, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    about = describe_settings(data)
    files["index.html"] = page.render("atlas/index.html", "atlas.html", page_title=f"{page.layer.name} atlas",
                                      atlas=atlas, inline=inline, about=about)
    first_load = files["index.html"] + files["icons-coarse.webp"]
    return Panel(data={"note": None, "href": "atlas/index.html", "preview": "atlas/preview.webp", "about": about,
                       "cells": {level: len(data.cells[level].row) for level in LEVELS},
                       "bytes": sum(files.values()), "first_load": first_load}, json={})


def photo_labels(data, model, top: int = 3) -> dict | None:
    """level -> per cell, [[label, vectors]...]: the dataset labels most common among the photos of the
    cell's vectors (all of them, not a sample); None for a dataset without labels."""
    store = data.store
    examples = store.read(store.examples_result_file(model.name, data.result.layer), ExamplesResult)
    dataset = store.read(store.dataset_file(model.name, examples.dataset.fingerprint), DatasetIndex) if examples else None
    sample = store.read(store.atlas_vectors_file(model.name, data.result.layer), AtlasVectors, data.result.vectors)
    layout = data.layout()
    if dataset is None or not dataset.labels or sample is None or layout is None:
        return None
    names = dataset.classes or model.categories
    label = np.asarray(dataset.labels, np.int64)[sample.image]
    found = {}
    for index, level in enumerate(LEVELS):
        side, cells = int(data.result.sizes[index]), data.cells[level]
        found[level] = []
        for members in cell_members(layout.xy, side, cells.row * side + cells.column):
            values, counts = np.unique(label[members][label[members] >= 0], return_counts=True)
            order = np.lexsort((values, -counts))[:top]
            found[level].append([[names[v] if v < len(names) else str(v), int(n)] for v, n in
                                 zip(values[order].tolist(), counts[order].tolist())])
    return found


def cell_json(cells, i: int, categories: list[str], patches: int) -> list:
    """[row, column, count, [[class, attribution]...], [[unit, cosine]...], patches, vectors attributed]
    (the page adds the photos' labels)."""
    classes = [[categories[c] if 0 <= c < len(categories) else str(c), float(f"{v:.4g}")]
               for c, v in zip(cells.classes[i].tolist(), cells.class_attr[i].tolist()) if c >= 0]
    nearest = [[u, round(float(v), 3)] for u, v in zip(cells.units[i].tolist(), cells.unit_cos[i].tolist())]
    return [int(cells.row[i]), int(cells.column[i]), int(cells.count[i]), classes, nearest, patches,
            int(cells.attributed[i])]


def sprite_sheet(pixels: np.ndarray) -> tuple[bytes, int]:
    """Icons (n, S, S, 3) in one WebP, row-major, ceil(sqrt(n)) columns; and the number of columns."""
    n = len(pixels)
    columns = max(1, math.ceil(math.sqrt(n)))
    side = pixels.shape[1] if n else 1
    rows = max(1, math.ceil(n / columns))
    sheet = np.full((rows * side, columns * side, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        sheet[r * side:(r + 1) * side, c * side:(c + 1) * side] = pixels[i]
    return encode_image(Image.fromarray(sheet), "WEBP", SHEET_QUALITY), columns


def preview(data, pixels: np.ndarray) -> bytes:
    """The coarse level as the page first draws it: icons at their cells, sized by count."""
    cells = data.cells["coarse"]
    side = int(data.result.sizes[0])
    canvas = Image.new("RGB", (side * PREVIEW_TILE, side * PREVIEW_TILE), (255, 255, 255))
    most = max(1, int(cells.count.max())) if len(cells.count) else 1
    for i in range(len(cells.row)):
        size = max(4, round(PREVIEW_TILE * icon_scale(int(cells.count[i]), most)))
        icon = Image.fromarray(pixels[i]).resize((size, size), Image.Resampling.LANCZOS)
        offset = (PREVIEW_TILE - size) // 2
        canvas.paste(icon, (int(cells.column[i]) * PREVIEW_TILE + offset, int(cells.row[i]) * PREVIEW_TILE + offset))
    return encode_image(canvas, "WEBP", SHEET_QUALITY)


def icon_scale(count: int, most: int) -> float:
    """An icon's side as a fraction of its cell: busier cells draw bigger (static/atlas.js does the same)."""
    return 0.5 + 0.5 * math.sqrt(count / most)


def describe_settings(data) -> dict:
    result, icons, cells = data.result, data.icons.settings, data.cells_stage.settings
    return {"n_vectors": result.n_vectors, "sizes": list(result.sizes), "min_count": result.min_count,
            "n_neighbors": result.layout.get("n_neighbors"), "min_dist": result.layout.get("min_dist"),
            "metric": result.layout.get("metric"), "seed": result.layout.get("seed"),
            "icon_size": icons.get("size"), "icon_steps": icons.get("steps"), "cossim_pow": icons.get("cossim_pow"),
            "attribution_vectors": cells.get("attribution_vectors"), "logits": cells.get("logits"),
            "patches": cells.get("patches"), "umap_seconds": round(result.seconds.get("umap", 0), 1)}


class AtlasShown(Shown):
    name = "atlas"
    title = "Activation atlas"
    level = "layer"
    budget = {}  # its page is its own, not part of a unit page

    def applies(self, layer) -> bool:
        return False  # made by its own command: a layer without one says nothing

    def read(self, store, model, layer) -> AtlasData | NoGrid | None:
        if layer.kind == "logits":
            return NoGrid(layer.name)
        return read_atlas(store, model.name, layer.name)

    def layer_panel(self, data: AtlasData | NoGrid, page) -> Panel | None:
        if isinstance(data, NoGrid):
            return Panel(data={"note": data.note}, json={})
        return layer_panel(data, page)

    def layer_json(self, data: AtlasData | NoGrid) -> dict:
        if isinstance(data, NoGrid):
            return {"note": data.note}
        result = data.result
        return {"n_vectors": result.n_vectors, "sizes": result.sizes, "layout": result.layout,
                "cells": {level: len(cells.row) for level, cells in data.cells.items()},
                "icons": data.icons.settings, "cells_settings": data.cells_stage.settings}


SHOWN = AtlasShown()
