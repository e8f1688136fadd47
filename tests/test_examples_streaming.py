"""The streaming accumulators of the examples stage against brute force on whole tensors."""
import numpy as np
import pytest
import torch

from microscope.examples.accumulator import LayerAccumulator, Locator, first_argmax, first_argmin
from microscope.examples.bands import BandSampler, priorities
from microscope.examples.histogram import GridHistogram
from microscope.examples.topk import TopExamples, pack, unpack


def batches(n: int, sizes, rng) -> list[np.ndarray]:
    """Index chunks covering range(n) with varying sizes, in a shuffled order."""
    cuts, start = [], 0
    while start < n:
        size = int(rng.choice(sizes))
        cuts.append(np.arange(start, min(n, start + size)))
        start += size
    rng.shuffle(cuts)
    return cuts


def locator(positions: np.ndarray):
    """The `locate(rows, channels)` of a batch whose payloads are known in advance."""
    table = torch.from_numpy(np.asarray(positions, dtype=np.int64))
    return lambda rows, channels: table[rows, channels]


def brute_top(scores: np.ndarray, k: int, descending: bool = True) -> np.ndarray:
    """Per channel, indices of the k best scores; ties go to the lower index."""
    order = []
    for column in scores.T:
        primary = -column if descending else column
        order.append(np.lexsort((np.arange(len(column)), primary))[:k])
    return np.array(order)


def test_pack_orders_by_score_then_lower_index():
    scores = torch.tensor([-np.inf, -3.5, -0.0, 0.0, 1e-30, 2.0, 2.0, np.inf], dtype=torch.float32)
    indices = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0])
    keys = pack(scores, indices)
    back_scores, back_indices = unpack(keys)
    assert torch.equal(back_indices, indices)
    assert torch.equal(back_scores, scores + 0.0)  # -0.0 comes back as 0.0
    order = torch.argsort(keys, descending=True)
    # inf, the two 2.0 (index 1 before 2), 1e-30, the zeros (-0.0 is 0.0: index 4 before 5), -3.5, -inf.
    assert indices[order].tolist() == [0, 1, 2, 3, 4, 5, 6, 7]


def test_top_examples_match_brute_force_with_ties_in_any_batch_order():
    rng = np.random.default_rng(0)
    n, channels, k = 61, 7, 10
    scores = rng.integers(-3, 4, size=(n, channels)).astype(np.float32)  # many ties
    scores[:, 0] = 0.0  # a channel that is all ties
    positions = rng.integers(0, 50, size=(n, channels))
    top = TopExamples(channels, k)
    for chunk in batches(n, [1, 5, 8, 13], rng):
        top.update(torch.from_numpy(scores[chunk]), torch.from_numpy(chunk), locator(positions[chunk]))
    expected = brute_top(scores, k)
    assert np.array_equal(top.index.numpy(), expected)
    assert np.array_equal(top.values.numpy(), np.take_along_axis(scores.T, expected, 1))
    assert np.array_equal(top.position.numpy(), np.take_along_axis(positions.T, expected, 1))


def test_top_examples_pad_with_minus_one_when_fewer_images_than_k():
    top = TopExamples(3, 5)
    top.update(torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, -1.0]]), torch.tensor([10, 11]), locator(np.zeros((2, 3))))
    assert top.index[:, :2].tolist() == [[11, 10], [10, 11], [10, 11]]
    assert (top.index[:, 2:] == -1).all() and torch.isneginf(top.values[:, 2:]).all()


def brute_histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of values in (edges[i], edges[i + 1]], compared exactly in float64."""
    v = values.astype(np.float64)[:, None]
    return ((v > edges[None, :-1]) & (v <= edges[None, 1:])).sum(0)


@pytest.mark.parametrize("case", ["normal", "relu", "narrow-far-from-zero", "growing", "constant"])
def test_histogram_counts_are_exact_and_independent_of_batching(case):
    rng = np.random.default_rng(1)
    n, channels, bins = 300, 4, 16
    values = rng.normal(size=(n, channels)).astype(np.float32)
    if case == "relu":
        values = np.maximum(values, 0)
    elif case == "narrow-far-from-zero":
        values = (1000 + values * 1e-3).astype(np.float32)
    elif case == "growing":
        values = values * np.linspace(1e-4, 1e3, n, dtype=np.float32)[:, None]
    elif case == "constant":
        values[:] = -0.75
    states = []
    for sizes in ([7], [1, 50, 300]):
        histogram = GridHistogram(channels, bins)
        for chunk in batches(n, sizes, rng):
            histogram.update(torch.from_numpy(values[chunk]))
        states.append(histogram)
        edges = histogram.edges().numpy()
        for c in range(channels):
            assert np.array_equal(histogram.counts[c].numpy(), brute_histogram(values[:, c], edges[c]))
        assert (histogram.counts.sum(1) == n).all()
        positive = histogram.positive_counts().numpy()
        assert np.array_equal(positive, (values > 0).sum(0))
    for name in ("counts", "exponent", "low"):
        assert torch.equal(getattr(states[0], name), getattr(states[1], name)), name
    used = (states[0].counts > 0).sum(1)
    if case != "constant":
        assert (used >= bins // 4).all(), "the grid should spread the values over the bins"


def test_histogram_rejects_nan():
    histogram = GridHistogram(2, 8)
    with pytest.raises(ValueError, match="inf or nan"):
        histogram.update(torch.tensor([[1.0, float("nan")]]))


def test_band_samples_are_exactly_the_lowest_priorities_of_their_band_in_any_order():
    rng = np.random.default_rng(2)
    n, channels, per_bin = 500, 5, 4
    scores = rng.gamma(2.0, size=(n, channels)).astype(np.float32)
    scores[:, 1] = np.maximum(scores[:, 1] - 3, 0)  # many exact zeros, like a ReLU channel
    positions = rng.integers(0, 99, size=(n, channels))
    results = []
    for sizes in ([9], [1, 64, 200]):
        sampler = BandSampler(channels, bins=16, per_bin=per_bin, seed=3)
        for chunk in batches(n, sizes, rng):
            sampler.update(torch.from_numpy(scores[chunk]), torch.from_numpy(chunk), locator(positions[chunk]))
        results.append(sampler.select())
    first = results[0]
    for name, array in first.items():
        assert np.array_equal(array, results[1][name], equal_nan=True), name
    keys = priorities(3, channels, torch.arange(n)).numpy()
    total = 0
    for c in range(channels):
        for b in range(first["count"].shape[1]):
            low, high = first["value_range"][c, b]
            members = np.flatnonzero((scores[:, c] > low) & (scores[:, c] <= high))
            assert first["count"][c, b] == members.size
            if not members.size:
                continue
            total += 1
            expected = members[np.argsort(keys[members, c])[:per_bin]]
            got = first["index"][c, b][first["index"][c, b] >= 0]
            assert sorted(got) == sorted(expected)
            assert np.array_equal(first["value"][c, b, : got.size], scores[got, c])
            assert np.all(np.diff(first["value"][c, b, : got.size]) <= 0), "highest score first"
            assert np.array_equal(first["position"][c, b, : got.size], positions[got, c])
            # The covered top fractions are what the scores say they are.
            top_from, top_to = first["fraction_range"][c, b]
            assert top_from == pytest.approx((scores[:, c] > high).mean())
            assert top_to == pytest.approx((scores[:, c] > low).mean())
    assert total >= channels * 2


def test_layer_accumulator_mean_nonzero_and_position_grid():
    rng = np.random.default_rng(4)
    n, channels, height, width = 23, 6, 3, 5
    pre = torch.from_numpy(rng.normal(size=(n, channels, height, width)).astype(np.float32))
    pre[:, 2] = -1.0  # a dead channel: every post-ReLU value is 0, argmax the first position
    post = pre.relu()
    accumulator = LayerAccumulator(channels, width, top_k=4, histogram_bins=32, band_bins=8, band_samples=2)
    for start in range(0, n, 6):
        chunk = slice(start, start + 6)
        accumulator.update(post[chunk].contiguous(memory_format=torch.channels_last),
                           pre[chunk].contiguous(memory_format=torch.channels_last), torch.arange(n)[chunk])
    summary = accumulator.summary()
    flat_post, flat_pre = post.flatten(2).numpy(), pre.flatten(2).numpy()
    assert np.allclose(summary["mean"], flat_post.mean(axis=(0, 2)), rtol=1e-6, atol=1e-9)
    assert np.array_equal(summary["nonzero_fraction"], (flat_post != 0).mean(axis=(0, 2)))
    assert (summary["hist_counts"].sum(1) == n * height * width).all()
    assert np.array_equal(summary["n_positions"], np.full(channels, n * height * width))
    top = brute_top(flat_post.max(2), 4)
    bottom = brute_top(flat_pre.min(2), 4, descending=False)
    assert np.array_equal(summary["top_index"], top)
    assert np.array_equal(summary["bottom_index"], bottom)
    argmax = np.take_along_axis(flat_post.argmax(2).T, top, 1)
    argmin = np.take_along_axis(flat_pre.argmin(2).T, bottom, 1)
    assert np.array_equal(summary["top_y"], argmax // width) and np.array_equal(summary["top_x"], argmax % width)
    assert np.array_equal(summary["bottom_y"], argmin // width) and np.array_equal(summary["bottom_x"], argmin % width)
    assert (summary["top_y"][2] == 0).all() and (summary["top_x"][2] == 0).all()
    assert np.array_equal(summary["bottom_values"], np.take_along_axis(flat_pre.min(2).T, bottom, 1))


def test_accumulator_state_round_trips():
    rng = np.random.default_rng(5)
    pre = torch.from_numpy(rng.normal(size=(12, 3, 2, 2)).astype(np.float32))
    one = LayerAccumulator(3, 2, top_k=3, band_bins=4, band_samples=2)
    one.update(pre[:6].relu(), pre[:6], torch.arange(6))
    two = LayerAccumulator(3, 2, top_k=3, band_bins=4, band_samples=2)
    two.load_state_arrays(one.state_arrays())
    for accumulator in (one, two):
        accumulator.update(pre[6:].relu(), pre[6:], torch.arange(6, 12))
    first, second = one.summary(), two.summary()
    for name in first:
        assert np.array_equal(first[name], second[name], equal_nan=first[name].dtype.kind == "f"), name


@pytest.mark.parametrize("pairs", [3, 200])  # a few pairs are gathered; many take the full reduction
def test_locator_finds_the_first_extreme_position_like_numpy(pairs):
    rng = np.random.default_rng(4)
    values = rng.integers(-2, 3, size=(8, 30, 5)).astype(np.float32)  # (N, P, C) with many ties
    values[:, :, 0] = 0.0  # all positions tie: the first one wins
    rows = torch.from_numpy(rng.integers(0, 8, pairs))
    channels = torch.from_numpy(rng.integers(0, 5, pairs))
    tensor = torch.from_numpy(values)
    for reduce, brute in ((first_argmax, np.argmax), (first_argmin, np.argmin)):
        locate = Locator(tensor, reduce)
        found = locate(rows, channels).numpy()
        assert (locate.full is not None) == (pairs == 200)
        expected = brute(values[rows.numpy(), :, channels.numpy()], axis=1)
        assert np.array_equal(found, expected)


def _accumulate(post, pre, parts, batch=4, seed=1):
    """One accumulator per part [first, last) of the images, merged in the order given."""
    channels, width = post.shape[1], post.shape[3]
    merged = None
    for first, last in parts:
        part = LayerAccumulator(channels, width, top_k=5, histogram_bins=16, band_bins=8, band_samples=3, seed=seed)
        for start in range(first, last, batch):
            stop = min(last, start + batch)
            part.update(post[start:stop], pre[start:stop], torch.arange(start, stop))
        if merged is None:
            merged = LayerAccumulator(channels, width, top_k=5, histogram_bins=16, band_bins=8, band_samples=3,
                                      seed=seed)
        merged.merge(part)
    return merged.summary()


@pytest.mark.parametrize("parts", [[(0, 20), (20, 40)], [(24, 40), (0, 24)], [(0, 8), (8, 9), (9, 33), (33, 40)]])
def test_merged_parts_equal_one_pass_array_for_array(parts):
    """Accumulators of parts of a dataset, merged in any order, hold exactly what one pass over all
    of it holds: top and bottom k, band samples, histogram (whose range grows in a late part), mean."""
    torch.manual_seed(0)
    pre = torch.randn(40, 7, 5, 5) * torch.linspace(0.1, 30, 7)[None, :, None, None] + 2.0
    pre[28:33, 3] *= 100  # a channel whose range grows late: the histograms must re-grid to merge
    pre[:, 5] = -1.0  # a dead channel
    post = pre.relu()
    whole = _accumulate(post, pre, [(0, 40)])
    merged = _accumulate(post, pre, parts)
    assert whole.keys() == merged.keys()
    for name, array in whole.items():
        assert array.dtype == merged[name].dtype
        assert np.array_equal(array, merged[name], equal_nan=array.dtype.kind == "f"), name
