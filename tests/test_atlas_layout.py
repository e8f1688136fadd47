"""The atlas layout: reproducible with a seed, normalised into the unit square, and each cell's mean
equal to a brute-force mean of the vectors that fall in it."""
import numpy as np
import pytest

from microscope.atlas.layout import LayoutSettings, cell_of, grid_cells, normalise, umap_layout


def clusters(n=300, width=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, width)) * 4
    label = rng.integers(0, 3, n)
    return (centres[label] + rng.normal(size=(n, width))).astype(np.float32), label


def test_umap_layout_is_reproducible_and_keeps_clusters_apart():
    vectors, label = clusters()
    settings = LayoutSettings(n_neighbors=15, seed=3)
    a, b = umap_layout(vectors, settings), umap_layout(vectors, settings)
    assert a.shape == (300, 2) and np.array_equal(a, b)
    centres = np.stack([a[label == c].mean(0) for c in range(3)])
    spread = max(np.linalg.norm(a[label == c] - centres[c], axis=1).mean() for c in range(3))
    gaps = [np.linalg.norm(centres[i] - centres[j]) for i in range(3) for j in range(i + 1, 3)]
    assert min(gaps) > 2 * spread  # three clouds in, three islands out


def test_normalise_clips_outliers_into_the_unit_square_with_a_margin():
    rng = np.random.default_rng(1)
    xy = rng.normal(size=(1000, 2))
    xy[0] = [100, -100]  # an outlier
    out = normalise(xy)
    assert out.min() >= 0 and out.max() <= 1
    inner = (xy[:, 0] > np.percentile(xy[:, 0], 1)) & (xy[:, 0] < np.percentile(xy[:, 0], 99))
    assert out[inner, 0].min() > 0.05 and out[inner, 0].max() < 0.95  # the 10 % margin on each side
    assert out[0, 0] == pytest.approx(1.0) and out[0, 1] == pytest.approx(0.0)


def test_cell_means_equal_brute_force():
    rng = np.random.default_rng(2)
    xy = rng.uniform(size=(500, 2)).astype(np.float32)
    xy[:3] = [[1.0, 1.0], [0.0, 0.0], [0.999, 0.5]]  # edges of the square
    vectors = rng.normal(size=(500, 4)).astype(np.float32)
    cells = grid_cells(xy, vectors, size=6, min_count=5)
    assert cells.count.sum() == 500
    for r in range(6):
        for c in range(6):
            inside = (np.minimum((xy[:, 1] * 6).astype(int), 5) == r) & (np.minimum((xy[:, 0] * 6).astype(int), 5) == c)
            assert cells.count[r, c] == inside.sum()
            if inside.sum() > 5:
                assert cells.shown[r, c] and np.allclose(cells.mean[r, c], vectors[inside].mean(0), atol=1e-6)
            else:
                assert not cells.shown[r, c] and not cells.mean[r, c].any()
    assert cell_of(np.array([[1.0, 1.0]]), 6) == (5, 5)


def test_the_atlas_objective_is_lucids_direction_neuron():
    import torch

    from microscope.featurevis.objectives import direction_neuron

    rng = np.random.default_rng(4)
    activation = torch.from_numpy(rng.normal(size=(3, 5, 7, 7)).astype(np.float32))
    vectors = torch.from_numpy(rng.normal(size=(3, 5)).astype(np.float32))
    found = direction_neuron("L", vectors)({"L": activation})
    for i in range(3):
        a, v = activation[i, :, 3, 3].double().numpy(), vectors[i].double().numpy()
        cos = a @ v / (np.linalg.norm(a) * np.linalg.norm(v))
        assert float(found[i]) == pytest.approx(a @ v * max(0.1, cos) ** 2, rel=1e-3)  # eps 1e-4 in the norms
