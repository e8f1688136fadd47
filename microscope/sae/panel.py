"""The SAE view's show half (no torch): feature pages, neuron pages, and the SAE layer's page.

A feature's decoder column has unit norm, so its entry c is the cosine between the feature's
direction and neuron c's: the neurons it "is made of". The nearest neuron is the largest entry; a
feature whose nearest cosine is below `MISSING_BELOW` points where no single neuron does (Gorton's
"missing" features). Links go only to pages the site has.
"""
from __future__ import annotations

import math

import numpy as np

from microscope.sae.stored import LayerSae, read_layer
from microscope.view import LayerPage, Panel, Shown, UnitPage
from microscope.web.charts import sparkline

MISSING_BELOW = 0.5
LOADS_ABOVE = 0.3  # a feature loads on a neuron when the cosine of their directions passes this
DECODER_TOP = 8  # neurons listed on a feature's page
FEATURES_TOP = 6  # features listed on a neuron's page
# The SAE layer page's table lists the features that fire most; the others come on request from ROWS_FILE
# (static/layer.js), and layer.json has every feature's numbers: 4,096 rows would be 0.7 MB of HTML.
TABLE_FIRST = 48
ROWS_FILE = "features.js"


def _linked(page, layer: str, units, values, thumbs: bool) -> list[dict]:
    found = []
    for unit, value in zip(units, values):
        other = page.other(layer, int(unit))
        found.append({"unit": int(unit), "value": float(value), "href": other["href"], "label": other["label"],
                      "thumb": other["thumb"] if thumbs else None})
    return found


def loadings(weights, neuron: int) -> tuple[int, float | None]:
    """How many features load on the neuron (|cosine| of the feature's decoder direction with the neuron's
    basis direction above LOADS_ABOVE), and the entropy in bits of those loadings, each feature's share
    proportional to its cosine squared: 0 bits for one feature, log2(n) for n loading alike, None for none."""
    columns = weights.W_dec.astype(np.float64)
    norms = np.linalg.norm(columns, axis=0)
    cosine = np.abs(columns[neuron]) / np.where(norms > 0, norms, np.inf)
    loaded = cosine[cosine > LOADS_ABOVE]
    if loaded.size == 0:
        return 0, None
    share = loaded ** 2 / (loaded ** 2).sum()
    return int(loaded.size), float(max(0.0, -(share * np.log2(share)).sum()))


def neuron_panel(data: LayerSae, unit: int, page: UnitPage) -> Panel:
    """A neuron of a layer with an SAE: the features that load on it most, and how many load on it at all."""
    row = data.weights.W_dec[unit]
    chosen = np.argsort(-row, kind="stable")[:FEATURES_TOP]
    entries = _linked(page, data.sae_layer, chosen, row[chosen], thumbs=False)
    count, bits = loadings(data.weights, unit)
    loads = {"threshold": LOADS_ABOVE, "count": count, "entropy_bits": None if bits is None else _short(bits)}
    return Panel(data={"role": "neurons", "sae_layer": data.sae_layer, "features": entries, "loadings": loads,
                       "total": data.result.features, "even_bits": math.log2(count) if count else 0.0},
                 json={"sae_layer": data.sae_layer, "features": [[e["unit"], _short(e["value"])] for e in entries],
                       "loadings": loads},
                 summary={"sae_loadings": count, "sae_loading_entropy": loads["entropy_bits"]},
                 links=[("SAE", "#sae")])


def unit_panel(data: LayerSae, unit: int, page: UnitPage) -> Panel:
    w = data.weights
    if data.role == "neurons":
        return neuron_panel(data, unit, page)
    column = w.W_dec[:, unit]
    chosen = np.argsort(-column, kind="stable")[:DECODER_TOP]
    entries = _linked(page, data.source, chosen, column[chosen], thumbs=True)
    nearest, cosine = int(w.nearest_neuron[unit]), float(w.nearest_cosine[unit])
    firing = float(w.firing[unit])
    panel = {"role": "features", "source": data.source, "neurons": entries, "nearest": entries[0] if entries else None,
             "nearest_cosine": cosine, "missing": cosine < MISSING_BELOW, "firing": firing,
             "mean": float(w.mean_activation[unit]), "negative": int((column < 0).sum()),
             "width": int(column.size), "k": data.result.k}
    json_block = {"source": data.source, "nearest_neuron": nearest, "nearest_cosine": _short(cosine),
                  "firing": _short(firing), "mean_activation": _short(float(w.mean_activation[unit])),
                  "decoder_top": [[e["unit"], _short(e["value"])] for e in entries]}
    line = (f"SAE feature {unit} of {data.source}: a TopK sparse autoencoder ({data.result.features} features, "
            f"k {data.result.k}) trained on {data.result.train_vectors} activation vectors of {data.result.n_images} "
            f"images; held-out FVU {data.result.fvu:.3f}.")
    return Panel(data=panel, json=json_block, provenance=[line],
                 settings={"sae": {"layer": data.source, "features": data.result.features, "k": data.result.k,
                                   "training": data.result.training, "sampling": data.result.sampling}},
                 summary={"firing": _short(firing), "nearest_neuron": nearest, "nearest_cosine": _short(cosine)},
                 links=[("SAE", "#sae")])


def layer_panel(data: LayerSae, page: LayerPage) -> Panel | None:
    r, w = data.result, data.weights
    if data.role == "neurons":
        return Panel(data={"role": "neurons", "sae_layer": data.sae_layer, "features": r.features, "fvu": r.fvu,
                           "href": page.layer_href(data.sae_layer) if page.layer_href else None}, json={})
    order = np.argsort(-w.firing, kind="stable")
    features = [{"unit": int(f), "firing": float(w.firing[f]), "nearest": int(w.nearest_neuron[f]),
                 "cosine": float(w.nearest_cosine[f]), "missing": bool(w.nearest_cosine[f] < MISSING_BELOW)}
                for f in order]
    curve = sparkline([value for _, value in r.curve], width=360, height=60)
    rows_file, rows_bytes = None, 0
    if len(features) > TABLE_FIRST:
        rows_file = ROWS_FILE
        rows_bytes = page.render(ROWS_FILE, "views/sae_rows.js", key=ROWS_FILE, features=features[TABLE_FIRST:])
    panel = {"role": "features", "source": data.source, "features": features[:TABLE_FIRST], "rows_file": rows_file,
             "rows_bytes": rows_bytes,
             "result": r, "curve": curve, "curve_steps": int(r.curve[-1][0]) if r.curve else 0,
             "missing_count": sum(f["missing"] for f in features), "dead_count": int((w.firing == 0).sum()),
             "missing_below": MISSING_BELOW, "minutes": sum(r.seconds.values()) / 60}
    return Panel(data=panel, json={})


def _short(value: float) -> float | None:
    return float(f"{value:.4g}") if math.isfinite(value) else None


class SaeShown(Shown):
    name = "sae"
    title = "Sparse autoencoder"
    budget = {"SAE section of a feature page": 4_000, "unit.json block": 600}

    def applies(self, layer) -> bool:
        return False  # a layer without an SAE is normal: no "missing" note

    def read(self, store, model, layer) -> LayerSae | None:
        return read_layer(store, model, layer)

    def units(self, data: LayerSae) -> set[int]:
        return set(range(data.units))

    def unit_panel(self, data: LayerSae, unit: int, page: UnitPage) -> Panel:
        return unit_panel(data, unit, page)

    def layer_panel(self, data: LayerSae, page: LayerPage) -> Panel | None:
        return layer_panel(data, page)

    def layer_json(self, data: LayerSae) -> dict:
        r = data.result
        return {"role": data.role, "source": data.source, "sae_layer": data.sae_layer, "features": r.features,
                "k": r.k, "expansion": r.expansion, "fvu": r.fvu, "l0": r.l0, "dead_fraction": r.dead_fraction,
                "key": r.key}


SHOWN = SaeShown()
