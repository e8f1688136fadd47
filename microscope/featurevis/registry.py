"""The objectives rendered for every unit of a layer, in one registry: name -> factory, images per unit.

No torch at import (the site and the command line read the names): a factory imports the objectives
it composes when it is called.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class UnitObjective:
    """An objective rendered per unit. `make(target, layer, units, recipe)` builds it for a batch in
    which element i serves units[i] (or, with several images per unit, a run of elements does);
    `target` is the layer optimised (the pre-ReLU twin), `layer` the layer itself."""

    name: str
    description: str
    factory: Callable
    several: bool = False  # renders `recipe.diversity_images` images per unit instead of one
    transparent: bool = False  # an RGBA image over random backgrounds (recipe.Transparency, alpha.py)

    def make(self, target: str, layer: str, units: list[int], recipe):
        from microscope.featurevis import objectives

        return self.factory(objectives, target, layer, units, recipe)

    def images(self, recipe) -> int:
        return recipe.diversity_images if self.several else 1

    def files(self, recipe, image_format: str) -> list[str]:
        if self.several:
            return [f"{self.name}-{i}.{image_format}" for i in range(self.images(recipe))]
        return [f"{self.name}.{image_format}"]


def _diverse(obj, target: str, layer: str, units: list[int], recipe):
    n = recipe.diversity_images
    return obj.channel(target, [unit for unit in units for _ in range(n)]) - recipe.diversity_weight * obj.diversity(layer, n)


UNIT_OBJECTIVES: dict[str, UnitObjective] = {objective.name: objective for objective in (
    UnitObjective("channel", "the channel's mean over all positions", lambda obj, t, l, u, r: obj.channel(t, u)),
    UnitObjective("neuron", "the channel at the centre position", lambda obj, t, l, u, r: obj.neuron(t, u)),
    UnitObjective("negative", "minus the channel's mean: what the unit is against",
                  lambda obj, t, l, u, r: -obj.channel(t, u)),
    UnitObjective("diversity", "the channel's mean, several images pushed apart in style", _diverse, several=True),
    UnitObjective("channel-alpha", "the channel's mean, with an alpha channel: what part of the image matters",
                  lambda obj, t, l, u, r: obj.channel(t, u), transparent=True),
)}

# Rendered when --objectives is not given: the transparent render costs as much again as the channel's and
# is asked for by name (and a default that stays the same keeps older stores' settings keys).
DEFAULT_OBJECTIVES = ("channel", "neuron", "negative", "diversity")
