"""The examples view's show half: a unit's top and bottom examples, quantile bands, histogram, classes.

Reads the layer's typed records (result.json, summary.npz, the patch packs, the dataset index: stored.py) -
no torch. Top examples are shown as one strip of patches; bottom examples and band samples are
cropped, with CSS, out of the dataset photos the site ships anyway for the hover view (one set
per dataset, shared by all units: no bytes per unit) wherever a photo shows the receptive field
at least as sharply as a patch would; small-field layers get strips for those too.
"""
from __future__ import annotations

import math
import posixpath
from dataclasses import dataclass
from functools import partial

import numpy as np

from microscope.examples.stored import ExamplesData, read_examples
from microscope.names import segment
from microscope.store import ExamplesSummary
from microscope.store.typed import to_json
from microscope.view import Panel, Shown, Thumb, UnitPage
from microscope.web import charts
from microscope.web.images import SIZES, Photos, strip_webp


def finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Slot:
    """One stored example: of which kind and rank, which image, its value and position."""

    kind: str  # "top", "bottom", "band<b>"
    rank: int
    index: int
    value: float
    y: int
    x: int


def _example(data: ExamplesData, slot: Slot, refs) -> dict:
    files = data.dataset.files if data.dataset else []
    square = None
    if slot.y >= 0 and slot.x >= 0 and data.result.grid.rf_size is not None:
        top, left, side = data.result.grid.receptive_square(slot.y, slot.x)
        crop = data.result.view.crop  # fractions of the model's square view, as the shipped photos show it
        square = [round(float(top) / crop, 3), round(float(left) / crop, 3), round(side / crop, 3)]
    box = None if square is None else [round(min(1.0, max(0.0, v)), 3) for v in
                                       (square[0], square[1], square[0] + square[2], square[1] + square[2])]
    return {"rank": slot.rank, "index": slot.index, "value": slot.value, "y": slot.y, "x": slot.x,
            "image": files[slot.index] if 0 <= slot.index < len(files) else None,
            "patch": refs.get((slot.kind, slot.rank)), "square": square, "box": box}


def _ranked(data: ExamplesData, prefix: str, unit: int, refs) -> list[dict]:
    s = data.summary
    values, index = getattr(s, f"{prefix}_values")[unit], getattr(s, f"{prefix}_index")[unit]
    ys, xs = getattr(s, f"{prefix}_y")[unit], getattr(s, f"{prefix}_x")[unit]
    return [_example(data, Slot(prefix, rank, int(i), float(v), int(ys[rank]), int(xs[rank])), refs)
            for rank, (v, i) in enumerate(zip(values.tolist(), index.tolist())) if i >= 0 and math.isfinite(v)]


def _bands(data: ExamplesData, unit: int, refs) -> list[dict]:
    s = data.summary
    bands = []
    for band in range(s.band_index.shape[1]):
        samples = [_example(data, Slot(f"band{band}", i, int(s.band_index[unit, band, i]),
                                       float(s.band_values[unit, band, i]), int(s.band_y[unit, band, i]),
                                       int(s.band_x[unit, band, i])), refs)
                   for i in range(s.band_index.shape[2])
                   if s.band_index[unit, band, i] >= 0 and math.isfinite(s.band_values[unit, band, i])]
        low, high = s.band_value_range[unit, band]
        bands.append({"band": band, "name": str(s.band_names[band]), "low": finite(low), "high": finite(high),
                      "fractions": [finite(v) for v in s.band_fraction_range[unit, band]],
                      "count": int(s.band_count[unit, band]), "samples": samples})
    return bands


def _histogram(summary: ExamplesSummary, unit: int) -> dict | None:
    """Counts and edges with the empty bins at both ends dropped (the grid has spare bins)."""
    counts = summary.hist_counts[unit]
    used = np.flatnonzero(counts > 0)
    if used.size == 0:
        return None
    first, last = int(used[0]), int(used[-1])
    return {"counts": [int(c) for c in counts[first:last + 1]],
            "edges": [float(e) for e in summary.hist_edges[unit, first:last + 2]]}


def _classes(data: ExamplesData, unit: int, categories: list[str]) -> list[dict]:
    s = data.summary
    if s.top_classes is None:
        return []
    names = data.dataset.classes if data.dataset and data.dataset.classes else categories
    found = [{"class": int(c), "name": names[c] if 0 <= c < len(names) else f"class {c}", "count": int(n)}
             for c, n in zip(s.top_classes[unit].tolist(), s.top_class_counts[unit].tolist()) if c >= 0 and n > 0]
    most = max([c["count"] for c in found] + [1])
    for c in found:
        c["share"] = round(100 * c["count"] / most, 1)
    return found


def _significant(value: float, digits: int = 6) -> float:
    return float(f"{value:.{digits}g}")


def _json_examples(items: list[dict]) -> list[dict]:
    return [{"image": e["image"], "value": _significant(e["value"]), "y": e["y"], "x": e["x"]} for e in items]


def unit_panel(data: ExamplesData, unit: int, page: UnitPage) -> Panel:
    refs = data.patch_refs(unit)
    top, bottom, bands = _ranked(data, "top", unit, refs), _ranked(data, "bottom", unit, refs), _bands(data, unit, refs)
    photos = _photos(data, page)
    shown = {"top": top[:SIZES.top], "bottom": bottom[:SIZES.bottom]}
    for band in bands:
        band["shown"] = band["samples"][:SIZES.band_samples]
    shown["bands"] = [item for band in bands for item in band["shown"]]
    square = next((item["square"] for item in top + bottom if item["square"]), None)
    sharp = square is None or square[2] * SIZES.photo >= SIZES.patch  # the photo shows the field sharply enough
    strips = {}
    for kind, items in shown.items():
        for item in items:
            photo = photos.path(item["index"]) if photos else None
            item["photo"] = posixpath.relpath(photo, page.folder) if photo else None
        if kind == "top" or not sharp or not all(item["photo"] for item in items):
            strips[kind] = _strip(page, kind, items)
        else:
            strips[kind] = None
    s = data.summary
    stats = {"mean": float(s.mean[unit]), "nonzero_fraction": float(s.nonzero_fraction[unit]),
             "n_positions": float(s.n_positions[unit])}
    if top:
        stats["max"] = top[0]["value"]
    if bottom:
        stats["min"] = bottom[0]["value"]
    histogram = _histogram(s, unit)
    result = data.result
    dataset = {"fingerprint": result.dataset.fingerprint, "name": result.dataset.name, "images": result.n_images}
    view = result.view
    line = (f"Dataset examples: {result.n_images} images of {result.dataset.name} (fingerprint "
            f"{result.dataset.fingerprint}), top {result.top_k} per unit, each image resized to {view.resize} px "
            f"and centre-cropped to {view.crop} px" + (f", {result.skipped} unreadable files skipped" if result.skipped
                                                        else "") + ".")
    settings = {k: v for k, v in to_json(result).items() if k not in ("files", "identity", "skipped_files", "key")}
    classes = _classes(data, unit, page.model.categories)
    chart = charts.histogram(histogram["counts"], histogram["edges"],
                             {"top example": stats.get("max")}) if histogram else None
    return Panel(
        data={"top": shown["top"], "bottom": shown["bottom"], "bands": bands, "strips": strips, "top_k": len(top),
              "n_bottom": len(bottom), "histogram": chart, "stats": stats, "classes": classes,
              "histogram_of": result.histogram_of, "dataset": dataset},
        json={"top_examples": _json_examples(top), "bottom_examples": _json_examples(bottom),
              "quantile_bands": [{"name": b["name"], "fractions": b["fractions"], "low": b["low"], "high": b["high"],
                                  "images": b["count"], "examples": _json_examples(b["samples"])} for b in bands],
              "histogram": histogram, "stats": {k: _significant(v) for k, v in stats.items()},
              "top_classes": [{k: v for k, v in c.items() if k != "share"} for c in classes],
              "dataset": dataset, "provenance": settings},
        provenance=[line], settings={"examples": settings},
        thumb=Thumb(top[0]["patch"], 1, "top dataset example") if top and top[0]["patch"] else None,
        summary={"examples": {"max": _significant(stats["max"]) if "max" in stats else None,
                              "mean": _significant(stats["mean"]),
                              "nonzero_fraction": _significant(stats["nonzero_fraction"])}})


def _strip(page: UnitPage, kind: str, items: list[dict]) -> dict | None:
    """Write `<kind>.webp` and number the items' tiles; None (and no file) when there are no patches."""
    for position, item in enumerate(items):
        item["tile"] = position
    if not items or not all(item["patch"] is not None for item in items):
        for item in items:
            item["tile"] = None
        return None
    sources = [item["patch"] for item in items]
    meta = page.produce(f"{kind}.webp", sources, {"tile": SIZES.patch, "quality": SIZES.patch_quality},
                        lambda: strip_webp(sources, SIZES.patch, SIZES.patch_quality))
    return {"file": f"{kind}.webp", "count": len(items), "pixelated": meta.get("tile", SIZES.patch) < SIZES.patch}


def _photos(data: ExamplesData, page: UnitPage):
    """The shared dataset photos of this model's site, one set per dataset."""
    if data.dataset is None or data.thumbs is None:
        return None
    found = page.state.setdefault("photos", {})
    fingerprint = data.dataset.fingerprint
    if fingerprint not in found:
        stamps, store, model = data.store.thumb_stamps(page.model.name, fingerprint), data.store, page.model.name
        thumb_file = partial(store.thumb_file, model, fingerprint)
        found[fingerprint] = Photos(page.writer, f"{page.model_dir}/datasets/{segment(fingerprint)}", thumb_file,
                                    lambda index: store.thumb_problem(thumb_file(index), stamps.get(index)))
    return found[fingerprint]


class ExamplesShown(Shown):
    name = "examples"
    title = "Dataset examples"
    missing = "No dataset examples were computed for this layer (run with --images)."
    budget = {"48 top patches (56 px strip)": 37_700, "bottom and band samples (cropped from the shared photos)": 0}

    def read(self, store, model, layer) -> ExamplesData | None:
        return read_examples(store, model, layer)

    def units(self, data: ExamplesData) -> set[int]:
        return set(range(data.summary.channels))

    def thumbs(self, data: ExamplesData) -> set[int]:
        """The units whose first top example (as `_ranked` keeps them) has a patch: unit_panel's thumbnail."""
        s = data.summary
        valid = (s.top_index >= 0) & np.isfinite(s.top_values)
        first = valid.argmax(axis=1)
        return {unit for unit in np.flatnonzero(valid.any(axis=1)).tolist()
                if ("top", int(first[unit])) in data.patch_refs(unit)}

    def facts(self, data: ExamplesData, unit: int) -> dict:
        best = float(data.summary.top_values[unit, 0]) if unit < data.summary.channels else math.nan
        return {"dataset_max": best} if math.isfinite(best) and best > 0 else {}

    def unit_panel(self, data: ExamplesData, unit: int, page: UnitPage) -> Panel:
        return unit_panel(data, unit, page)

    def layer_json(self, data: ExamplesData) -> dict:
        result = to_json(data.result)
        return {key: result[key] for key in ("model", "weights_id", "layer", "dataset", "view", "top_k", "n_images",
                                             "skipped", "histogram_of", "patches")}

    def finish_model(self, state: dict, incremental: bool) -> None:
        for photos in state.get("photos", {}).values():
            photos.save(keep_old=incremental)


SHOWN = ExamplesShown()
