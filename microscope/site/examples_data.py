"""A unit's dataset examples, as the pages show them: read from the layer's summary.npz.

Per channel the examples stage stores `top_*` and `bottom_*` (values NaN and index -1 where a slot
is empty), `band_*` samples of quantile bands, `hist_counts`/`hist_edges` of the pre-ReLU twin,
`mean`, `nonzero_fraction` and, with labels, `top_classes` (see microscope/examples/accumulator.py).
Every example also gets its receptive field as fractions of the model's square view, which is what
the dataset photos shipped with the site show.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np


if TYPE_CHECKING:
    from microscope.site.data import Layer

def finite_number(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def class_names(model: dict, layer: Layer) -> list[str]:
    """Names for the class indices of the dataset's labels: the dataset's own, else the model's."""
    if layer.examples and layer.examples.dataset and layer.examples.dataset.classes:
        return layer.examples.dataset.classes
    names = model.get("categories")
    return [str(n) for n in names] if isinstance(names, list) else []


def _row(summary: dict, key: str, unit: int) -> np.ndarray | None:
    array = summary.get(key)
    if array is None or array.ndim == 0 or array.shape[0] <= unit:
        return None
    return array[unit]


def geometry(info: dict, config: dict) -> tuple[float, float, float] | None:
    """(rf_size, rf_offset, stride) of the layer, from the catalogue or the examples' config."""
    grid = config.get("grid") if isinstance(config.get("grid"), dict) else {}
    size = info.get("rf_size", grid.get("rf_size"))
    offset = info.get("rf_offset", grid.get("rf_offset"))
    stride = info.get("stride", grid.get("stride"))
    if size is None or offset is None or stride is None:
        return None
    return float(size), float(offset), float(stride)


def receptive_square(geom, y: int, x: int, input_size: int) -> list[float] | None:
    """[top, left, side] of position (y, x)'s receptive field as fractions of the input (unclipped).

    Fractions, because the dataset photo shipped with the site is the model's square view at a
    smaller size; unclipped, because a deep layer's field hangs over the image's edges.
    """
    if geom is None or input_size <= 0:
        return None
    size, offset, stride = geom
    half = (size - 1) / 2
    top, left = offset + y * stride - half, offset + x * stride - half
    return [round(top / input_size, 3), round(left / input_size, 3), round(size / input_size, 3)]


def clipped_box(square: list[float] | None) -> list[float] | None:
    """[top, left, bottom, right] inside [0, 1]: the rectangle drawn over the photo."""
    if square is None:
        return None
    top, left, side = square
    return [round(min(1.0, max(0.0, v)), 3) for v in (top, left, top + side, left + side)]


def _example(files, patches, geom, input_size, key, rank, image_index, value, y, x) -> dict:
    square = receptive_square(geom, y, x, input_size) if y >= 0 and x >= 0 else None
    return {"rank": rank, "index": image_index, "value": value, "y": y, "x": x,
            "image": files[image_index] if 0 <= image_index < len(files) else None,
            "patch": patches.get((key, rank)), "square": square, "box": clipped_box(square)}


def unit_examples(layer: Layer, unit: int, model: dict) -> dict:
    """top, bottom, bands, histogram, stats and classes of one unit."""
    data = {}
    examples, summary = layer.examples, layer.examples.summary
    patches = examples.patch_refs(unit)
    files = examples.dataset.files if examples.dataset else []
    view = examples.config.get("view") if isinstance(examples.config.get("view"), dict) else {}
    input_size = int(view.get("crop") or model.get("input_size") or 224)
    geom = geometry(layer.info, examples.config)

    def example_list(prefix: str) -> list[dict]:
        values, index = _row(summary, f"{prefix}_values", unit), _row(summary, f"{prefix}_index", unit)
        if values is None or index is None:
            return []
        ys, xs = _row(summary, f"{prefix}_y", unit), _row(summary, f"{prefix}_x", unit)
        items = []
        for rank, (value, image_index) in enumerate(zip(values.tolist(), index.tolist())):
            if image_index < 0 or not math.isfinite(value):
                continue
            y = int(ys[rank]) if ys is not None else -1
            x = int(xs[rank]) if xs is not None else -1
            items.append(_example(files, patches, geom, input_size, prefix, rank, int(image_index), float(value), y, x))
        return items

    data["top"] = example_list("top")
    data["bottom"] = example_list("bottom")
    data["bands"] = _bands(summary, unit, files, patches, geom, input_size)
    data["histogram"] = _histogram(summary, unit)
    stats = {}
    for key in ("mean", "nonzero_fraction", "n_positions"):
        row = _row(summary, key, unit)
        if row is not None and np.ndim(row) == 0 and math.isfinite(float(row)):
            stats[key] = float(row)
    if data["top"]:
        stats["max"] = data["top"][0]["value"]
    if data["bottom"]:
        stats["min"] = data["bottom"][0]["value"]
    data["stats"] = stats
    data["classes"] = _classes(summary, unit, class_names(model, layer))
    return data


def _histogram(summary: dict, unit: int) -> dict | None:
    """Counts and edges with the empty bins at both ends dropped (the grid has spare bins)."""
    counts = _row(summary, "hist_counts", unit)
    edges = summary.get("hist_edges")
    if counts is None or edges is None:
        return None
    if edges.ndim == 2:
        if edges.shape[0] <= unit:
            return None
        edges = edges[unit]
    if edges.shape[0] != counts.shape[0] + 1:
        return None
    used = np.flatnonzero(counts > 0)
    if used.size == 0:
        return None
    first, last = int(used[0]), int(used[-1])
    return {"counts": [int(c) for c in counts[first:last + 1].tolist()],
            "edges": [float(e) for e in edges[first:last + 2].tolist()]}


def _bands(summary: dict, unit: int, files, patches, geom, input_size) -> list[dict]:
    values, index = _row(summary, "band_values", unit), _row(summary, "band_index", unit)
    if values is None or index is None or values.ndim != 2:
        return []
    ys, xs = _row(summary, "band_y", unit), _row(summary, "band_x", unit)
    names = summary.get("band_names")
    value_range = _row(summary, "band_value_range", unit)
    fraction_range = _row(summary, "band_fraction_range", unit)
    counts = _row(summary, "band_count", unit)
    bands = []
    for band in range(values.shape[0]):
        samples = []
        for i in range(values.shape[1]):
            image_index, value = int(index[band, i]), float(values[band, i])
            if image_index < 0 or not math.isfinite(value):
                continue
            y = int(ys[band, i]) if ys is not None else -1
            x = int(xs[band, i]) if xs is not None else -1
            samples.append(_example(files, patches, geom, input_size, f"band{band}", i, image_index, value, y, x))
        low = high = None
        if value_range is not None and value_range.ndim == 2:
            low, high = finite_number(value_range[band, 0]), finite_number(value_range[band, 1])
        fractions = None
        if fraction_range is not None and fraction_range.ndim == 2:
            fractions = [finite_number(fraction_range[band, 0]), finite_number(fraction_range[band, 1])]
        name = str(names[band]) if names is not None and band < len(names) else f"band {band + 1}"
        bands.append({"band": band, "name": name, "low": low, "high": high, "fractions": fractions,
                      "count": int(counts[band]) if counts is not None else None, "samples": samples})
    return bands


def _classes(summary: dict, unit: int, names: list[str]) -> list[dict]:
    classes, counts = _row(summary, "top_classes", unit), _row(summary, "top_class_counts", unit)
    if classes is None:
        return []
    result = []
    for i, cls in enumerate(classes.tolist()):
        count = int(counts[i]) if counts is not None else None
        if cls < 0 or count == 0:
            continue
        name = names[cls] if 0 <= cls < len(names) else f"class {cls}"
        result.append({"class": int(cls), "name": name, "count": count})
    return result
