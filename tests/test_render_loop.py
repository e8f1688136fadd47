"""The render loop as a GPU needs it: no step waits for the host (no value read back, no tensor made from
Python data), and the compiled network renders what the eager one does."""
import traceback
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from microscope.featurevis import objectives as obj
from microscope.featurevis.alpha import AlphaSteps
from microscope.featurevis.batch import UnitBatch, featurevis_extractor, render_batch
from microscope.featurevis.compiled import compiled_extractor, compiles
from microscope.featurevis.param import FourierImage
from microscope.featurevis.recipe import RECIPES, TransformRecipe
from microscope.featurevis.registry import UNIT_OBJECTIVES
from microscope.featurevis.render import render
from microscope.network.loaded import load_network

# What makes a CUDA host wait for the device (a value read back), or the device for the host (a tensor
# made from Python or NumPy data, copied over at every step).
READ_BACK = {"item", "cpu", "tolist", "numpy", "nonzero", "__bool__", "__float__", "__int__", "__index__"}
MADE_FROM_DATA = {"tensor", "as_tensor", "from_numpy"}


class HostCalls(TorchFunctionMode):
    """Every call of READ_BACK or MADE_FROM_DATA (from Python data), with the steps finished before it
    (`step()` counts them). Calls made by torch.optim are left out: Adam's step counter is a CPU tensor by
    design (capturable=False), its `.item()` touches no device."""

    def __init__(self):
        super().__init__()
        self.steps, self.calls = 0, []

    def step(self):
        self.steps += 1

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        from_data = name in MADE_FROM_DATA and not (args and isinstance(args[0], torch.Tensor))
        if (name in READ_BACK or from_data) and not _from_optimizer():
            self.calls.append((self.steps, name))
        return func(*args, **(kwargs or {}))

    def inside_loop(self) -> list:
        """The calls after the first step and before the last: what every step of the loop does."""
        return [(step, name) for step, name in self.calls if 1 <= step < self.steps]


def _from_optimizer() -> bool:
    return any("/torch/optim/" in frame.filename.replace("\\", "/") for frame in traceback.extract_stack())


@pytest.fixture(scope="module")
def network():
    return load_network("inceptionv1-caffe", weights="random", seed=0, progress=False)


def test_mode_sees_what_it_must(network):
    """The counter itself: a `.item()` or a tensor from a list inside the loop is caught (else the test
    below would pass for nothing)."""
    mode = HostCalls()
    with mode:
        for _ in range(3):
            torch.ones(2).sum().item()
            torch.as_tensor([1, 2])
            torch.ones(2).tolist()
            mode.step()
    assert {name for _, name in mode.inside_loop()} == {"item", "as_tensor", "tolist"}


@pytest.mark.parametrize("transparent", [False, True])
def test_no_host_calls_in_the_step_loop(network, transparent):
    """A transformed render of two objectives (channels and diversity), transparent or not: between its
    first and last step nothing is read back and nothing is made from Python data."""
    extractor = featurevis_extractor(network, ["conv2_pre_relu", "conv2"])
    units = [3, 3, 5, 5]
    objective = obj.channel("conv2_pre_relu", units) - 10 * obj.diversity("conv2", 2)
    objective = objective + obj.direction("conv2", torch.rand(192), cossim_pow=1.0) * 0.1
    image = FourierImage([1, 2, 3, 4], 32, alpha=transparent)
    alpha = AlphaSteps(RECIPES["lucid"].transparency, 7, 4) if transparent else None
    mode = HostCalls()
    with mode:
        result = render(extractor, objective, image, 4, transform_seed=0, on_step=mode.step, alpha=alpha)
    assert mode.steps == 4 and result.values.shape == (4, 4)
    assert mode.inside_loop() == []
    assert any(name == "cpu" for step, name in mode.calls if step == 4)  # the end reads back, once


ONE_SIZE = replace(TransformRecipe(), scales=(1.0,))  # jitter and rotation, one output size: one compilation


def _batch(network, recipe):
    return UnitBatch("conv2", "conv2_pre_relu", UNIT_OBJECTIVES["channel"], (0, 1, 2, 3), steps=4, size=32, seed=0,
                     recipe=recipe)


def test_compiled_renders_what_eager_renders(network):
    """The same batch (conv2, 32 px, 4 transformed steps) rendered through the eager and the compiled
    network (inductor: generated C++ kernels on a CPU): the values within 1e-4 relative and the pixels
    within 2 of 255. Here they come out identical (the convolutions are the same oneDNN calls either way);
    the tolerance is for where they need not be: generated kernels may fuse and sum in another order (on a
    GPU, in bf16), and Adam's first steps (about lr x the gradient's sign) make a rounding difference of a
    near-zero gradient a visible one. Some 20-60 s on two busy cores: nearly all of it the C++ compiler."""
    recipe = replace(RECIPES["lucid"], transforms=ONE_SIZE)
    extractor = featurevis_extractor(network, ["conv2_pre_relu", "conv2"])
    eager = render_batch(network, extractor, _batch(network, recipe))
    torch._dynamo.reset()
    compiled = render_batch(network, extractor, _batch(network, recipe), step_extractor=compiled_extractor(extractor))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # compiled indeed, not run eager
    np.testing.assert_allclose(compiled.values, eager.values, rtol=1e-4, atol=1e-5)
    assert np.abs(compiled.pixels.astype(int) - eager.pixels.astype(int)).max() <= 2
    np.testing.assert_allclose(compiled.activation_mean, eager.activation_mean, rtol=1e-3, atol=1e-4)
    assert not np.array_equal(eager.values[0], eager.values[-1])  # the render moved: the agreement means something


def test_compile_choice():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert (compiles("off", cpu), compiles("off", cuda)) == (False, False)
    assert (compiles("on", cpu), compiles("on", cuda)) == (True, True)
    with pytest.raises(ValueError):
        compiles("auto", cpu)
