"""DeepDream: each photo pushed, by gradient ascent on its own pixels, to excite a layer (numbers: recipe.py).

The photos of a batch are dreamt together but independently: each one's step is its own gradient divided by its
own mean absolute value, and the circular shift of each step (seeded from the seed, octave and step) is the
same for all, so a photo's dream does not depend on the rest of the set.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from microscope.caricature.recipe import DeepDreamRecipe
from microscope.featurevis.objectives import as_4d


def resized(images: torch.Tensor, side: int) -> torch.Tensor:
    if images.shape[-1] == side:
        return images
    return F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False, antialias=True)


def deepdream(extractor, layer: str, photos: torch.Tensor, recipe: DeepDreamRecipe, seed: int,
              autocast_dtype=None, on_step=None) -> np.ndarray:
    """`photos` (N, 3, S, S) in [0, 1]; returns the dreams as (N, S, S, 3) uint8."""
    device, size = photos.device, photos.shape[-1]
    sides = recipe.sides(size)
    bases = [resized(photos, side) for side in sides]
    detail = torch.zeros_like(bases[0])
    for octave, base in enumerate(bases):
        detail = resized(detail, base.shape[-1])
        x = (base + detail).clamp(0, 1)
        rng = np.random.default_rng([seed, octave])
        for _ in range(recipe.steps):
            dy, dx = (int(v) for v in rng.integers(-recipe.jitter, recipe.jitter + 1, size=2))
            x = x.detach().requires_grad_(True)
            shifted = torch.roll(x, shifts=(dy, dx), dims=(2, 3)).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                activation = extractor(shifted)[layer]
            (gradient,) = torch.autograd.grad(as_4d(activation).float().pow(2).sum(), x)
            scale = gradient.abs().mean(dim=(1, 2, 3), keepdim=True).clamp(min=1e-12)
            x = (x + recipe.step * gradient / scale).clamp(0, 1)
            if on_step is not None:
                on_step()
        detail = x.detach() - base
    return (x.detach().float() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
