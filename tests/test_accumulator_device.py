"""The examples pass's accumulators as a GPU runs them (`sync_free`): nothing read back to the host per
batch, and exactly the state of the CPU's sparse paths, batch for batch - top and bottom k with their
positions, band samples, histograms whose range grows, the concepts' maxima, the units' correlation."""
import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from microscope.activations.correlation import Correlation
from microscope.activations.maxima import ImageMaxima, sampled_images
from microscope.examples.accumulator import LayerAccumulator
from microscope.examples.bands import EMPTY, BandSampler
from microscope.examples.histogram import GridHistogram

READ_BACK = {"item", "cpu", "tolist", "numpy", "nonzero", "__bool__", "__float__", "__int__", "__index__",
             "__array__"}


class ReadBacks(TorchFunctionMode):
    """Every READ_BACK call on a tensor other than the batch's indices (host data from the loader: reading
    them costs no wait for a device)."""

    def __init__(self):
        super().__init__()
        self.host, self.calls = [], []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READ_BACK and not (args and any(args[0] is tensor for tensor in self.host)):
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


def stream(n=60, channels=7, height=5, width=4, seed=0):
    """Activations whose range grows late (the histograms re-grid), with a dead channel and ties."""
    torch.manual_seed(seed)
    pre = torch.randn(n, channels, height, width) * torch.linspace(0.1, 30, channels)[None, :, None, None] + 2.0
    pre[n // 2:n // 2 + 6, 3] *= 100
    pre[:, 5] = -1.0
    pre[:, 6] = pre[:, 6].round()  # many equal values: ties in argmax and in the top k
    return pre.contiguous(memory_format=torch.channels_last)


def cuts(n, sizes, rng):
    out, start = [], 0
    while start < n:
        size = int(rng.choice(sizes))
        out.append((start, min(n, start + size)))
        start += size
    rng.shuffle(out)
    return out


def accumulator(sync_free, channels, width, n, twin=True, **extra):
    return LayerAccumulator(channels, width, top_k=5, histogram_bins=16, band_bins=8, band_samples=3, seed=2,
                            exact_twin=twin, sync_free=sync_free,
                            maxima=ImageMaxima(sampled_images(n, 25, channels, 1), channels),
                            correlation=Correlation(channels, 3, 1, 5, width), **extra)


def run(sync_free, pre, parts, twin="exact"):
    n, channels, _, width = pre.shape
    state = accumulator(sync_free, channels, width, n, twin=twin != "inexact")
    for first, last in parts:
        post = pre[first:last].relu()
        if twin == "inexact":  # a TopK code: zero where pre is positive too
            post = post * (torch.arange(channels) % 2 == 0)[None, :, None, None]
        state.update(post, None if twin == "none" else pre[first:last], torch.arange(first, last))
    return state


def same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        left, right = np.asarray(a[name]), np.asarray(b[name])
        if name.endswith("bands/payload"):  # an empty keeper slot's payload means nothing
            full = np.asarray(a[name.replace("payload", "key")]) != EMPTY
            left, right = left[full], right[full]
        assert left.dtype == right.dtype and np.array_equal(left, right, equal_nan=left.dtype.kind == "f"), name


@pytest.mark.parametrize("twin", ["exact", "none", "inexact"])
@pytest.mark.parametrize("sizes", [[7], [1, 13, 40]])
def test_sync_free_state_equals_the_sparse_paths(twin, sizes):
    pre = stream()
    parts = cuts(len(pre), sizes, np.random.default_rng(len(sizes)))
    sparse, dense = run(False, pre, parts, twin), run(True, pre, parts, twin)
    same_state(sparse.state_arrays(), dense.state_arrays())
    for name, array in sparse.summary().items():
        assert np.array_equal(array, dense.summary()[name], equal_nan=array.dtype.kind == "f"), name


@pytest.mark.parametrize("case", ["normal", "growing", "narrow-far-from-zero", "constant"])
def test_sync_free_histogram_equals_the_searching_one(case):
    rng = np.random.default_rng(1)
    values = rng.normal(size=(300, 4)).astype(np.float32)
    if case == "growing":
        values = values * np.linspace(1e-4, 1e3, 300, dtype=np.float32)[:, None]
    elif case == "narrow-far-from-zero":
        values = (1000 + values * 1e-3).astype(np.float32)
    elif case == "constant":
        values[:] = -0.75
    found = []
    for sync_free in (False, True):
        histogram = GridHistogram(4, 16, sync_free=sync_free)
        for first, last in cuts(300, [1, 9, 60], np.random.default_rng(3)):
            histogram.update(torch.from_numpy(values[first:last]))
        found.append(histogram.state_dict())
    for name in found[0]:
        assert torch.equal(found[0][name], found[1][name]), name


def test_sync_free_bands_equal_the_sparse_ones():
    rng = np.random.default_rng(2)
    scores = rng.gamma(2.0, size=(400, 5)).astype(np.float32)
    scores[:, 1] = np.maximum(scores[:, 1] - 3, 0)
    positions = torch.from_numpy(rng.integers(0, 99, size=(400, 5)))
    picked = []
    for sync_free in (False, True):
        sampler = BandSampler(5, bins=16, per_bin=4, seed=3, sync_free=sync_free)
        for first, last in cuts(400, [1, 30, 120], np.random.default_rng(4)):
            table = positions[first:last]
            sampler.update(torch.from_numpy(scores[first:last]), torch.arange(first, last),
                           lambda rows, channels, table=table: table[rows, channels])
        picked.append(sampler.select())
    for name, array in picked[0].items():
        assert np.array_equal(array, picked[1][name], equal_nan=True), name


@pytest.mark.parametrize("twin", ["exact", "none", "inexact"])
def test_sync_free_updates_read_nothing_back(twin):
    """A GPU's host queues the next batch while the device works only if no update waits for a value; the
    CPU's sparse paths do read back (which shows the counter sees them)."""
    pre = stream()
    counted = {}
    for sync_free in (False, True):
        n, channels, _, width = pre.shape
        state = accumulator(sync_free, channels, width, n, twin=twin != "inexact")
        state.update(pre[:10].relu(), pre[:10], torch.arange(10))  # shapes and first-batch state
        mode = ReadBacks()
        with mode:
            for first in range(10, n, 10):
                indices = torch.arange(first, min(n, first + 10))
                mode.host.append(indices)
                post = pre[first:first + 10].relu()
                state.update(post, None if twin == "none" else pre[first:first + 10], indices)
        counted[sync_free] = mode.calls
    assert counted[False], "the sparse paths read back; the counter must see them"
    assert counted[True] == []


def test_sync_free_update_notes_non_finite_values_and_raises_at_the_checkpoint():
    pre = stream()
    n, channels, _, width = pre.shape
    state = accumulator(True, channels, width, n)
    pre[3, 2, 1, 1] = float("nan")
    state.update(pre[:10].relu(), pre[:10], torch.arange(10))  # no read-back, so no error yet
    with pytest.raises(ValueError, match="inf or nan"):
        state.state_arrays()
