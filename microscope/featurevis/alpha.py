"""Transparent renders: an RGBA image composited over random backgrounds, with an opacity penalty.

The numbers and why they are what they are: `Transparency` in recipe.py. Here the three pieces of work:
the seeded backgrounds, the compositing, and the penalised objective. Every background is drawn from a
seed and a step (or a measurement index) alone, one per step for the whole batch, as the transforms are:
a unit's render does not depend on which units share its batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from microscope.featurevis.param import sample_images
from microscope.featurevis.recipe import Transparency


def background(seed: int, step: int, size: tuple[int, int], sd: float) -> torch.Tensor:
    """(1, 3, H, W) on the CPU: the random background of `step` (any int) of a render seeded `seed`."""
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step & (2**63 - 1)])
                                                  .generate_state(1, np.uint64)[0] >> 1))
    return sample_images(generator, 1, size, sd)


def composite(rgba: torch.Tensor, under: torch.Tensor) -> torch.Tensor:
    """(N, 4, H, W) over (1 or N, 3, H, W) -> (N, 3, H, W): alpha * rgb + (1 - alpha) * background."""
    alpha = rgba[:, 3:4]
    return alpha * rgba[:, :3] + (1 - alpha) * under


@dataclass(frozen=True)
class AlphaSteps:
    """What a transparent render does at each step of its `steps` (all stages together)."""

    numbers: Transparency
    seed: int
    steps: int

    def composite(self, rgba: torch.Tensor, step: int) -> torch.Tensor:
        under = background(self.seed, step, tuple(rgba.shape[2:]), self.numbers.background_sd)
        return composite(rgba, to_device(under, rgba.device).to(rgba.dtype))

    def penalised(self, value: torch.Tensor, rgba: torch.Tensor, step: int) -> torch.Tensor:
        """(N,) objective minus the opacity penalty, scaled by each element's own |objective| (detached)."""
        if step < self.numbers.penalty_start(self.steps):
            return value
        opacity = rgba[:, 3].float().mean(dim=(1, 2))
        return value - self.numbers.penalty * value.detach().abs() * opacity


def to_device(cpu: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`cpu` on `device` without making the host wait for the GPU's queue: the background is drawn on the CPU
    (the same pixels on every device), and a copy from pageable memory would be a synchronisation at every
    step; from pinned memory it is queued like a kernel (torch keeps the pinned block until it is done)."""
    if device.type != "cuda":
        return cpu.to(device)
    return cpu.pin_memory().to(device, non_blocking=True)


MEASURE_STEPS = -1  # measurement backgrounds are drawn as steps -1, -2, ...: never a render step's


def measurement_backgrounds(numbers: Transparency, seed: int, size: tuple[int, int]) -> list[torch.Tensor]:
    """The seeded backgrounds a transparent render's activation is measured over (none is a step's)."""
    return [background(seed, MEASURE_STEPS - k, size, numbers.background_sd)
            for k in range(numbers.measure_backgrounds)]
