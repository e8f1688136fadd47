"""Held-out early stopping: keep the weights that reconstruct unseen images best, stop when they stop improving.

An SAE trained for many passes over a small training set memorises it: its training FVU keeps
falling while the FVU on images it never saw turns back up. Every `TrainSettings.checkpoint_every`
steps the trainer measures the FVU on validation vectors (inner positions of half the held-out
images, train.py's caller picks them; the other half stay untouched for the reported FVU), keeps a
copy of the best weights, and stops after `patience` measurements without a relative gain of
`MIN_GAIN`. The state is part of the checkpoint, so a resumed run stops where an unbroken one would.
"""
from __future__ import annotations

import math

import numpy as np
import torch

MIN_GAIN = 1e-3  # a validation FVU must fall by this fraction of the best to count as better
CHUNK = 4096


class EarlyStopping:
    def __init__(self, validation: torch.Tensor | None, patience: int):
        """`validation`: (n, width) vectors already divided by the trainer's scale; None: never stop early."""
        self.x = validation
        self.patience = patience
        self.variance = float((validation - validation.mean(dim=0)).double().square().sum()) if self.enabled else 0.0
        self.best_fvu, self.best_step, self.since = math.inf, 0, 0
        self.best: dict[str, torch.Tensor] | None = None
        self.curve: list[tuple[int, float]] = []  # (step, validation FVU)

    @property
    def enabled(self) -> bool:
        return self.x is not None and len(self.x) > 1

    @property
    def stopped(self) -> bool:
        return self.enabled and self.since >= self.patience

    @torch.no_grad()
    def fvu(self, sae) -> float:
        error = 0.0
        for first in range(0, len(self.x), CHUNK):
            x = self.x[first:first + CHUNK]
            error += float((x - sae.decode(sae.encode(x))).double().square().sum())
        return error / max(self.variance, 1e-30)

    def measure(self, step: int, sae) -> None:
        if not self.enabled:
            return
        fvu = self.fvu(sae)
        self.curve.append((step, fvu))
        if fvu < self.best_fvu * (1 - MIN_GAIN):
            self.best_fvu, self.best_step, self.since = fvu, step, 0
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
        arrays = {"stop/best_fvu": np.array(self.best_fvu), "stop/best_step": np.array(self.best_step),
                  "stop/since": np.array(self.since), "stop/curve": np.array(self.curve, np.float64).reshape(-1, 2)}
        for name, value in (self.best or {}).items():
            arrays[f"stop/best/{name}"] = value.numpy()
        return arrays

    def load(self, arrays, names) -> None:
        self.best_fvu, self.best_step = float(arrays["stop/best_fvu"]), int(arrays["stop/best_step"])
        self.since = int(arrays["stop/since"])
        self.curve = [(int(step), float(value)) for step, value in arrays["stop/curve"]]
        if f"stop/best/{names[0]}" in arrays:
            self.best = {name: torch.from_numpy(np.array(arrays[f"stop/best/{name}"])) for name in names}
