"""A caricature of each photo at a layer: images optimised, from noise, to match and exaggerate the photos'
activations there (the objective and its numbers: recipe.py).

Each element of the batch is one photo's caricature with its own seeded spectrum; every step draws one
transform (seeded from the seed and the step alone, as unit renders do), applies it to the images and to the
photos alike, and maximises each element's objective against its own photo's transformed activations. The
photos' activations need no gradient: they are computed apart, without one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from microscope.caricature.recipe import CaricatureRecipe
from microscope.featurevis.batch import element_seed
from microscope.featurevis.objectives import as_4d
from microscope.featurevis.param import FourierImage
from microscope.featurevis.recipe import NO_TRANSFORMS
from microscope.featurevis.transform import draw_transforms, transform_images


def dot_cossim(image: torch.Tensor, photo: torch.Tensor, power: float, floor: float) -> torch.Tensor:
    """(N,): dot(a, p) * max(floor, cos(a, p))^power of each element's activations a and its photo's p, both
    flattened over channels and positions."""
    a, p = as_4d(image).float().flatten(1), as_4d(photo).float().flatten(1)
    dot = (a * p).sum(dim=1)
    if power == 0:
        return dot
    cos = dot / (a.norm(dim=1) * p.norm(dim=1)).clamp(min=1e-8)
    return dot * cos.clamp(min=floor) ** power


@dataclass
class Caricatures:
    pixels: np.ndarray  # (N, H, W, 3) uint8: what the stored files hold
    values: np.ndarray  # (steps, N) objective of each element before each step


def caricatures(extractor, layer: str, photos: torch.Tensor, recipe: CaricatureRecipe, steps: int, seeds: list[int],
                transform_seed: int, autocast_dtype=None, on_step=None) -> Caricatures:
    """`photos` (N, 3, S, S) in [0, 1] on the extractor's device; one caricature each, seeded by `seeds`."""
    image_recipe = recipe.image
    device = photos.device
    size = photos.shape[-1]
    image = FourierImage(seeds, size, sd=image_recipe.init_sd, decay_power=image_recipe.decay_power,
                         decorrelate=image_recipe.decorrelate).to(device)
    polish = image_recipe.polish_steps(steps)
    values = []

    def activations(x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            return extractor(x)[layer]

    for count, transforms in ((steps - polish, image_recipe.transforms), (polish, NO_TRANSFORMS)):
        if not count:
            continue
        optimizer = torch.optim.Adam(image.parameters(), lr=image_recipe.learning_rate)  # fresh for the polish
        plain = transforms.identity
        if plain:  # the photos as they are: their activations are the same at every step
            with torch.no_grad():
                target = activations(photos)
        for draw in draw_transforms(transforms, transform_seed, count):
            if not plain:
                with torch.no_grad():
                    target = activations(transform_images(photos, draw, transforms))
            optimizer.zero_grad(set_to_none=True)
            x = image() if plain else transform_images(image(), draw, transforms)
            value = dot_cossim(activations(x), target, recipe.cossim_pow, recipe.cossim_floor)
            (-value.sum()).backward()
            optimizer.step()
            values.append(value.detach())  # kept on the device: no synchronisation per step
            if on_step is not None:
                on_step()
    with torch.no_grad():
        pixels = (image().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return Caricatures(pixels, torch.stack(values).float().cpu().numpy())


def caricature_seeds(seed: int, layer: str, keys: list[str]) -> list[int]:
    """Each photo's caricature starts from its own noise: a photo's image does not depend on the rest of the set."""
    return [element_seed(seed, layer, key, "caricature") for key in keys]
