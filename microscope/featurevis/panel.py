"""The feature visualization view's show half: a unit's renders on its page (no torch).

The channel objective is shown large and the others small, each with its loss curve as a sparkline and
how much more it excites the unit than the best dataset image does - a number only the site can
compute, where both results (this view's and the examples view's) are known. A transparent render
(channel-alpha) is shown beside the channel render, over a checkerboard, with its mean alpha; its
activation was measured over random backgrounds (featurevis/alpha.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from microscope.featurevis.registry import UNIT_OBJECTIVES
from microscope.featurevis.stored import LayerRenders, read_renders
from microscope.store import RenderConfig
from microscope.store.typed import to_json
from microscope.view import Panel, Shown, Thumb, UnitPage
from microscope.web import charts
from microscope.web.images import SIZES, render_webp


class FeatureVisShown(Shown):
    name = "featurevis"
    title = "Feature visualization"
    missing = "No feature visualizations were computed for this layer (run the featurevis stage)."
    budget = {"channel render (224 px, q85)": 23_800, "neuron + negative (112 px)": 9_400,
              "4 diversity renders (112 px)": 18_400, "grid thumbnail (96 px)": 3_200}

    def read(self, store, model, layer) -> LayerRenders | None:
        return read_renders(store, model, layer)

    def units(self, data: LayerRenders) -> set[int]:
        return set(data.units)

    def thumbs(self, data: LayerRenders) -> set[int]:
        return {unit for unit, records in data.units.items() if any(r.images for r in records.values())}

    def unit_panel(self, data: LayerRenders, unit: int, page: UnitPage) -> Panel:
        records = data.units.get(unit)
        if not records:
            return Panel(data={"renders": [], "alpha": None}, json={}, provenance=[])
        folder = data.folder / str(unit)
        best = page.facts.get("dataset_max")  # the unit's best dataset example (examples view)
        renders, transparent, first = [], [], {}
        for record in sorted(records.values(), key=lambda r: _order(r.objective)):
            clear = _transparent(record.objective)
            for image in record.images:
                source = folder / image.file
                (transparent if clear else renders).append(_shown_render(page, source, image, best, clear))
                first.setdefault(clear, source)
        # The grid's thumbnail is the first opaque render (a unit with only transparent ones: flattened over white).
        thumb_source = first.get(False) or first.get(True)
        thumb = Thumb(thumb_source, 0, "feature visualization") if thumb_source else None
        # The layer's configuration as an opaque render records it (a transparent one's adds its own numbers).
        config = next((r.config for r in records.values() if not _transparent(r.objective)),
                      next(iter(records.values())).config)
        shown = renders + transparent
        json_block = {
            "renders": {r["objective"]: r["file"] for r in shown},
            "objective_final": {r["objective"]: r["value"] for r in shown},
            "activation_ratio": {r["objective"]: r["ratio"] for r in shown if r["ratio"] is not None},
            "config": {k: v for k, v in to_json(config).items() if k != "recipe"},
            "recipe": config.recipe,
        }
        provenance = [_provenance(config, page.layer.kind)]
        if transparent:
            json_block["mean_alpha"] = {r["objective"]: r["mean_alpha"] for r in transparent}
            provenance.append(_transparency_provenance(records[transparent[0]["objective"]].config))
        return Panel(data={"renders": renders, "alpha": transparent[0] if transparent else None}, json=json_block,
                     provenance=provenance, settings={"featurevis": {**to_json(config), "objectives": sorted(records)}},
                     thumb=thumb, summary={"featurevis": {r["objective"]: r["file"] for r in shown}})

    def layer_json(self, data: LayerRenders) -> dict:
        some = next(iter(next(iter(data.units.values())).values()))
        return {"config": to_json(some.config), "units": len(data.units)}


def _shown_render(page: UnitPage, source: Path, image, best: float | None, transparent: bool) -> dict:
    """One stored image as the page shows it: its WebP (transparent ones keep their alpha) and numbers."""
    name = Path(image.file).stem
    big = name == "channel" or transparent  # a transparent render is shown beside the channel's, as large
    side, quality = (SIZES.hero, SIZES.hero_quality) if big else (SIZES.render, SIZES.render_quality)
    settings = {"side": side, "quality": quality, **({"alpha": True} if transparent else {})}
    meta = page.produce(f"{name}.webp", [source], settings,
                        lambda: render_webp(source, side, quality, keep_alpha=transparent))
    shown = {"objective": name, "file": f"{name}.webp", "width": meta["width"], "height": meta["height"],
             "value": image.objective_final, "ratio": image.activation_max / best if best else None,
             "spark": charts.sparkline([-v for v in image.loss_curve])}
    if transparent:
        shown["mean_alpha"] = mean_alpha(source)
    return shown


def mean_alpha(path: Path) -> float:
    """The mean opacity of a stored RGBA render, 0 (clear) to 1 (opaque)."""
    with Image.open(path) as image:
        if "A" not in image.getbands():
            return 1.0
        return float(np.asarray(image.getchannel("A"), dtype=np.float64).mean() / 255)


def _transparent(objective: str) -> bool:
    return objective in UNIT_OBJECTIVES and UNIT_OBJECTIVES[objective].transparent


def _transparency_provenance(config: RenderConfig) -> str:
    """The sentence on how the transparent render was made: its numbers (recipe.Transparency)."""
    t = config.recipe.get("transparency", {})
    return (f"Transparent render ({t.get('version')}): an alpha channel optimised with the image, composited "
            f"every step over a random Fourier background (sd {t.get('background_sd')}); objective minus "
            f"{t.get('penalty')} x |objective| x mean alpha from {t.get('penalty_from', 0):.0%} of the steps on; "
            f"its activation is the mean over {t.get('measure_backgrounds')} seeded random backgrounds.")


def _provenance(config: RenderConfig, layer_kind: str) -> str:
    """The page's sentence on how the renders were made."""
    itself = config.optimised_layer == config.layer and layer_kind in ("conv", "block")
    return (f"Feature visualizations: recipe {config.recipe.get('name', 'lucid')} "
            f"({config.recipe.get('version')}), seed {config.seed}, "
            f"{config.steps} steps at {config.size} px, optimising {config.optimised_layer}"
            + (" itself: the graph has no pre-ReLU value of this layer (a branch without a ReLU), so a "
               "unit that is zero on the starting image gets no gradient." if itself else "."))


def _order(objective: str) -> tuple:
    """Objectives in the registry's order (channel first), unknown ones after."""
    names = list(UNIT_OBJECTIVES)
    return (names.index(objective), objective) if objective in names else (len(names), objective)


SHOWN = FeatureVisShown()
