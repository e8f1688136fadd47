"""A layer's pages: one page per unit, composed of the panels of the views that have data for it,
with `unit.json` beside it; and the layer's record (`layer.json`) and panels, which site/layer_pages.py
lays out as the layer's grid pages.

A view's panel is its own business (microscope/views); this module lays panels out in registry
order, picks the unit's grid thumbnail among the candidates they offer, composes the provenance
section and unit.json, and counts the bytes each view adds per unit for the size estimate.
"""
from __future__ import annotations

import json
import math
import posixpath
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from tqdm import tqdm

from microscope.names import segment
from microscope.site.layer_pages import write_layer_pages
from microscope.site.output import SiteWriter
from microscope.site.render import Renderer
from microscope.store import LayerInfo, ModelRecord
from microscope.view import LayerPage, Panel, UnitPage
from microscope.views.shown import SHOWN
from microscope.web.images import SIZES, AssetCache, render_webp

THUMB = "thumb.webp"
# Settings not worth a row of their own: shown elsewhere on the page, or bulky (unit.json has them).
SETTINGS_SKIP = {"model", "layer", "unit", "weights_id", "files", "channels", "height", "width", "kinds",
                 "pad_colour", "identity", "skipped_files", "key", "description"}


@dataclass
class LayerContext:
    model: ModelRecord
    layer: LayerInfo
    layer_dir: str  # site-relative, e.g. models/inceptionv1/mixed4a
    data: dict[str, Any]  # view name -> the layer's data (views without data are absent)
    labels: dict[int, dict]  # unit -> {"label", "note"}
    states: dict[str, dict]  # view name -> its state while this model is built
    writer: SiteWriter
    renderer: Renderer
    index: dict[str, set[int]]  # layer -> the units with a page in this site (to link to other layers)
    all_labels: dict[str, dict[int, dict]]  # layer -> unit -> {"label", "note"}, every layer's
    concepts_page: str | None = None  # the model's concepts page (in the model's folder), where it has one
    try_page: str | None = None  # the model's "Try an image" page (in the model's folder), where it has one

    @cached_property
    def thumbs(self) -> set[int]:
        """This layer's units that get a grid thumbnail, known before its pages are written."""
        return set().union(*[SHOWN[name].thumbs(value) for name, value in self.data.items()])

    def other(self, folder: str):
        """other(layer, unit) for a page in `folder`: links to another unit, only where its page is. A unit of
        this layer has its thumbnail linked when a view offers one (`Shown.thumbs`), not when its file is
        already written, so that a page does not depend on the order of the layer's pages."""
        def other(layer: str, unit: int) -> dict:
            label = (self.all_labels.get(layer, {}).get(unit) or {}).get("label")
            if unit not in self.index.get(layer, ()):
                return {"href": None, "thumb": None, "label": label}
            target = f"{self.model_dir}/{segment(layer)}/{unit}"
            href = posixpath.relpath(f"{target}/index.html", folder)
            has = unit in self.thumbs if layer == self.layer.name else self.writer.path(f"{target}/{THUMB}").is_file()
            return {"href": href, "thumb": posixpath.relpath(f"{target}/{THUMB}", folder) if has else None,
                    "label": label}
        return other

    def layer_href(self, folder: str):
        """layer_href(layer) for a page in `folder`: the link to another layer's page, only where the site has it."""
        def href(layer: str) -> str | None:
            if not self.index.get(layer):
                return None
            return posixpath.relpath(f"{self.model_dir}/{segment(layer)}/index.html", folder)
        return href

    @property
    def model_dir(self) -> str:
        return self.layer_dir.rsplit("/", 1)[0]


def layer_units(data: dict[str, Any]) -> list[int]:
    return sorted(set().union(*[SHOWN[name].units(value) for name, value in data.items()]) if data else set())


def build_layer(ctx: LayerContext, progress: bool) -> dict:
    """Write the layer's unit pages and its own pages; returns its record for the model page."""
    cache = AssetCache(ctx.writer, f"{ctx.layer_dir}/.assets.json")
    units = layer_units(ctx.data)
    records = []
    bar = tqdm(units, desc=f"site {ctx.model.name}/{ctx.layer.name}", unit="unit", disable=not progress, leave=False)
    for position, unit in enumerate(bar):
        neighbours = (units[position - 1] if position else None, units[position + 1] if position + 1 < len(units) else None)
        records.append(build_unit(ctx, cache, unit, neighbours))
    cache.save()
    views = [SHOWN[name] for name in SHOWN if name in ctx.data]
    record = layer_record(ctx, records, views)
    panels, record["layer_bytes"] = layer_panels(ctx, views)
    write_layer_pages(ctx.writer, ctx.renderer, ctx.layer_dir, ctx.model, record, panels, ctx.concepts_page, ctx.try_page)
    return {k: v for k, v in record.items() if k != "units"}  # what the model page and search need


def layer_record(ctx: LayerContext, records: list[dict], views) -> dict:
    """The layer's layer.json: its catalogue entry, what each view says of it, and every unit's record."""
    seg = segment(ctx.layer.name)
    thumbs = [{"unit": r["unit"], "src": f"{seg}/{r['unit']}/{r['thumb']}", "href": f"{seg}/{r['unit']}/index.html",
               "px": r["thumb_pixelated"]}
              for r in sorted(records, key=lambda r: r["thumb_rank"]) if r["thumb"]][:8]  # renders say most, first
    return {
        "model": ctx.model.name, "layer": ctx.layer.name, **{k: v for k, v in vars(ctx.layer).items() if k != "name"},
        "dir": seg, "n_units": len(records), "unit_ranges": ranges([r["unit"] for r in records]),
        "views": {view.name: view.layer_json(ctx.data[view.name]) for view in views},
        "titles": [view.title for view in views],
        "missing": [view.missing for name, view in SHOWN.items()
                    if name not in ctx.data and view.level == "unit" and view.missing and view.applies(ctx.layer)],
        "labels": {str(r["unit"]): r["label"] for r in records if r["label"]}, "thumbs": thumbs,
        "bytes": {part: sum(r["bytes"].get(part, 0) for r in records) for part in [*SHOWN, "page"]},
        # Units with the view's panel: a view writing no files of its own adds only to "page", which is measured.
        "units_with": {name: sum(1 for r in records if name in r["bytes"]) for name in SHOWN},
        "units": [{k: v for k, v in r.items() if k not in ("bytes", "thumb_rank")} | {"url": f"{r['unit']}/index.html"}
                  for r in records],
    } | {key: value for view in views for key, value in view.layer_fields(ctx.data[view.name]).items()}


def layer_panels(ctx: LayerContext, views) -> tuple[list[dict], int]:
    """The views' parts of the layer page, with the files they write beside it; and the bytes of those files
    (a layer's share of the site beyond its unit pages, for the size estimate)."""
    written = {}

    def write(name: str, data: bytes) -> int:
        ctx.writer.write(f"{ctx.layer_dir}/{name}", data)
        written[name] = len(data)
        return len(data)

    def render(name: str, template: str, **context) -> int:
        path = f"{ctx.layer_dir}/{name}"
        root = "../" * path.count("/")
        ctx.writer.write_text(path, ctx.renderer.render(template, root=root, model=ctx.model, layer=ctx.layer,
                                                        model_title=ctx.model.title or ctx.model.name, **context))
        return ctx.writer.bytes_by_path[path]

    page = LayerPage(ctx.model, ctx.layer, ctx.layer_dir, write, render,
                     lambda folder, layer, unit: ctx.other(f"{ctx.layer_dir}/{folder}".rstrip("/"))(layer, unit),
                     ctx.layer_href(ctx.layer_dir))
    found = []
    for view in views:
        panel = view.layer_panel(ctx.data[view.name], page)
        if panel is not None:
            found.append({"name": view.name, "title": view.title, "template": view.template, "data": panel.data})
    return found, sum(written.values())


def build_unit(ctx: LayerContext, cache: AssetCache, unit: int, neighbours: tuple[int | None, int | None]) -> dict:
    folder = f"{ctx.layer_dir}/{unit}"
    facts: dict = {}
    for name, data in ctx.data.items():
        facts.update(SHOWN[name].facts(data, unit))
    written: list[str] = []

    def produce(name, sources, settings, make):
        written.append(name)
        return cache.produce(f"{folder}/{name}", sources, settings, make)

    shown, panels = [], {}
    for name, view in SHOWN.items():
        if view.level != "unit":
            continue
        if name not in ctx.data:
            if not (view.missing and view.applies(ctx.layer)):
                continue
            shown.append({"name": name, "title": view.title, "template": None, "data": None, "missing": view.missing})
            continue
        page = UnitPage(ctx.model, ctx.layer, unit, folder, facts, ctx.states.setdefault(name, {}), produce,
                        ctx.writer, ctx.model_dir, ctx.other(folder))
        start = len(written)
        panel = view.unit_panel(ctx.data[name], unit, page)
        if panel is None:  # the view has nothing to show of this unit (Shown.unit_panel may say so)
            continue
        panel.files = written[start:]
        panels[name] = panel
        shown.append({"name": name, "title": view.title, "template": view.template, "data": panel.data,
                      "missing": None})
    sizes = {name: sum(ctx.writer.bytes_by_path[f"{folder}/{f}"] for f in panel.files) for name, panel in panels.items()}
    thumb, thumb_rank, pixelated = _thumbnail(panels, produce, sizes, ctx.writer, folder)
    label = {"label": None, "note": None, **(ctx.labels.get(unit) or {})}
    unit_json = {"model": ctx.model.name, "layer": ctx.layer.name, "unit": unit, "label": label["label"],
                 "note": label["note"], "weights_id": ctx.model.weights_id,
                 **{name: panel.json for name, panel in panels.items()}}
    ctx.writer.write_text(f"{folder}/unit.json", json.dumps(unit_json, separators=(",", ":"), allow_nan=False) + "\n")
    settings = {}
    for panel in panels.values():
        settings.update(panel.settings)
    page = ctx.renderer.render(
        "unit.html", root="../" * (folder.count("/") + 1), page_title=f"{ctx.layer.name} unit {unit}",
        model=ctx.model, model_title=ctx.model.title or ctx.model.name, layer=ctx.layer, unit=unit, label=label,
        panels=shown, provenance_lines=[line for panel in panels.values() for line in panel.provenance],
        provenance=settings_rows(settings), prev_unit=neighbours[0], next_unit=neighbours[1])
    ctx.writer.write_text(f"{folder}/index.html", page)
    sizes["page"] = ctx.writer.bytes_by_path[f"{folder}/index.html"] + ctx.writer.bytes_by_path[f"{folder}/unit.json"]
    record = {"unit": unit, "label": label["label"], "thumb": thumb, "thumb_rank": thumb_rank,
              "thumb_pixelated": pixelated, "bytes": sizes,
              "links": [list(link) for panel in panels.values() for link in panel.links]}
    for panel in panels.values():
        record.update(panel.summary)
    return record


def _thumbnail(panels: dict[str, Panel], produce, sizes: dict, writer: SiteWriter, folder: str):
    """The best-ranked candidate among the panels as the unit's grid thumbnail, counted to its view."""
    candidates = [(panel.thumb, name) for name, panel in panels.items() if panel.thumb is not None]
    if not candidates:
        return None, math.inf, False
    thumb, name = min(candidates, key=lambda c: c[0].rank)
    meta = produce(THUMB, [thumb.source], {"side": SIZES.thumb, "quality": SIZES.thumb_quality},
                   lambda: render_webp(thumb.source, SIZES.thumb, SIZES.thumb_quality))
    sizes[name] = sizes.get(name, 0) + writer.bytes_by_path[f"{folder}/{THUMB}"]
    return THUMB, thumb.rank, meta.get("width", SIZES.thumb) < SIZES.thumb // 2


def settings_rows(settings: dict) -> list[tuple[str, str]]:
    """(name, value) rows for the page: scalar settings, nested ones flattened as a.b."""
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value, depth: int) -> None:
        if isinstance(value, dict) and depth < 3:
            for key in sorted(value):
                if key not in SETTINGS_SKIP:
                    walk(f"{prefix}.{key}" if prefix else key, value[key], depth + 1)
        elif isinstance(value, (str, int, bool)) and value != "":
            rows.append((prefix, str(value)))
        elif isinstance(value, float) and math.isfinite(value):
            rows.append((prefix, f"{value:.6g}"))
        elif isinstance(value, list) and 0 < len(value) <= 4 and all(isinstance(v, (str, int, float)) for v in value):
            rows.append((prefix, ", ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in value)))

    walk("", settings, 0)
    return rows


def ranges(units: list[int]) -> list[list[int]]:
    """[0,1,2,5,6] -> [[0,2],[5,6]]: the search index stores unit lists compactly."""
    found: list[list[int]] = []
    for unit in units:
        if found and unit == found[-1][1] + 1:
            found[-1][1] = unit
        else:
            found.append([unit, unit])
    return found
