"""The atlas reservoir: exactly the bottom-k of the priorities, whatever the batches, order or shards;
and uniform: every candidate is kept equally often across seeds."""
import numpy as np
import pytest

from microscope.activations.reservoir import Reservoir, priority


def stream(n_images=40, positions=6, width=3, seed=0):
    rng = np.random.default_rng(seed)
    image = np.repeat(np.arange(n_images), positions)
    y, x = rng.integers(0, 20, image.size), rng.integers(0, 20, image.size)
    vectors = np.stack([image, y, x], axis=1).astype(np.float32)[:, :width]  # each vector names its candidate
    return vectors, image, y, x


def test_the_kept_set_is_the_bottom_k_whatever_the_batches_and_shards():
    vectors, image, y, x = stream()
    capacity, seed = 25, 7
    keys = priority(seed, image, y, x)
    expected = np.argsort(keys, kind="stable")[:capacity]
    rng = np.random.default_rng(1)
    found = []
    for trial in range(4):
        order = rng.permutation(len(image))
        shards = np.array_split(order, 1 + trial)
        parts = []
        for shard in shards:
            part = Reservoir.empty(capacity, 3, seed)
            for batch in np.array_split(shard, 1 + rng.integers(1, 9)):
                part.offer(vectors[batch], image[batch], y[batch], x[batch])
            parts.append(part)
        whole = parts[0]
        for part in parts[1:]:
            whole.merge(part)
        found.append(whole)
        assert np.array_equal(whole.keys, keys[expected])
        assert np.array_equal(whole.vectors, vectors[expected]) and np.array_equal(whole.image, image[expected])
        assert np.array_equal(whole.y, y[expected]) and np.array_equal(whole.x, x[expected])
    assert len(found[0]) == capacity


def test_every_candidate_is_kept_equally_often():
    vectors, image, _, _ = stream(n_images=50, positions=1)
    y, x = np.zeros(50, np.int64), np.arange(50)  # 50 distinct candidates
    trials, capacity = 4000, 5
    counts, together = np.zeros(50), 0
    for seed in range(trials):
        reservoir = Reservoir.empty(capacity, 3, seed)
        reservoir.offer(vectors, image, y, x)
        counts[reservoir.image] += 1
        together += {0, 1} <= set(reservoir.image.tolist())
    frequency = counts / trials
    sigma = np.sqrt(0.1 * 0.9 / trials)
    assert np.abs(frequency - capacity / 50).max() < 5 * sigma, frequency
    # no pair is favoured either: 0 and 1 are kept together 5/50 * 4/49 of the time
    assert together / trials == pytest.approx(capacity / 50 * (capacity - 1) / 49, abs=0.006)


def test_a_reservoir_needs_room_and_merges_only_its_kind():
    with pytest.raises(ValueError, match="at least one vector"):
        Reservoir.empty(0, 3, 0)
    with pytest.raises(ValueError, match="same capacity"):
        Reservoir.empty(5, 3, 0).merge(Reservoir.empty(5, 3, 1))


def test_state_arrays_round_trip_and_catch_tampering():
    vectors, image, y, x = stream()
    half = len(image) // 2
    first, second = Reservoir.empty(20, 3, 5), Reservoir.empty(20, 3, 5)
    first.offer(vectors[:half], image[:half], y[:half], x[:half])
    second.offer(vectors[half:], image[half:], y[half:], x[half:])
    restored = Reservoir.from_state_arrays(first.state_arrays())  # as a resumed pass reads a shard back
    restored.merge(second)
    whole = Reservoir.empty(20, 3, 5)
    whole.offer(vectors, image, y, x)
    assert np.array_equal(restored.keys, whole.keys) and np.array_equal(restored.vectors, whole.vectors)
    state = whole.state_arrays()
    state["atlas/image"] = state["atlas/image"][::-1].copy()  # positions no longer match their priorities
    with pytest.raises(ValueError, match="inconsistent"):
        Reservoir.from_state_arrays(state)
