"""The SAE's sample and steps chosen from the data (microscope/sae/sizing.py), and the held-out halves."""
from __future__ import annotations

import math

import numpy as np
import pytest

from microscope.activations.positions import SampleSettings, held_out_images
from microscope.sae.sizing import COUNTED_POSITIONS, DISK_BUDGET, MAX_POSITIONS, MAX_STEPS, MIN_STEPS, MIN_PER_FEATURE, VECTORS_PER_FEATURE, choose
from microscope.sae.vectors import held_out_halves
from microscope.store import FileStamp, SaeVectors, VectorShard


@pytest.mark.parametrize("features,images,inner,width", [
    (3840, 900, 676, 480),  # inception_3b, 1,000 photos: 137 positions reach 32 vectors per feature
    (4096, 900, 144, 512),  # inception_4c: its 144 inner positions give 31.6, above the 16 that warn
    (8192, 900, 25, 1024),  # inception_5b: 25 inner positions, too few
    (3840, 270, 676, 480),  # 300 photos: 256 positions are not enough
    (3840, 60, 676, 480),  # 60 photos: far too few
    (3840, 200_000, 676, 480),  # many photos: 16 positions, within the disk budget
    (3840, 2_000_000, 676, 480),  # ImageNet-sized: the disk budget wins
])
def test_positions_reach_the_aimed_vectors_per_feature_within_the_bounds(features, images, inner, width):
    sizing = choose("L", features, width, images, inner, None, None, 512)
    p = sizing.positions_per_image
    affordable = max(1, DISK_BUDGET // (4 * width * images))
    assert 1 <= p <= min(inner, MAX_POSITIONS, max(16, affordable))
    assert p * images * width * 4 <= DISK_BUDGET or p == 1
    aim = VECTORS_PER_FEATURE * features
    if p < min(inner, MAX_POSITIONS, affordable):  # not held back by a bound: the smallest count reaching the aim
        assert p == 16 or (p * images >= aim > (p - 1) * images)
    warned = sizing.shortfall(expansion=features // width, width=width, held_out=0.1)
    assert (warned is None) == (min(p, COUNTED_POSITIONS) * images >= MIN_PER_FEATURE * features)
    assert MIN_STEPS <= sizing.steps <= MAX_STEPS and sizing.chosen == ("positions", "steps")
    if MIN_STEPS < sizing.steps < MAX_STEPS:
        assert sizing.steps == math.ceil(p * images / 512)


def test_the_users_numbers_win():
    sizing = choose("L", 3840, 480, 900, 676, 7, 123, 512)
    assert (sizing.positions_per_image, sizing.steps, sizing.chosen) == (7, 123, ())
    assert "chosen" not in sizing.line() and sizing.shortfall(8, 480, 0.1) is not None


def test_1000_photos_are_enough_for_3b_and_4c_and_300_are_not():
    assert choose("inception_3b", 3840, 480, 900, 676, None, None, 512).shortfall(8, 480, 0.1) is None
    assert choose("inception_4c", 4096, 512, 900, 144, None, None, 512).shortfall(8, 512, 0.1) is None
    warned = choose("inception_3b", 3840, 480, 270, 676, None, None, 512).shortfall(8, 480, 0.1)
    # 270 training images x 256 positions are sampled, but only 96 per image count as evidence
    assert warned.startswith("inception_3b: 270 training images give 6.8 vectors per feature for 3,840 features")
    assert "use 712 images or more" in warned and "--expansion 3" in warned


@pytest.mark.parametrize("n_images,shard_size", [(40, 16), (41, 41), (3, 3), (2, 2)])
def test_held_out_halves_split_whole_images(n_images, shard_size):
    sampling = SampleSettings(positions_per_image=4, seed=3)
    held = held_out_images(n_images, sampling.held_out, sampling.seed)
    per_image = 9
    stamp = FileStamp(size=0, sha256="0" * 64)
    shards = [VectorShard(first=f, last=min(n_images, f + shard_size), train_rows=0, train=stamp, held=stamp,
                          held_rows=per_image * int(held[f:f + shard_size].sum()))
              for f in range(0, n_images, shard_size)]
    record = SaeVectors(key="k", model="m", weights_id="w", layer="l", dataset="d", n_images=n_images, width=2,
                        sampling=dict(sampling.__dict__), shards=shards, seconds=0.0)
    validation, test = held_out_halves(record)
    rows = per_image * int(held.sum())
    assert sorted(np.concatenate([validation, test]).tolist()) == list(range(rows))
    images_of = lambda part: set((part // per_image).tolist())  # noqa: E731
    assert not images_of(validation) & images_of(test)
    if held.sum() >= 2:
        assert len(images_of(validation)) == math.ceil(held.sum() / 2) and len(test) > 0
    else:
        assert len(validation) == 0
