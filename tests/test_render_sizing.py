"""The batch size of renders: from a step's measured memory and the device's total memory (CUDA), 8 on a CPU."""
import pytest
import torch

from microscope.featurevis.batch import UnitBatch, featurevis_extractor
from microscope.featurevis.recipe import RECIPES
from microscope.featurevis.registry import UNIT_OBJECTIVES
from microscope.featurevis.sizing import (CPU_BATCH, MAX_BATCH, ROUND_TO, StepMemory, batch_for_budget,
                                          measured_batch_size, step_memory)
from microscope.network.loaded import load_network

MIB, GIB = 1 << 20, 1 << 30


def test_step_memory_is_the_line_through_the_probes():
    memory = step_memory(4, 300 * MIB + 4 * 50 * MIB, 8, 300 * MIB + 8 * 50 * MIB)
    assert memory == StepMemory(fixed=300 * MIB, per_element=50 * MIB)
    # A few bytes of noise (the allocator's rounding) round up to the next MiB per element, never below.
    noisy = step_memory(4, 300 * MIB + 4 * 50 * MIB, 8, 300 * MIB + 8 * 50 * MIB + 12)
    assert noisy.per_element == 51 * MIB and noisy.per_element % ROUND_TO == 0
    assert noisy.fixed + 8 * noisy.per_element >= 300 * MIB + 8 * 50 * MIB  # still covers the large probe
    # Peaks that do not grow (a tiny layer, noise): one MiB an element, not zero or negative.
    assert step_memory(4, 100, 8, 90).per_element == ROUND_TO


@pytest.mark.parametrize("budget, memory, expected", [
    (40 * GIB, StepMemory(GIB, 50 * MIB), MAX_BATCH),  # an H100's half, a mid layer: 798 fit, the cap holds
    (4 * GIB, StepMemory(GIB, 50 * MIB), 32),  # 61 fit: the power of two below
    (GIB + 64 * 50 * MIB, StepMemory(GIB, 50 * MIB), 64),  # exactly 64 fit
    (GIB + 64 * 50 * MIB - 1, StepMemory(GIB, 50 * MIB), 32),  # one byte short of 64
    (GIB // 2, StepMemory(GIB, 50 * MIB), 1),  # not even the fixed part fits: 1 (torch says why it fails)
])
def test_batch_for_budget(budget, memory, expected):
    assert batch_for_budget(budget, memory) == expected


def test_batch_for_budget_cap():
    assert batch_for_budget(80 * GIB, StepMemory(0, MIB), cap=64) == 64


@pytest.fixture(scope="module")
def network():
    return load_network("inceptionv1-caffe", weights="random", seed=0, progress=False)


def _template(network, layer: str = "conv2") -> UnitBatch:
    return UnitBatch(layer, f"{layer}_pre_relu", UNIT_OBJECTIVES["channel"], (0,), steps=1, size=224, seed=0,
                     recipe=RECIPES["lucid"])


def test_cpu_keeps_eight(network):
    """A CPU measures nothing and takes 8 (its cores are busy with 8 already)."""
    extractor = featurevis_extractor(network, ["conv2_pre_relu", "conv2"])
    assert measured_batch_size(network, extractor, _template(network), 192) == CPU_BATCH == 8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="measures a CUDA device's memory")
def test_cuda_batch_fits_and_repeats():
    """On a GPU: a power of two up to the cap, the same when measured again (a resumed build's batches), and
    a deeper layer (more activations kept per element) never gets a larger batch than a shallow one."""
    gpu = load_network("inceptionv1-caffe", weights="random", seed=0, device="cuda", progress=False)
    sizes = []
    for layer in ("conv2", "inception_4e"):
        extractor = featurevis_extractor(gpu, [f"{layer}_pre_relu", layer])
        first = measured_batch_size(gpu, extractor, _template(gpu, layer), 192)
        assert first == measured_batch_size(gpu, extractor, _template(gpu, layer), 192)
        assert first <= MAX_BATCH and first & (first - 1) == 0
        sizes.append(first)
    assert sizes[1] <= sizes[0]
