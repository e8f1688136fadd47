"""Sampling an SAE's training vectors: seeded per image, away from the edges, held out by image."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from microscope.errors import UsageError
from microscope.activations.positions import SampleSettings, held_out_images, positions, vectors_of
from microscope.views.sae import SaeSettings


def test_positions_are_distinct_inside_the_border_and_depend_only_on_seed_and_image():
    settings = SampleSettings(positions_per_image=16, edge=1, seed=3)
    y, x = positions(7, 28, 28, settings)
    assert len(set(zip(y.tolist(), x.tolist()))) == 16
    assert y.min() >= 1 and x.min() >= 1 and y.max() <= 26 and x.max() <= 26
    again = positions(7, 28, 28, settings)
    assert np.array_equal(y, again[0]) and np.array_equal(x, again[1])
    other = positions(8, 28, 28, settings)
    assert not (np.array_equal(y, other[0]) and np.array_equal(x, other[1]))
    every = positions(0, 4, 5, SampleSettings(positions_per_image=6, edge=1))  # the whole 2x3 inside
    assert sorted(zip(every[0].tolist(), every[1].tolist())) == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]


def test_vectors_are_the_activation_at_the_sampled_positions_whatever_the_batching():
    settings = SampleSettings(positions_per_image=5, edge=2)
    activation = torch.randn(6, 7, 9, 10, generator=torch.Generator().manual_seed(0))
    indices = torch.tensor([10, 11, 12, 13, 14, 15])
    vectors, images, y, x = vectors_of(activation, indices, settings)
    assert vectors.shape == (30, 7) and vectors.dtype == np.float32
    for row in range(30):
        b = int(np.nonzero(indices.numpy() == images[row])[0][0])
        assert np.array_equal(vectors[row], activation[b, :, y[row], x[row]].numpy())
    split = [vectors_of(activation[part], indices[part], settings) for part in (slice(0, 2), slice(2, 6))]
    assert np.array_equal(np.concatenate([s[0] for s in split]), vectors)


def test_held_out_images_are_a_seeded_tenth():
    chosen = held_out_images(2300, 0.1, seed=0)
    assert chosen.sum() == 230
    assert np.array_equal(chosen, held_out_images(2300, 0.1, seed=0))
    assert not np.array_equal(chosen, held_out_images(2300, 0.1, seed=1))
    assert held_out_images(3, 0.1, 0).sum() == 1 and held_out_images(1, 0.1, 0).sum() == 0


@pytest.mark.parametrize("grid,count,match", [((1, 1), 16, "too small to sample"), ((3, 3), 16, "1 positions away")])
def test_a_layer_too_small_to_sample_is_one_line(grid, count, match):
    with pytest.raises(UsageError, match=match):
        SampleSettings(positions_per_image=count).check("logits", *grid)


def test_no_positions_is_refused_by_the_declared_range():
    with pytest.raises(UsageError, match="^--positions-per-image must be at least 1, got 0$"):
        SaeSettings(positions_per_image=0)
