"""The feature visualization view's show half: a unit's renders on its page (no torch).

The channel objective is shown large and the others small, each with its loss curve as a sparkline and
how much more it excites the unit than the best dataset image does - a number only the site can
compute, where both results (this view's and the examples view's) are known.
"""
from __future__ import annotations

from pathlib import Path

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
            return Panel(data={"renders": []}, json={}, provenance=[])
        folder = data.folder / str(unit)
        best = page.facts.get("dataset_max")  # the unit's best dataset example (examples view)
        renders, thumb = [], None
        for record in sorted(records.values(), key=lambda r: _order(r.objective)):
            for image in record.images:
                name = Path(image.file).stem
                big = name == "channel"
                side, quality = (SIZES.hero, SIZES.hero_quality) if big else (SIZES.render, SIZES.render_quality)
                source = folder / image.file
                meta = page.produce(f"{name}.webp", [source], {"side": side, "quality": quality},
                                    lambda s=source, d=side, q=quality: render_webp(s, d, q))
                curve = [-v for v in image.loss_curve]
                renders.append({"objective": name, "file": f"{name}.webp", "width": meta["width"],
                                "height": meta["height"], "value": image.objective_final,
                                "ratio": image.activation_max / best if best else None,
                                "spark": charts.sparkline(curve)})
                if thumb is None:
                    thumb = Thumb(source, 0, "feature visualization")
        config = next(iter(records.values())).config
        json_block = {
            "renders": {r["objective"]: r["file"] for r in renders},
            "objective_final": {r["objective"]: r["value"] for r in renders},
            "activation_ratio": {r["objective"]: r["ratio"] for r in renders if r["ratio"] is not None},
            "config": {k: v for k, v in to_json(config).items() if k != "recipe"},
            "recipe": config.recipe,
        }
        return Panel(data={"renders": renders}, json=json_block, provenance=[_provenance(config, page.layer.kind)],
                     settings={"featurevis": {**to_json(config), "objectives": sorted(records)}}, thumb=thumb,
                     summary={"featurevis": {r["objective"]: r["file"] for r in renders}})

    def layer_json(self, data: LayerRenders) -> dict:
        some = next(iter(next(iter(data.units.values())).values()))
        return {"config": to_json(some.config), "units": len(data.units)}


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
