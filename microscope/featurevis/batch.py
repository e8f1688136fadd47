"""Render one batch of units for one objective: the images and the numbers their record keeps.

Reproducibility: every element's initial spectrum is seeded from (seed, layer, unit, objective,
image index) and every step's transform from (seed, step) alone, so a unit's render does not depend
on which units share its batch, and the same batch twice gives identical pixels (on the same
machine: float rounding may differ between CPU types, thread counts and devices).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from microscope.featurevis.alpha import AlphaSteps, composite, measurement_backgrounds
from microscope.featurevis.lrn import with_fast_lrn
from microscope.featurevis.objectives import as_4d
from microscope.featurevis.registry import UnitObjective
from microscope.featurevis.param import FourierImage
from microscope.featurevis.recipe import NO_TRANSFORMS, Recipe
from microscope.featurevis.render import render
from microscope.featurevis.transform import output_size
from microscope.network.loaded import LayerExtractor, Network


def element_seed(*parts) -> int:
    """A stable 63-bit seed from any parts (Python's hash() of a str changes from run to run)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def optimised_layer(network: Network, layer: str) -> str:
    """The layer whose values are maximised: the pre-ReLU twin where there is one.

    A post-ReLU channel that is zero everywhere on the starting image has zero gradient and never
    moves (about a third of inception_4a's channels with the real weights); its pre-ReLU value always
    has a gradient.
    """
    return network.layer(layer).pre_relu or layer


def featurevis_extractor(network: Network, layers: list[str]) -> LayerExtractor:
    """The network truncated after `layers`, weights frozen, with the fast LRN (see `lrn.py`)."""
    extractor = LayerExtractor(network, [network.layer(name) for name in layers])
    extractor = with_fast_lrn(extractor).to(network.device).eval()
    return extractor.requires_grad_(False)  # no parameter gradients, ever


@dataclass(frozen=True)
class UnitBatch:
    """One `render` call: `units` of `layer` for one objective."""

    layer: str
    target: str  # the layer optimised (see optimised_layer)
    objective: UnitObjective
    units: tuple[int, ...]
    steps: int
    size: int
    seed: int
    recipe: Recipe
    autocast_dtype: torch.dtype | None = None


@dataclass
class Rendered:
    pixels: np.ndarray  # (N, H, W, 3) uint8 (4: RGBA when transparent): exactly what the saved files hold
    values: np.ndarray  # (steps, N) objective of each element before each step
    activation_mean: np.ndarray  # (N,) of the reloaded pixels on the element's unit, in `layer` (transparent:
    activation_max: np.ndarray  # (N,)   the means over the measurement backgrounds, see alpha.py)


def render_batch(network: Network, extractor: LayerExtractor, batch: UnitBatch, on_step=None,
                 step_extractor=None) -> Rendered:
    """Optimise the batch; `on_step()` after every step. Elements of a unit are consecutive.
    `step_extractor`: what the steps run instead of `extractor` (the same network compiled: compiled.py);
    the saved pixels are always measured by `extractor` itself."""
    per_unit = batch.objective.images(batch.recipe)
    seeds = [element_seed(batch.seed, batch.layer, unit, batch.objective.name, i)
             for unit in batch.units for i in range(per_unit)]
    recipe = batch.recipe
    transparent = batch.objective.transparent
    image = FourierImage(seeds, batch.size, sd=recipe.init_sd, decay_power=recipe.decay_power,
                         decorrelate=recipe.decorrelate, alpha=transparent).to(network.device)
    objective = batch.objective.make(batch.target, batch.layer, list(batch.units), recipe)
    backgrounds_seed = element_seed(batch.seed, "backgrounds")
    alpha = AlphaSteps(recipe.transparency, backgrounds_seed, batch.steps) if transparent else None
    # Lucid's steps with transforms, then the recipe's polish steps without them (none in Lucid's).
    polish = recipe.polish_steps(batch.steps)
    stages = [(0, batch.steps - polish, recipe.transforms), (batch.steps - polish, polish, NO_TRANSFORMS)]
    stepper = extractor if step_extractor is None else step_extractor
    results = [render(stepper, objective, image, steps, transform_seed=element_seed(batch.seed, "transforms"),
                      transforms=transforms, learning_rate=recipe.learning_rate,
                      autocast_dtype=batch.autocast_dtype, channels_last=True, on_step=on_step,
                      alpha=alpha, first_step=first)
               for first, steps, transforms in stages if steps]
    values = np.concatenate([result.values for result in results])
    pixels = (results[-1].images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    # Measure the saved pixels, not the float image: what a reader reloads is what is reported.
    reloaded = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255).to(network.device)
    views = [reloaded] if not transparent else [
        composite(reloaded, under.to(network.device))
        for under in measurement_backgrounds(recipe.transparency, backgrounds_seed, (batch.size, batch.size))]
    channels = [unit for unit in batch.units for _ in range(per_unit)]
    means, maxima = zip(*(unit_response(extractor, view, batch.layer, channels) for view in views))
    return Rendered(pixels, values, np.mean(means, axis=0), np.mean(maxima, axis=0))


def unit_response(extractor: LayerExtractor, images: torch.Tensor, layer: str,
                  channels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Each image's channel mean and spatial maximum of its own channel `channels[i]` of `layer`."""
    with torch.no_grad():
        activation = as_4d(extractor(images)[layer]).float()
    response = activation[torch.arange(len(channels)), torch.tensor(channels)].flatten(1)
    return response.mean(dim=1).cpu().numpy(), response.max(dim=1).values.cpu().numpy()


def step_seconds(network: Network, extractor: LayerExtractor, batch: UnitBatch, steps: int = 5,
                 step_extractor=None) -> float:
    """Seconds per optimisation step of `batch` on this machine: the median of `steps` real steps (the first
    warms up allocators and kernels), made without transforms and scaled by `relative_pixels` - each new
    image size costs the convolution libraries a slow first step, and a few transformed steps would all
    be such. `step_extractor`: as render_batch's (a compiled network compiles in the first step, not
    counted). Writes nothing."""
    marks = []

    def mark():
        if network.device.type == "cuda":
            torch.cuda.synchronize(network.device)  # CUDA returns before the step is done
        marks.append(time.perf_counter())
    plain = replace(batch.recipe, transforms=NO_TRANSFORMS, polish_share=0.0)
    render_batch(network, extractor, replace(batch, steps=steps, recipe=plain), on_step=mark,
                 step_extractor=step_extractor)
    return float(np.median(np.diff(marks))) * relative_pixels(batch.recipe, batch.size, batch.steps)


def relative_pixels(recipe: Recipe, size: int, steps: int) -> float:
    """The pixels the network sees in an average step of the recipe, relative to the image's own."""
    transformed = np.mean([output_size(recipe.transforms, size, scale) ** 2 for scale in recipe.transforms.scales])
    polish = recipe.polish_steps(steps)
    return ((steps - polish) * transformed + polish * size * size) / (steps * size * size)
