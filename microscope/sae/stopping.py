"""Held-out early stopping: keep the weights that reconstruct unseen images best, stop when they stop improving.

Trained long on a small set of images, an SAE goes wrong in two ways: its FVU on images it never
saw stops falling (or turns back up) while the training FVU keeps falling, and more and more of
its features turn so rare that they fire on no unseen image at all (on inception_3b from 1,000
photos, a few hundred steps after 2,000 - bench/NOTES.md). Every `TrainSettings.checkpoint_every`
steps the trainer measures both on validation vectors (inner positions of half the held-out
images; the other half stay untouched for the reported numbers): the FVU, and the fraction of
latents silent on every validation vector. Weights with more than `dead_limit` silent latents
never count as the best, so training keeps the lowest FVU among weights whose features still
fire on unseen images, and stops after `patience` measurements without a relative gain of
`MIN_GAIN`. The limit (3 %, TrainSettings) keeps a margin below the 5 % this project aims at: on
the other half of the held-out images, weights that left 4.9 % silent on validation left 6.0 %.
The state is part of the checkpoint, so a resumed run stops where an unbroken one would.
"""
from __future__ import annotations

import math

import numpy as np
import torch

MIN_GAIN = 1e-3  # a validation FVU must fall by this fraction of the best to count as better
CHUNK = 4096


class EarlyStopping:
    def __init__(self, validation: torch.Tensor | None, patience: int, dead_limit: float = 1.0):
        """`validation`: (n, width) vectors already divided by the trainer's scale; None: never stop early."""
        self.x = validation
        self.patience, self.dead_limit = patience, dead_limit
        self.variance = float((validation - validation.mean(dim=0)).double().square().sum()) if self.enabled else 0.0
        self.best_fvu, self.best_dead, self.best_step, self.since = math.inf, 1.0, 0, 0
        self.best: dict[str, torch.Tensor] | None = None
        self.curve: list[tuple[int, float]] = []  # (step, validation FVU)
        self.dead_curve: list[tuple[int, float]] = []  # (step, fraction of latents silent on validation)

    @property
    def enabled(self) -> bool:
        return self.x is not None and len(self.x) > 1

    @property
    def stopped(self) -> bool:
        return self.enabled and self.since >= self.patience

    @torch.no_grad()
    def fvu_and_dead(self, sae) -> tuple[float, float]:
        error = 0.0
        fired = torch.zeros(sae.features, dtype=torch.bool, device=self.x.device)
        for first in range(0, len(self.x), CHUNK):
            x = self.x[first:first + CHUNK]
            code = sae.encode(x)
            error += float((x - sae.decode(code)).double().square().sum())
            fired |= (code != 0).any(dim=0)
        return error / max(self.variance, 1e-30), float((~fired).double().mean())

    def better(self, fvu: float, dead: float) -> bool:
        """Weights whose features generalise beat any that do not; among equals, a clearly lower FVU wins."""
        ok, best_ok = dead <= self.dead_limit, self.best_dead <= self.dead_limit
        if ok != best_ok:
            return ok
        return fvu < self.best_fvu * (1 - MIN_GAIN)

    def measure(self, step: int, sae) -> None:
        if not self.enabled:
            return
        fvu, dead = self.fvu_and_dead(sae)
        self.curve.append((step, fvu))
        self.dead_curve.append((step, dead))
        if self.better(fvu, dead):
            self.best_fvu, self.best_dead, self.best_step, self.since = fvu, dead, step, 0
            self.best = {name: value.detach().clone() for name, value in sae.named_parameters()}
        else:
            self.since += 1

    @torch.no_grad()
    def restore_best(self, sae) -> None:
        """Load the best weights measured into `sae` (if any were: else it keeps its last ones)."""
        if self.best is not None:
            for name, parameter in sae.named_parameters():
                parameter.copy_(self.best[name])

    def arrays(self) -> dict[str, np.ndarray]:
        """Its state, for the trainer's checkpoint."""
        arrays = {"stop/best_fvu": np.array(self.best_fvu), "stop/best_dead": np.array(self.best_dead),
                  "stop/best_step": np.array(self.best_step), "stop/since": np.array(self.since),
                  "stop/curve": np.array(self.curve, np.float64).reshape(-1, 2),
                  "stop/dead_curve": np.array(self.dead_curve, np.float64).reshape(-1, 2)}
        for name, value in (self.best or {}).items():
            arrays[f"stop/best/{name}"] = value.cpu().numpy()
        return arrays

    def load(self, arrays, names) -> None:
        self.best_fvu, self.best_step = float(arrays["stop/best_fvu"]), int(arrays["stop/best_step"])
        self.best_dead, self.since = float(arrays["stop/best_dead"]), int(arrays["stop/since"])
        self.curve = [(int(step), float(value)) for step, value in arrays["stop/curve"]]
        self.dead_curve = [(int(step), float(value)) for step, value in arrays["stop/dead_curve"]]
        if f"stop/best/{names[0]}" in arrays:
            self.best = {name: torch.from_numpy(np.array(arrays[f"stop/best/{name}"])) for name in names}
