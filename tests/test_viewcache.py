"""The pass's decoded views on disk: what goes in comes out, and nothing else is trusted."""
from __future__ import annotations

import numpy as np
import torch

from microscope.examples.viewcache import ViewCache


def test_views_round_trip_by_dataset_index_and_unknown_ones_are_none(tmp_path):
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (3, 3, 8, 8), dtype=np.uint8))
    cache = ViewCache.create(tmp_path / "run.views", count=10, crop=8)
    cache.put(torch.tensor([0, 2, 7]), images)  # a batch with gaps (unreadable files left out)
    for index, image in zip([0, 2, 7], images):
        assert np.array_equal(cache.get(index), image.permute(1, 2, 0).numpy())
        assert cache.get(index).flags.c_contiguous
    assert cache.get(1) is None and cache.get(9) is None
    cache.remove()
    assert not (tmp_path / "run.views").exists()


def test_a_file_left_by_an_earlier_run_is_never_read(tmp_path):
    path = tmp_path / "run.views"
    first = ViewCache.create(path, count=4, crop=2)
    first.put(torch.tensor([0, 1]), torch.full((2, 3, 2, 2), 200, dtype=torch.uint8))
    # A resumed run opens the same path: views of batches before its checkpoint are decoded again.
    second = ViewCache.create(path, count=4, crop=2)
    assert second.get(0) is None and second.get(1) is None
    second.put(torch.tensor([1]), torch.full((1, 3, 2, 2), 7, dtype=torch.uint8))
    assert (second.get(1) == 7).all() and second.get(0) is None


def test_no_cache_when_the_views_would_not_fit(tmp_path):
    assert ViewCache.create(tmp_path / "big.views", count=1000, crop=224, limit=10**6) is None
    assert not (tmp_path / "big.views").exists()
    assert ViewCache.create(tmp_path / "small.views", count=10, crop=224, limit=10**7) is not None
