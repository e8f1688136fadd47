"""What the examples pass keeps for concepts and similar units: the per-image maxima sample and the
units' correlation, merged from shards exactly as one pass, against brute force (numpy's corrcoef on
the same positions); nearest units and families."""
import numpy as np
import pytest
import torch

from microscope.activations import correlation as correlation_module
from microscope.activations import maxima as maxima_module
from microscope.activations.correlation import Correlation
from microscope.activations.maxima import ImageMaxima, sampled_images
from microscope.activations.positions import SampleSettings, positions
from microscope.concepts.similarity import CUT, similar_units

N, C, H, W = 30, 6, 5, 4


def activations():
    torch.manual_seed(0)
    base = torch.randn(N, 1, H, W)
    found = torch.randn(N, C, H, W)
    found[:, 1] += 2 * base[:, 0]  # 1 and 2 follow one signal
    found[:, 2] += 2 * base[:, 0]
    found[:, 4] = 0.0  # a dead unit
    return found.relu()


def run(parts, make, batch=4):
    values = activations()
    merged = None
    for first, last in parts:
        part = make()
        for start in range(first, last, batch):
            stop = min(last, start + batch)
            part.update(values[start:stop], torch.arange(start, stop))
        merged = part if merged is None else (merged.merge(part) or merged)
    return merged


SHARDS = [[(0, N)], [(0, 12), (12, N)], [(20, N), (0, 7), (7, 20)]]


@pytest.mark.parametrize("block", [256, 4, 1])  # one block of units, two uneven ones, one per unit
@pytest.mark.parametrize("parts", SHARDS)
def test_correlation_merged_from_shards_equals_one_pass_and_numpy(parts, block, monkeypatch):
    monkeypatch.setattr(correlation_module, "BLOCK", block)  # only blocks on and above the diagonal are summed
    make = lambda: Correlation(C, positions=5, seed=3, height=H, width=W)  # noqa: E731
    whole, merged = run([(0, N)], make), run(parts, make)
    assert merged.count == whole.count == N * 5
    assert np.allclose(merged.products.numpy(), whole.products.numpy(), rtol=1e-12, atol=0)
    assert np.allclose(merged.sum.numpy(), whole.sum.numpy(), rtol=1e-12, atol=0)
    # Brute force: the same positions of every image, gathered one by one.
    values = activations().numpy()
    rows = []
    for image in range(N):
        y, x = positions(image, H, W, SampleSettings(positions_per_image=5, edge=0, seed=3))
        rows.extend(values[image, :, y[i], x[i]] for i in range(5))
    with np.errstate(invalid="ignore"):  # the dead unit
        expected = np.corrcoef(np.array(rows, dtype=np.float64), rowvar=False)
    found = merged.matrix()
    assert np.isnan(found[4]).all() and np.isnan(found[:, 4]).all()  # dead: correlates with nothing
    alive = [0, 1, 2, 3, 5]
    assert np.allclose(found[np.ix_(alive, alive)], expected[np.ix_(alive, alive)], rtol=0, atol=1e-12)


def test_correlation_of_a_layer_without_a_grid_uses_its_one_position_and_round_trips():
    values = torch.randn(N, C)
    part = Correlation(C, positions=16, seed=0, height=1, width=1)
    part.update(values, torch.arange(N))
    assert np.allclose(part.matrix(), np.corrcoef(values.double().numpy(), rowvar=False), atol=1e-9)
    again = Correlation(C, positions=16, seed=0, height=1, width=1)
    again.load_state_arrays(part.state_arrays())
    assert np.array_equal(again.matrix(), part.matrix(), equal_nan=True)


@pytest.mark.parametrize("parts", SHARDS)
def test_maxima_sample_merged_from_shards_equals_one_pass_and_brute_force(parts):
    chosen = sampled_images(N, capacity=17, channels=C, seed=5)
    assert chosen.sum() == 17 and np.array_equal(chosen, sampled_images(N, 17, C, 5))

    def make():
        return _MaximaOnly(ImageMaxima(chosen, C))
    whole, merged = run([(0, N)], make).maxima.result(), run(parts, make).maxima.result()
    assert all(np.array_equal(a, b) for a, b in zip(whole, merged))
    index, values = merged
    assert np.array_equal(index, np.nonzero(chosen)[0])
    assert np.array_equal(values, activations().amax(dim=(2, 3)).numpy()[index].T)


def test_the_maxima_sample_is_bounded_by_values_not_images(monkeypatch):
    monkeypatch.setattr(maxima_module, "VALUES", 100)
    assert sampled_images(1_000_000, capacity=20_000, channels=10, seed=0).sum() == 10


class _MaximaOnly:
    """Feeds an ImageMaxima the per-image maxima, as LayerAccumulator.update does."""

    def __init__(self, maxima):
        self.maxima = maxima

    def update(self, values, indices):
        self.maxima.update(values.amax(dim=(2, 3)), indices)

    def merge(self, other):
        self.maxima.merge(other.maxima)


def test_nearest_units_and_families():
    rng = np.random.default_rng(0)
    signals = rng.normal(size=(500, 2))
    units = np.column_stack([signals[:, 0] + 0.3 * rng.normal(size=500) for _ in range(3)]
                            + [signals[:, 1] + 0.3 * rng.normal(size=500) for _ in range(2)]
                            + [rng.normal(size=500)])
    correlation = np.corrcoef(units, rowvar=False)
    correlation[5, :] = correlation[:, 5] = np.nan  # a constant unit
    found = similar_units(correlation, positions=500)
    others = np.where(np.eye(6, dtype=bool) | np.isnan(correlation), -np.inf, correlation)
    for unit in range(5):
        expected = [int(u) for u in np.argsort(-others[unit], kind="stable") if np.isfinite(others[unit, u])]
        assert found.neighbours[unit][found.neighbours[unit] >= 0].tolist() == expected[:len(expected)]
    assert (found.neighbours[5] == -1).all()
    family = found.family.tolist()
    assert family[0] == family[1] == family[2] != family[3] == family[4] and family[5] == -1
    assert float(found.cut) == CUT
