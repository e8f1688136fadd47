"""The units' correlation over activation vectors: a few seeded positions of every image, summed.

Sums of x and of x x^T (float64) over the drawn vectors are all it keeps: C + C^2 numbers whatever the
dataset's size, and two states merge by adding them (shards of a pass merge to one pass's sums, up to
the order of float64 additions). The positions of image i depend on (seed, i) alone
(activations/positions.py), at most `positions` of them, anywhere in the grid (the edges are part of
what a unit does in an image, unlike the SAE's sample). Products of float32 values are exact in
float64, where they are summed: shards cut into other batches agree with one pass to float64
rounding (about 1e-16 of the sums), not float32's. x x^T is symmetric, so only its blocks of BLOCK
units on and above the diagonal are summed (about 40 % fewer multiplications at 832 units,
bench/NOTES.md); the rest is read by symmetry.
"""
from __future__ import annotations

import numpy as np
import torch

from microscope.activations.positions import SampleSettings, sampled_vectors

BLOCK = 256
MAX_UNITS = 2048  # above it, C^2 float64 sums (32 MB at 2,048) are too big for every shard's state


class Correlation:
    def __init__(self, channels: int, positions: int, seed: int, height: int, width: int,
                 device: torch.device | str = "cpu"):
        self.sampling = SampleSettings(positions_per_image=min(positions, height * width), edge=0, seed=seed)
        self.count = 0
        self.sum = torch.zeros(channels, dtype=torch.float64, device=device)
        self.products = torch.zeros(channels, channels, dtype=torch.float64, device=device)

    def update(self, activation: torch.Tensor, indices) -> None:
        """activation: (N, C, H, W), or (N, C) for a layer without a grid (its one position); indices: the
        images' dataset indices, on the host (nothing is read back from the device)."""
        if activation.dim() == 2:
            vectors = activation.double()
        else:
            vectors = sampled_vectors(activation, indices, self.sampling).double()
        self.count += vectors.shape[0]
        self.sum += vectors.sum(0)
        for start in range(0, vectors.shape[1], BLOCK):  # block rows, from their diagonal block on
            self.products[start:start + BLOCK, start:].addmm_(vectors[:, start:start + BLOCK].T, vectors[:, start:])

    def merge(self, other: "Correlation") -> None:
        self.count += other.count
        self.sum += other.sum.to(self.sum.device)
        self.products += other.products.to(self.products.device)

    def matrix(self) -> np.ndarray:
        """(C, C) Pearson correlation of the drawn vectors; NaN rows and columns for constant units."""
        n = max(self.count, 1)
        mean = self.sum / n
        products = torch.triu(self.products) + torch.triu(self.products, 1).T  # the upper triangle, mirrored
        covariance = products / n - torch.outer(mean, mean)
        deviation = covariance.diagonal().clamp_min(0).sqrt()
        # A unit constant on every vector (a dead one) has no correlation with anything.
        varies = (deviation > 0) & (deviation > 1e-6 * mean.abs())
        scale = torch.where(varies, deviation, torch.full_like(deviation, float("nan")))
        found = covariance / torch.outer(scale, scale)
        return found.clamp(-1, 1).cpu().numpy()

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {"correlation/count": np.array(self.count, dtype=np.int64), "correlation/sum": self.sum.cpu().numpy(),
                "correlation/products": self.products.cpu().numpy()}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        device = self.sum.device
        self.count = int(arrays["correlation/count"])
        self.sum = torch.from_numpy(np.array(arrays["correlation/sum"])).to(device)
        self.products = torch.from_numpy(np.array(arrays["correlation/products"])).to(device)
