"""The optimisation loop: one batch of images, one objective, a fixed number of Adam steps.

Speed comes from the shape of the work rather than tricks inside the loop: the caller renders many
units in one batch (one element each), the extractor stops after the deepest layer the objective
reads, the network's weights are frozen (no parameter gradients), inputs are channels_last (faster
convolutions on CPU and on tensor cores), and on CUDA the network runs under bf16 autocast while the
image parameters, the objective and Adam stay in float32. The objective is summed over the batch;
elements have separate parameters, so each gets exactly the gradient of its own objective.

A transparent image (`alpha`, see alpha.py) is composited over the step's random background before the
transforms, and its objective carries the opacity penalty once the penalty's step has come.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from microscope.errors import UsageError
from microscope.featurevis.alpha import AlphaSteps
from microscope.featurevis.objectives import Objective
from microscope.featurevis.param import FourierImage
from microscope.featurevis.recipe import PRECISIONS, TransformRecipe
from microscope.featurevis.transform import draw_transforms, transform_images



def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for the network, or None for plain float32."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; use one of: {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    # auto: bf16 where the hardware has fast bf16 units (CUDA); on CPUs without AMX it is slower than fp32.
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


@dataclass
class RenderResult:
    images: torch.Tensor  # (N, 3, H, W) float32 in [0, 1] (N, 4, H, W: RGBA when transparent), on the CPU
    values: np.ndarray  # (steps, N) objective value of each element before each step (penalty included)


def render(extractor: nn.Module, objective: Objective, image: FourierImage, steps: int, *,
           transform_seed: int, transforms: TransformRecipe = TransformRecipe(), learning_rate: float = 0.05,
           autocast_dtype: torch.dtype | None = None, channels_last: bool = True,
           on_step=None, alpha: AlphaSteps | None = None, first_step: int = 0) -> RenderResult:
    """Maximise `objective` over `image`'s parameters; `on_step()` is called after each step (progress).
    `first_step`: this call's first step in the whole render (a later stage's), for `alpha`'s schedule."""
    device = image.spectrum.device
    optimizer = torch.optim.Adam(image.parameters(), lr=learning_rate)
    values = []
    plain = transforms.identity  # the image goes in as it is (the fast recipe's polish steps)
    for step, draw in enumerate(draw_transforms(transforms, transform_seed, steps), start=first_step):
        optimizer.zero_grad(set_to_none=True)
        x = rgba = image()
        if alpha is not None:
            x = alpha.composite(rgba, step)
        x = x if plain else transform_images(x, draw, transforms)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            activations = extractor(x)
        value = objective(activations)
        if alpha is not None:
            value = alpha.penalised(value, rgba, step)
        (-value.sum()).backward()
        optimizer.step()
        values.append(value.detach())
        if on_step is not None:
            on_step()
    with torch.no_grad():
        images = image().float().cpu()
    return RenderResult(images=images, values=torch.stack(values).float().cpu().numpy())
