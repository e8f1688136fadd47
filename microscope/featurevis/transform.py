"""Random transforms applied before every step, so the image must work despite small changes in view.

Lucid's `standard_transforms`, with Lucid's numbers: pad 12 px with grey (0.5), jitter (random crop)
by up to 8 px, scale by one of 0.90, 0.92, ..., 1.10, rotate by one of -10..10 degrees (0 five times
more likely), jitter by up to 4 px. Without them the optimiser finds brittle high-frequency patterns.

Two deliberate differences from Lucid's code, neither changing the numbers:
- The whole chain is one resampling (`grid_sample`, bilinear) instead of a resize followed by a
  nearest-neighbour rotation: one interpolation blurs less and costs one op forward and backward.
  Pixels the rotation brings in from outside the padded image are grey like the padding (Lucid's
  rotation fills them black).
- The random choices of each step are drawn from a seeded NumPy generator, and one draw serves the
  whole batch, as in Lucid. Because the draws depend only on the seed and the step, a unit's render
  does not depend on which other units share its batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from microscope.featurevis.recipe import TransformRecipe


@dataclass(frozen=True)
class TransformDraw:
    """One step's random choices."""

    first_offset: tuple[int, int]  # (dy, dx) of the first crop, each in [0, jitter_first]
    scale: float
    angle: float  # degrees
    last_offset: tuple[int, int]  # (dy, dx) of the last crop, each in [0, jitter_last]


def draw_transforms(recipe: TransformRecipe, seed: int, steps: int) -> list[TransformDraw]:
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(steps):
        first = rng.integers(0, recipe.jitter_first + 1, size=2)
        scale = recipe.scales[rng.integers(len(recipe.scales))]
        angle = recipe.angles[rng.integers(len(recipe.angles))]
        last = rng.integers(0, recipe.jitter_last + 1, size=2)
        draws.append(TransformDraw((int(first[0]), int(first[1])), float(scale), float(angle),
                                   (int(last[0]), int(last[1]))))
    return draws


def output_size(recipe: TransformRecipe, size: int, scale: float) -> int:
    """Side of the transformed image: pad, crop, resize (truncating, as TensorFlow does), crop."""
    cropped = size + 2 * recipe.pad - recipe.jitter_first
    return math.floor(cropped * scale + 1e-6) - recipe.jitter_last


def _source_coordinates(recipe: TransformRecipe, draw: TransformDraw, height: int, width: int,
                        device: torch.device) -> torch.Tensor:
    """(1, H', W', 2) grid of where each output pixel samples the input, in grid_sample's (x, y) units."""
    cropped = (height + 2 * recipe.pad - recipe.jitter_first, width + 2 * recipe.pad - recipe.jitter_first)
    resized = tuple(math.floor(c * draw.scale + 1e-6) for c in cropped)
    out = tuple(r - recipe.jitter_last for r in resized)
    # Work in pixel units relative to image centres; index i of an n-pixel axis sits at i - (n-1)/2.
    ys = torch.arange(out[0], device=device, dtype=torch.float32) - (out[0] - 1) / 2
    xs = torch.arange(out[1], device=device, dtype=torch.float32) - (out[1] - 1) / 2
    # Undo the last crop: position in the rotated, resized image, relative to its centre.
    ys = ys + draw.last_offset[0] - recipe.jitter_last / 2
    xs = xs + draw.last_offset[1] - recipe.jitter_last / 2
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    # Undo the rotation about the centre, then the resize (its exact ratio after truncation).
    theta = math.radians(draw.angle)
    cos, sin = math.cos(theta), math.sin(theta)
    y, x = (cos * y - sin * x) * (cropped[0] / resized[0]), (sin * y + cos * x) * (cropped[1] / resized[1])
    # Undo the first crop; padding is symmetric, so the padded and original centres coincide.
    y = y + draw.first_offset[0] - recipe.jitter_first / 2
    x = x + draw.first_offset[1] - recipe.jitter_first / 2
    # To grid_sample's normalised coordinates (align_corners=False: -1 and 1 are the outer pixel edges).
    gy = (2 * (y + (height - 1) / 2) + 1) / height - 1
    gx = (2 * (x + (width - 1) / 2) + 1) / width - 1
    return torch.stack([gx, gy], dim=-1).unsqueeze(0)


def transform_images(images: torch.Tensor, draw: TransformDraw,
                     recipe: TransformRecipe = TransformRecipe()) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H', W'): the same draw applied to every element of the batch."""
    n, _, height, width = images.shape
    grid = _source_coordinates(recipe, draw, height, width, images.device).to(images.dtype)
    grid = grid.expand(n, -1, -1, -1)
    # Sampling (image - pad value) with zero padding pads with the pad value, at any distance.
    shifted = F.grid_sample(images - recipe.pad_value, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
    return shifted + recipe.pad_value
