"""How many images a render batch optimises at once: on a GPU, the most whose step fits in a share of its
memory; on a CPU, CPU_BATCH (a CPU's cores are busy with 8 already: a bigger batch only costs memory).

The memory of one step is measured, not modelled: a real step (`render_batch`, one step, no transforms)
at two probe batches, at the largest image the recipe's transforms make, with the allocator's peak read
around it. Two probes separate what grows with the batch (activations kept for the backward pass, the
images and their Adam state) from what does not (workspaces). Weights and anything else allocated before
the probe are left out: the same layer must get the same batch whatever else the process holds.

Deterministic on purpose: the budget is a share of the device's TOTAL memory, not of what is free at the
moment. A resumed build must cut a layer's units into exactly the batches an unbroken one did (a unit's
pixels depend on its batch-mates, see views/featurevis.py); free memory changes with what ran before,
total memory does not. Batches are powers of two, so measurement noise of a few bytes moves the choice
only where a layer sits right at a boundary.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from microscope.featurevis.batch import UnitBatch, render_batch
from microscope.featurevis.recipe import NO_TRANSFORMS
from microscope.featurevis.registry import UNIT_OBJECTIVES
from microscope.featurevis.transform import output_size
from microscope.network.loaded import LayerExtractor, Network

CPU_BATCH = 8
MAX_BATCH = 512  # beyond this a GPU is saturated (bench/gpu.py) and a job's progress too coarse
MEMORY_SHARE = 0.5  # of the device's total memory: the rest for the allocator's fragmentation, the diversity
                    # objective's Gram matrices (not in the probe), cuDNN's larger workspaces at larger batches
PROBES = (4, 8)  # elements of the two probe steps
ROUND_TO = 1 << 20  # bytes per element rounded up to a MiB: a few bytes of noise never change the batch


@dataclass(frozen=True)
class StepMemory:
    """The device memory one optimisation step needs: fixed + per_element x elements (bytes)."""

    fixed: int
    per_element: int


def step_memory(small: int, small_peak: int, large: int, large_peak: int) -> StepMemory:
    """The line through two probes' peaks (bytes above what was allocated before each), per element
    rounded up to ROUND_TO."""
    slope = max(large_peak - small_peak, 0) / (large - small)
    per_element = max(1, math.ceil(slope / ROUND_TO)) * ROUND_TO
    return StepMemory(fixed=max(0, large_peak - per_element * large), per_element=per_element)


def batch_for_budget(budget: int, memory: StepMemory, cap: int = MAX_BATCH) -> int:
    """The largest power of two of elements, at most `cap`, whose step fits in `budget` bytes; 1 when none
    does (the render then fails as it would have: out of memory, said by torch)."""
    fits = (budget - memory.fixed) // memory.per_element
    batch = 1
    while batch * 2 <= min(fits, cap):
        batch *= 2
    return batch


def device_budget(device: torch.device, share: float = MEMORY_SHARE) -> int:
    """`share` of the device's total memory in bytes (see the module's docstring: total, not free)."""
    return int(torch.cuda.get_device_properties(device).total_memory * share)


def probe_peak(network: Network, extractor: LayerExtractor, batch: UnitBatch) -> int:
    """Bytes one real step of `batch` (one step, its own size) allocated above what was allocated before."""
    device = network.device
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    render_batch(network, extractor, batch)
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def measured_batch_size(network: Network, extractor: LayerExtractor, template: UnitBatch, channels: int) -> int:
    """Images per batch for renders like `template` (its layer, size, recipe, precision): CPU_BATCH on a
    CPU, on CUDA the largest that fits (see the module's docstring). Costs two steps on CUDA."""
    if network.device.type != "cuda":
        return CPU_BATCH
    largest = max(output_size(template.recipe.transforms, template.size, scale)
                  for scale in template.recipe.transforms.scales)
    plain = replace(template.recipe, transforms=NO_TRANSFORMS, polish_share=0.0)
    peaks = []
    for elements in PROBES:
        units = tuple(i % channels for i in range(elements))
        probe = replace(template, objective=UNIT_OBJECTIVES["channel"], units=units, steps=1,
                        size=max(largest, template.size), recipe=plain)
        peaks.append(probe_peak(network, extractor, probe))
    memory = step_memory(PROBES[0], peaks[0], PROBES[1], peaks[1])
    return batch_for_budget(device_budget(network.device), memory)
