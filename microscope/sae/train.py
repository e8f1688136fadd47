"""Training a TopK SAE on activation vectors that live on disk, resumable step for step.

The vectors are rows of one or more (n_i, width) float32 arrays, normally `.npy` files opened as
memory maps: memory holds one batch and the epoch's order, never the data set. The order of epoch e
is a permutation seeded by (seed, e) alone, so step s always sees the same batch, and a run resumed
from a checkpoint (parameters, Adam's moments, when each latent last fired, the loss curve) ends with
the same weights as one that never stopped (same machine and thread count: float sums may round
differently elsewhere). Given validation vectors, training stops early once their FVU stops
falling, and the SAE keeps the weights that did best on them without leaving more than
`dead_limit` of its features silent on all of them (stopping.py).

Inputs are divided by one scale (root mean square of a coordinate over the first rows), so that the
learning rate means the same on every layer; b_pre starts at their mean. A latent counts as dead for
the auxiliary loss when it has not fired for `dead_after` training vectors.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from microscope.errors import UsageError
from microscope.sae.model import TopKSAE, losses
from microscope.sae.stopping import EarlyStopping
from microscope.store import atomic_save_npz, load_npz


@dataclass(frozen=True)
class TrainSettings:
    features: int
    k: int
    steps: int
    batch_size: int = 512
    lr: float = 4e-4
    aux_k: int | None = None  # latents the auxiliary loss may use; None: width // 2
    aux_coefficient: float = 1 / 32
    dead_after: int = 200_000  # training vectors without firing before a latent counts as dead
    checkpoint_every: int = 200  # steps; also how often the validation FVU is measured
    patience: int = 3  # validation measurements without a gain before training stops
    dead_limit: float = 0.03  # weights with more latents silent on the validation vectors are not kept
    curve_every: int = 10  # steps between points of the loss curve
    seed: int = 0

    def check(self, width: int) -> None:
        if self.features < 1:
            raise UsageError(f"an SAE needs at least one feature, got {self.features}")
        if not 1 <= self.k < self.features:
            raise UsageError(f"--k must be at least 1 and below the number of features ({self.features}), got {self.k}")
        for name in ("steps", "batch_size", "checkpoint_every", "curve_every", "dead_after", "patience"):
            if getattr(self, name) < 1:
                raise UsageError(f"SAE setting {name} must be at least 1, got {getattr(self, name)}")
        if width < 1:
            raise UsageError("an SAE needs vectors of at least one value")


class Vectors:
    """The rows of several (n_i, width) arrays as one indexable set (memory maps stay on disk)."""

    def __init__(self, parts: Sequence[np.ndarray]):
        parts = [part for part in parts if len(part)]
        if not parts:
            raise UsageError("no activation vectors to train on; check that the images could be read")
        widths = {part.shape[1] for part in parts}
        if len(widths) != 1:
            raise ValueError(f"vector files of different widths: {sorted(widths)}")
        self.parts = parts
        self.width = widths.pop()
        self.starts = np.cumsum([0] + [len(part) for part in parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def rows(self, indices: np.ndarray) -> torch.Tensor:
        """Rows at `indices` (any order), float32; read in sorted order within each file."""
        out = np.empty((len(indices), self.width), dtype=np.float32)
        which = np.searchsorted(self.starts, indices, side="right") - 1
        for part in np.unique(which):
            chosen = np.nonzero(which == part)[0]
            local = indices[chosen] - self.starts[part]
            order = np.argsort(local, kind="stable")
            out[chosen[order]] = self.parts[part][local[order]]
        return torch.from_numpy(out)

    def chunks(self, size: int = 8192):
        for first in range(0, len(self), size):
            yield self.rows(np.arange(first, min(len(self), first + size)))

    def subset(self, index: np.ndarray) -> "Subset":
        return Subset(self, index)


class Subset(Vectors):
    """Some rows of a Vectors, in the order of `index`."""

    def __init__(self, vectors: Vectors, index: np.ndarray):
        self.parts, self.width, self.index, self.whole = vectors.parts, vectors.width, np.asarray(index), vectors

    def __len__(self) -> int:
        return len(self.index)

    def rows(self, indices: np.ndarray) -> torch.Tensor:
        return self.whole.rows(self.index[indices])


def spread(n: int, at_most: int) -> np.ndarray:
    """At most `at_most` indices of range(n), evenly spread (all of them when n is small enough)."""
    return np.arange(n) if n <= at_most else np.unique(np.linspace(0, n - 1, at_most).round().astype(np.int64))


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The rows of training step `step`: epochs are whole permutations, a short last batch is dropped."""
    per_epoch = max(1, n // batch_size)
    epoch, within = divmod(step, per_epoch)
    order = epoch_order(n, seed, epoch)
    return order[within * batch_size:(within + 1) * batch_size]


@dataclass
class Trained:
    sae: TopKSAE
    scale: float  # inputs were divided by it
    curve: list[tuple[int, float]]  # (step, training FVU of that step's batch)
    steps: int  # steps trained (fewer than asked when training stopped early)
    validation_curve: list[tuple[int, float]]  # (step, validation FVU); empty without validation vectors
    best_step: int  # the step whose weights were kept (the last one without validation vectors)
    validation_dead: list[tuple[int, float]] = ()  # (step, fraction of latents silent on validation vectors)


def input_scale(vectors: Vectors, rows: int = 65_536) -> tuple[float, torch.Tensor]:
    """(root mean square coordinate, mean vector) of the first `rows` vectors."""
    sample = vectors.rows(np.arange(min(rows, len(vectors))))
    scale = float(sample.square().mean().sqrt())
    return (scale if scale > 0 else 1.0), sample.mean(dim=0)


def train(vectors: Vectors, settings: TrainSettings, checkpoint: Path | None = None,
          on_step: Callable[[int, float], None] | None = None, validation: Vectors | None = None,
          device: torch.device | str = "cpu") -> Trained:
    """Train (or finish a checkpointed run) on `device`; `on_step(step, fvu)` after every step, with the FVU
    of the latest curve point (read from the device every curve_every steps: a step never waits for it).

    The weights are initialised on the CPU from the seed and then moved, so every device starts alike; the
    returned SAE is on the CPU. Batches are read on the CPU and copied (pinned, non-blocking) to the device."""
    settings.check(vectors.width)
    device = torch.device(device)
    if len(vectors) < settings.batch_size:
        raise UsageError(f"only {len(vectors)} training vectors for a batch of {settings.batch_size}; "
                         "use more images or more positions per image")
    torch.manual_seed(settings.seed)
    scale, mean = input_scale(vectors)
    sae = TopKSAE(vectors.width, settings.features, settings.k, torch.Generator().manual_seed(settings.seed))
    with torch.no_grad():
        sae.b_pre.copy_(mean / scale)
    sae.to(device)
    optimiser = torch.optim.Adam(sae.parameters(), lr=settings.lr)
    last_fired = torch.zeros(settings.features, dtype=torch.long, device=device)
    stopping = EarlyStopping(None if validation is None else
                             (validation.rows(np.arange(len(validation))) / scale).to(device),
                             settings.patience, settings.dead_limit)
    curve: list[tuple[int, float]] = []
    step = 0
    if checkpoint is not None and checkpoint.exists():
        step, curve = _load(checkpoint, settings, sae, optimiser, last_fired, stopping)
    dead_steps = max(1, math.ceil(settings.dead_after / settings.batch_size))
    aux_k = settings.aux_k or max(1, vectors.width // 2)
    fvu = math.nan
    while step < settings.steps and not stopping.stopped:
        x = _to(vectors.rows(batch_indices(len(vectors), settings.batch_size, settings.seed, step)), device) / scale
        dead = (step - last_fired) >= dead_steps
        error, aux, code = losses(sae, x, dead, aux_k, ask_host=device.type == "cpu")
        optimiser.zero_grad(set_to_none=True)
        (error + settings.aux_coefficient * aux).backward()
        sae.remove_parallel_gradient()
        optimiser.step()
        sae.normalise_decoder()
        last_fired.masked_fill_((code != 0).any(dim=0), step + 1)  # (indexing by a mask would wait on the device)
        step += 1
        if step % settings.curve_every == 0 or step == settings.steps:
            fvu = float(error.detach())
            curve.append((step, fvu))
        if on_step is not None:
            on_step(step, fvu)
        if step % settings.checkpoint_every == 0 or step == settings.steps:
            stopping.measure(step, sae)
        if checkpoint is not None and step % settings.checkpoint_every == 0 and step < settings.steps:
            _save(checkpoint, settings, sae, optimiser, last_fired, step, curve, stopping)
    stopping.restore_best(sae)
    best = stopping.best_step if stopping.best is not None else step
    return Trained(sae.eval().cpu(), scale, curve, step, stopping.curve, best, stopping.dead_curve)


def _to(rows: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch read on the CPU, on `device`: through pinned memory to a GPU, so the copy does not block."""
    return rows if device.type == "cpu" else rows.pin_memory().to(device, non_blocking=True)


def _save(path: Path, settings, sae, optimiser, last_fired, step, curve, stopping) -> None:
    arrays = {f"param/{name}": value.detach().cpu().numpy() for name, value in sae.named_parameters()}
    arrays.update(stopping.arrays())
    names = dict(sae.named_parameters())
    for name, parameter in names.items():
        state = optimiser.state[parameter]
        arrays[f"adam/{name}/exp_avg"] = state["exp_avg"].cpu().numpy()
        arrays[f"adam/{name}/exp_avg_sq"] = state["exp_avg_sq"].cpu().numpy()
        arrays[f"adam/{name}/step"] = state["step"].cpu().numpy()
    arrays["last_fired"] = last_fired.cpu().numpy()
    arrays["curve"] = np.array(curve, dtype=np.float64).reshape(-1, 2)
    arrays["step"] = np.array(step)
    arrays["settings"] = np.array(repr(sorted(asdict(settings).items())))
    atomic_save_npz(path, arrays, compress=False)


def _load(path: Path, settings, sae, optimiser, last_fired, stopping) -> tuple[int, list]:
    """Restore a checkpoint of the same settings; another or a damaged one is ignored (start over)."""
    try:
        arrays = load_npz(path)
        if str(arrays["settings"]) != repr(sorted(asdict(settings).items())):
            return 0, []
        with torch.no_grad():
            for name, parameter in sae.named_parameters():
                parameter.copy_(torch.from_numpy(arrays[f"param/{name}"]))
        for name, parameter in sae.named_parameters():  # Adam keeps its step count on the CPU, its moments beside
            optimiser.state[parameter] = {key: torch.from_numpy(np.array(arrays[f"adam/{name}/{key}"])).to(
                "cpu" if key == "step" else parameter.device) for key in ("exp_avg", "exp_avg_sq", "step")}
        last_fired.copy_(torch.from_numpy(arrays["last_fired"]))
        curve = [(int(s), float(v)) for s, v in arrays["curve"]]
        stopping.load(arrays, [name for name, _ in sae.named_parameters()])
        return int(arrays["step"]), curve
    except (OSError, KeyError, ValueError, RuntimeError):
        return 0, []


@dataclass
class Evaluation:
    fvu: float  # sum |x - x'|^2 / sum |x - mean|^2 over the held-out vectors
    l0: float  # mean number of active latents per vector
    dead_fraction: float  # latents never active on the held-out vectors
    firing: np.ndarray  # (features,) fraction of held-out vectors on which each latent is active
    mean_activation: np.ndarray  # (features,) each latent's mean value where it is active (0 if never)
    vectors: int


@torch.no_grad()
def evaluate(trained: Trained, held_out: Vectors, chunk: int = 4096) -> Evaluation:
    sae, scale = trained.sae, trained.scale
    total = len(held_out)
    mean = torch.zeros(held_out.width, dtype=torch.float64)
    for x in held_out.chunks(chunk):
        mean += x.double().sum(0)
    mean /= max(1, total)
    error = variance = 0.0
    active = torch.zeros(sae.features, dtype=torch.float64)
    summed = torch.zeros(sae.features, dtype=torch.float64)
    l0 = 0.0
    for x in held_out.chunks(chunk):
        code = sae.encode(x / scale)
        reconstruction = sae.decode(code) * scale
        error += float((x.double() - reconstruction.double()).square().sum())
        variance += float((x.double() - mean).square().sum())
        fired = code != 0
        active += fired.sum(0).double()
        summed += code.sum(0).double()
        l0 += float(fired.sum())
    firing = (active / max(1, total)).numpy()
    return Evaluation(fvu=error / max(variance, 1e-30), l0=l0 / max(1, total),
                      dead_fraction=float((active == 0).double().mean()), firing=firing,
                      mean_activation=(summed / active.clamp_min(1)).numpy(), vectors=total)
