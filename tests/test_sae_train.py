"""Training a TopK SAE from vectors on disk: it recovers known directions, and a resumed run is exact."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from microscope.errors import UsageError
from microscope.sae.model import TopKSAE, losses
from microscope.sae.train import TrainSettings, Vectors, batch_indices, evaluate, train


def sparse_data(directions: np.ndarray, n: int, active: int, seed: int) -> np.ndarray:
    """Each row: `active` of the directions with coefficients in [1, 3], plus a little noise."""
    rng = np.random.default_rng(seed)
    count, width = directions.shape
    rows = np.zeros((n, width), dtype=np.float32)
    for i in range(n):
        chosen = rng.choice(count, size=active, replace=False)
        rows[i] = rng.uniform(1, 3, size=active) @ directions[chosen]
    return rows + rng.normal(scale=0.01, size=rows.shape).astype(np.float32)


@pytest.fixture(scope="module")
def directions() -> np.ndarray:
    rng = np.random.default_rng(0)
    found = rng.normal(size=(48, 24))
    return (found / np.linalg.norm(found, axis=1, keepdims=True)).astype(np.float32)


def test_sae_recovers_the_directions_sparse_data_are_made_of(directions, tmp_path):
    rows = sparse_data(directions, 12_000, active=3, seed=1)
    np.save(tmp_path / "a.npy", rows[:7000])
    np.save(tmp_path / "b.npy", rows[7000:10_000])
    train_set = Vectors([np.load(tmp_path / "a.npy", mmap_mode="r"), np.load(tmp_path / "b.npy", mmap_mode="r")])
    held_out = Vectors([rows[10_000:]])
    settings = TrainSettings(features=96, k=4, steps=1500, batch_size=256, lr=3e-3, dead_after=20_000, seed=0)
    trained = train(train_set, settings)
    decoder = trained.sae.W_dec.detach().numpy()  # (width, features), unit columns
    best = (directions @ decoder).max(axis=1)  # each true direction's closest feature
    assert np.median(best) >= 0.95
    assert (best >= 0.9).mean() >= 0.8, np.sort(best)[:10]
    result = evaluate(trained, held_out)
    assert result.fvu < 0.1 and result.l0 <= 4 + 1e-9 and result.vectors == 2000
    assert result.firing.shape == (96,) and 0 <= result.dead_fraction < 1
    assert trained.curve[-1][0] == 1500 and trained.curve[-1][1] < trained.curve[0][1]


class Stop(Exception):
    pass


def test_a_resumed_run_ends_with_the_weights_of_one_that_never_stopped(directions, tmp_path):
    rows = sparse_data(directions, 3000, active=3, seed=2)
    vectors = Vectors([rows])
    settings = TrainSettings(features=64, k=4, steps=40, batch_size=128, lr=1e-3, dead_after=512, checkpoint_every=7,
                             curve_every=5, seed=3)
    whole = train(vectors, settings)

    def stop_at_17(step, fvu):
        if step == 17:
            raise Stop

    checkpoint = tmp_path / "checkpoint.npz"
    with pytest.raises(Stop):
        train(vectors, settings, checkpoint, on_step=stop_at_17)
    assert checkpoint.exists()
    resumed = train(vectors, settings, checkpoint)
    for (name, a), (_, b) in zip(whole.sae.named_parameters(), resumed.sae.named_parameters()):
        assert torch.equal(a, b), name
    assert resumed.curve == whole.curve and resumed.steps == 40
    other = TrainSettings(**{**settings.__dict__, "seed": 4})  # another run's checkpoint is not reused
    assert not torch.equal(train(vectors, other, checkpoint).sae.W_dec, whole.sae.W_dec)


@pytest.fixture(scope="module")
def memorised(directions):
    """A dictionary far larger than its 200 training vectors, with validation vectors of the same kind: the
    validation FVU stops falling long before 3,000 steps."""
    rows = sparse_data(directions, 1200, active=6, seed=5)
    settings = TrainSettings(features=256, k=8, steps=3000, batch_size=64, lr=3e-3, dead_after=2000,
                             checkpoint_every=25, dead_limit=1.0, seed=0)  # the guard: its own test
    return Vectors([rows[:200]]), Vectors([rows[200:]]), settings


def fvu(sae, scale: float, rows: np.ndarray) -> float:
    """Brute force, float64 numpy: the SAE's fraction of variance unexplained on `rows`."""
    x = rows.astype(np.float64) / scale
    weights = {name: value.detach().double().numpy() for name, value in sae.named_parameters()}
    pre = (x - weights["b_pre"]) @ weights["W_enc"].T + weights["b_enc"]
    kth = np.sort(pre, axis=1)[:, -sae.k][:, None]
    code = np.where(pre >= kth, np.maximum(pre, 0), 0)
    error = x - (code @ weights["W_dec"].T + weights["b_pre"])
    return float(np.square(error).sum() / np.square(x - x.mean(axis=0)).sum())


def test_early_stopping_keeps_the_best_weights_and_stops_after_patience(memorised):
    train_set, validation, settings = memorised
    trained = train(train_set, settings, validation=validation)
    steps = [step for step, _ in trained.validation_curve]
    values = dict(trained.validation_curve)
    assert steps == list(range(25, trained.steps + 1, 25)) and trained.steps < settings.steps
    assert trained.steps == trained.best_step + settings.patience * settings.checkpoint_every
    best = values[trained.best_step]
    assert all(value >= best * (1 - 1e-3) for step, value in trained.validation_curve if step > trained.best_step)
    assert abs(fvu(trained.sae, trained.scale, validation.parts[0]) - best) < 1e-4 * best
    # The kept weights are exactly those of a run that was told to stop at the best step
    shorter = train(train_set, TrainSettings(**{**settings.__dict__, "steps": trained.best_step}))
    for (name, a), (_, b) in zip(trained.sae.named_parameters(), shorter.sae.named_parameters()):
        assert torch.equal(a, b), name


def test_weights_whose_features_go_silent_on_validation_are_not_kept(memorised):
    """Memorising, features come to fire on training vectors alone: past `dead_limit` silent latents on the
    validation vectors a lower FVU no longer counts, and the weights kept are the best ones below it."""
    train_set, validation, settings = memorised
    free = train(train_set, settings, validation=validation)
    limit = 0.02
    guarded = train(train_set, TrainSettings(**{**settings.__dict__, "dead_limit": limit}), validation=validation)
    fvus, dead = dict(guarded.validation_curve), dict(guarded.validation_dead)
    assert list(fvus) == list(dead) and guarded.best_step in fvus
    assert dead[guarded.best_step] <= limit
    assert fvus[guarded.best_step] == min(v for step, v in fvus.items() if dead[step] <= limit)
    assert all(dead[step] > limit for step in fvus if step > guarded.best_step)
    assert guarded.steps == guarded.best_step + settings.patience * settings.checkpoint_every
    # the guard changed the outcome: unguarded, training went on to a lower FVU with more silent latents
    assert free.best_step > guarded.best_step and dict(free.validation_dead)[free.best_step] > limit
    # silent means silent: no validation vector fires those latents (brute force over the kept weights)
    x = torch.from_numpy(validation.parts[0]) / guarded.scale
    silent = float(((guarded.sae.encode(x) != 0).sum(0) == 0).double().mean())
    assert silent == dead[guarded.best_step]
    shorter = train(train_set, TrainSettings(**{**settings.__dict__, "steps": guarded.best_step}))
    for (name, a), (_, b) in zip(guarded.sae.named_parameters(), shorter.sae.named_parameters()):
        assert torch.equal(a, b), name


def test_a_resumed_run_stops_early_where_one_that_never_stopped_does(memorised, tmp_path):
    train_set, validation, settings = memorised
    whole = train(train_set, settings, validation=validation)

    def stop_after_the_best(step, fvu):
        if step == whole.best_step + settings.checkpoint_every + 3:  # one measurement without gain is in the checkpoint
            raise Stop

    checkpoint = tmp_path / "checkpoint.npz"
    with pytest.raises(Stop):
        train(train_set, settings, checkpoint, on_step=stop_after_the_best, validation=validation)
    resumed = train(train_set, settings, checkpoint, validation=validation)
    for (name, a), (_, b) in zip(whole.sae.named_parameters(), resumed.sae.named_parameters()):
        assert torch.equal(a, b), name
    assert (resumed.steps, resumed.best_step, resumed.validation_curve) == (whole.steps, whole.best_step,
                                                                           whole.validation_curve)


def test_batches_are_whole_seeded_permutations():
    n, batch = 1000, 128
    per_epoch = n // batch
    first_epoch = np.concatenate([batch_indices(n, batch, 5, step) for step in range(per_epoch)])
    assert len(set(first_epoch.tolist())) == per_epoch * batch
    assert np.array_equal(batch_indices(n, batch, 5, 3), batch_indices(n, batch, 5, 3))
    assert not np.array_equal(batch_indices(n, batch, 5, 0), batch_indices(n, batch, 5, per_epoch))


@pytest.mark.parametrize("features,k,match", [(0, 1, "at least one feature"), (16, 16, "below the number"),
                                              (16, 0, "at least 1")])
def test_bad_settings_are_one_line(features, k, match):
    with pytest.raises(UsageError, match=match):
        train(Vectors([np.ones((600, 4), dtype=np.float32)]), TrainSettings(features=features, k=k, steps=1))


def test_too_few_vectors_for_a_batch_is_one_line():
    with pytest.raises(UsageError, match="only 10 training vectors"):
        train(Vectors([np.ones((10, 4), dtype=np.float32)]), TrainSettings(features=8, k=2, steps=1))


def test_training_steps_never_wait_for_the_device():
    """Between the first and the last step nothing is read back from the device (no `.item()`, no mask
    indexing that counts on the host): on a GPU the steps queue up. The batch itself is read on the host by
    design (Vectors.rows) and copied over, so tensors made from NumPy data are not counted here."""
    from test_render_loop import READ_BACK, HostCalls
    rng = np.random.default_rng(0)
    vectors = Vectors([rng.normal(size=(600, 16)).astype(np.float32)])
    settings = TrainSettings(features=32, k=4, batch_size=64, steps=8, checkpoint_every=10**6, curve_every=10**6)
    mode = HostCalls()
    with mode:
        trained = train(vectors, settings, on_step=lambda step, fvu: mode.step(), device="cpu")
    assert trained.steps == 8 and len(trained.curve) == 1  # the curve's one point: the last step's, read then
    waits = [(step, name) for step, name in mode.calls if 1 <= step < mode.steps - 1 and name in READ_BACK]
    # On a CPU, one question a step (is any latent dead? then AuxK runs), which a GPU does not ask (below).
    assert [name for _, name in waits] == ["__bool__"] * (mode.steps - 2)


@pytest.mark.parametrize("dead_latents", [0, 3, 20])
def test_auxk_without_asking_the_host_gives_the_same_losses(dead_latents):
    """What a GPU step computes (AuxK always, times 0 when no latent is dead; no value read back) equals
    what a CPU step computes (AuxK skipped when none is dead), losses and gradients alike."""
    from test_render_loop import READ_BACK, HostCalls
    rng = np.random.default_rng(dead_latents)
    x = torch.from_numpy(rng.normal(size=(64, 16)).astype(np.float32))
    dead = torch.zeros(32, dtype=torch.bool)
    dead[torch.from_numpy(rng.permutation(32)[:dead_latents])] = True
    found = {}
    for ask_host in (True, False):
        sae = TopKSAE(16, 32, 4, torch.Generator().manual_seed(1))
        mode = HostCalls()
        with mode:
            error, aux, _ = losses(sae, x, dead, 8, ask_host=ask_host)
        (error + 0.5 * aux).backward()
        found[ask_host] = (error.item(), aux.item(), [p.grad.clone() for p in sae.parameters()],
                           [name for _, name in mode.calls if name in READ_BACK])
    assert found[False][3] == []  # nothing read back
    assert found[True][:2] == found[False][:2] and (found[True][1] == 0) == (dead_latents == 0)
    for a, b in zip(found[True][2], found[False][2]):
        assert torch.equal(a, b)
