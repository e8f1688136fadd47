"""The network of a render compiled with `torch.compile` (`--compile auto|on|off`), the eager one the reference.

Only the truncated extractor is compiled: it is nearly all of a step's work, and its shapes are fixed
once the batch and the image size are (`dynamic=False`: kernels specialised to each shape, which is what
makes them faster than eager). The Fourier image, the transforms, the objective and Adam stay eager: they
are small, and the objective's closures change from batch to batch.

How many shapes a render meets, each compiled once per extractor (forward and backward):
- a recipe's transforms make one image size per scale: Lucid's 11 scales give 11 sides (212-260 px at
  224), the fast recipe's polish steps one more (the image's own side);
- a layer's last batch of an objective is usually smaller than the others (the channel objectives'
  and diversity's last batches differ: 4 images per unit), each a new set of sizes: up to 3 x 12 = 36;
- the final measurement of the saved pixels runs the eager extractor (batch.py): once, no gradient, not
  worth a compilation of its own.
The recompile limit (8 by default, after which dynamo silently runs eager) is raised to RECOMPILE_LIMIT.

The compiled network computes the same function with other kernels (fused pointwise operations, another
summation order), so its pixels differ from eager's by float rounding - as a batch size or another GPU
makes them differ (the setting is not keyed: renders made either way are reused).
"""
from __future__ import annotations

import torch
from torch import nn

COMPILE_CHOICES = ("off", "on")
RECOMPILE_LIMIT = 64  # above the 36 shapes counted in the docstring


def compiles(choice: str, device: torch.device) -> bool:
    """Whether `--compile choice` compiles on `device`. Off unless asked, on every device: each of a layer's
    shapes (about a dozen, see above) costs a compilation of tens of seconds (29 s for one shape on 2 CPU
    cores, and no faster step there), so a whole InceptionV1 would spend an hour or more compiling; whether
    the compiled step gains that back on a GPU is what bench/gpu.py's compiled row measures - not yet on one.
    `device` is asked so that a measured gain can make it the default there."""
    if choice not in COMPILE_CHOICES:
        raise ValueError(f"unknown compile choice {choice!r}; use one of: {', '.join(COMPILE_CHOICES)}")
    return choice == "on"


def compiled_extractor(extractor: nn.Module, backend: str = "inductor") -> nn.Module:
    """`extractor` compiled for fixed shapes (the same module underneath: weights are shared, not copied).
    `backend`: inductor (generated kernels); "aot_eager" traces the same graphs but runs eager kernels
    (for a test where no C++ compiler is at hand)."""
    dynamo = torch._dynamo.config
    dynamo.recompile_limit = max(dynamo.recompile_limit, RECOMPILE_LIMIT)  # process-wide: dynamo has no other place
    return torch.compile(extractor, dynamic=False, backend=backend)
