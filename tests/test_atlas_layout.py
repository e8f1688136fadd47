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


def test_a_stored_sample_is_laid_out_and_its_cell_means_match_the_stored_vectors(tmp_path):
    """Through the store, as the atlas will run: the means per cell equal a brute-force recomputation from
    the stored vectors and layout; the same seed gives the same layout; a small sample is one clear line."""
    from microscope.atlas.compute import GridSettings, lay_out
    from microscope.activations.reservoir import Reservoir
    from microscope.errors import UsageError
    from microscope.store import (AtlasLayout, AtlasVectors, DatasetRef, ExamplesResult, LayerInfo, PatchSettings,
                                  Store, ViewSettings)

    store = Store(tmp_path / "store")
    vectors, _ = clusters(n=400, width=6, seed=5)
    reservoir = Reservoir.empty(400, 6, 0)
    reservoir.offer(vectors, np.arange(400), np.zeros(400, np.int32), np.zeros(400, np.int32))
    path = store.atlas_vectors_file("m", "L")
    stamp = store.write(path, AtlasVectors(keys=reservoir.keys, vectors=reservoir.vectors, image=reservoir.image,
                                           y=reservoir.y, x=reservoir.x, settings=np.array([400, 6, 0, 1])))
    store.write(store.examples_result_file("m", "L"), ExamplesResult(
        key="k", identity={}, model="m", weights_id="w", layer="L", dataset=DatasetRef("f", "d", 400),
        view=ViewSettings(224, 224), top_k=1, n_images=400, skipped=0, skipped_files=[], histogram_of="L",
        grid=LayerInfo("L", "block", 6, 5, 5, 8, 40, 4.0, None), patches=PatchSettings("jpg", 80, 90, [0, 0, 0], ["top"], 0), batch_size=1,
        files={"atlas_vectors.npz": stamp}))
    settings = GridSettings(layout=LayoutSettings(n_neighbors=15, seed=1), coarse=4, fine=8, min_count=5)
    first = lay_out(store, "m", "L", settings)
    layout = store.read(store.atlas_dir("m", "L") / "layout.npz", AtlasLayout)
    stored = store.read(path, AtlasVectors).vectors.astype(np.float64)
    for side, count, mean in ((4, layout.count_coarse, layout.mean_coarse), (8, layout.count_fine, layout.mean_fine)):
        row, column = cell_of(layout.xy, side)
        for r in range(side):
            for c in range(side):
                members = (row == r) & (column == c)
                assert count[r, c] == members.sum()
                expected = stored[members].mean(0) if members.sum() > 5 else np.zeros(6)
                assert np.allclose(mean[r, c], expected, atol=1e-5)
    assert lay_out(store, "m", "L", settings) == first  # reused, not recomputed
    (store.atlas_dir("m", "L") / "result.json").unlink()
    lay_out(store, "m", "L", settings)
    assert np.array_equal(store.read(store.atlas_dir("m", "L") / "layout.npz", AtlasLayout).xy, layout.xy)
    with pytest.raises(UsageError, match="too few for a 60 x 60 grid; use at least 900"):
        lay_out(store, "m", "L", GridSettings(coarse=60, fine=80))
    with pytest.raises(UsageError, match="no atlas sample"):
        lay_out(store, "m", "other")
