"""Activation vectors to train an SAE on: random positions of every image, away from the edges.

Positions within `edge` steps of the grid's border are never sampled: their receptive fields hang
over the zero padding, and what a layer does there is not what it does inside an image. The
positions of image i are drawn from a generator seeded by (seed, i) alone, and whether image i is
held out for evaluation by a seeded permutation of the image indices, so the same images give the
same vectors however the work is split. Vectors are post-ReLU values: what the next layer reads,
and what the neuron's own dataset examples rank.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from microscope.errors import UsageError


@dataclass(frozen=True)
class SampleSettings:
    positions_per_image: int = 16
    edge: int = 1  # grid positions left out along each border
    held_out: float = 0.1  # fraction of images kept for evaluation
    seed: int = 0

    def check(self, layer: str, height: int, width: int) -> None:
        """Whether this layer's grid can give the positions asked for (at least one: the SAE's settings
        declare that range, microscope/views/sae.py)."""
        if not 0 < self.held_out < 1:
            raise UsageError(f"the held-out fraction must lie between 0 and 1, got {self.held_out}")
        inner = max(0, height - 2 * self.edge) * max(0, width - 2 * self.edge)
        if inner == 0:
            raise UsageError(f"layer {layer} is too small to sample: its {height}x{width} grid has no position "
                             f"{self.edge} or more steps from the edge; choose a layer with a larger grid")
        if self.positions_per_image > inner:
            raise UsageError(f"layer {layer} has {inner} positions away from the edge of its {height}x{width} grid, "
                             f"fewer than --positions-per-image {self.positions_per_image}; ask for {inner} or fewer")


def held_out_images(n_images: int, fraction: float, seed: int) -> np.ndarray:
    """(n_images,) bool: the images kept for evaluation (at least one when there are two or more)."""
    count = min(n_images - 1, max(1, math.ceil(fraction * n_images))) if n_images > 1 else 0
    chosen = np.zeros(n_images, dtype=bool)
    chosen[np.random.default_rng([seed, 1]).permutation(n_images)[:count]] = True
    return chosen


def positions(image: int, height: int, width: int, settings: SampleSettings) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) of the positions sampled in image `image`, distinct, none near the edge."""
    inner_h, inner_w = height - 2 * settings.edge, width - 2 * settings.edge
    flat = np.random.default_rng([settings.seed, 0, image]).choice(inner_h * inner_w, settings.positions_per_image,
                                                                   replace=False)
    return flat // inner_w + settings.edge, flat % inner_w + settings.edge


def batch_positions(indices, height: int, width: int, settings: SampleSettings) -> tuple[np.ndarray, ...]:
    """(row in the batch, image, y, x) of every sampled position of a batch of images `indices` (host data)."""
    ys, xs, images = [], [], []
    for image in np.asarray(indices).tolist():
        y, x = positions(image, height, width, settings)
        ys.append(y)
        xs.append(x)
        images.append(np.full(len(y), image))
    batch = np.repeat(np.arange(len(images)), settings.positions_per_image)
    return batch, np.concatenate(images), np.concatenate(ys), np.concatenate(xs)


def sampled_vectors(activation: torch.Tensor, indices, settings: SampleSettings) -> torch.Tensor:
    """A batch's sampled vectors (n*P, C), left on the activation's device: the positions are made on the
    host from the indices and copied over, nothing is read back."""
    _, _, height, width = activation.shape
    batch, _, y, x = batch_positions(indices, height, width, settings)
    return _gathered(activation, batch, y, x)


def _gathered(activation: torch.Tensor, batch: np.ndarray, y: np.ndarray, x: np.ndarray) -> torch.Tensor:
    """activation[batch, :, y, x] for host positions, copied over to the activation's device."""
    where = torch.from_numpy(np.stack([batch, y, x])).to(activation.device, non_blocking=True)
    return activation[where[0], :, where[1], where[2]]


def vectors_of(activation: torch.Tensor, indices: torch.Tensor, settings: SampleSettings) -> tuple[np.ndarray, ...]:
    """A batch's sampled vectors on the host: (vectors (n*P, C) float32, image (n*P,), y, x)."""
    _, _, height, width = activation.shape
    batch, images, y, x = batch_positions(indices.cpu(), height, width, settings)
    return _gathered(activation, batch, y, x).float().cpu().numpy(), images, y, x
