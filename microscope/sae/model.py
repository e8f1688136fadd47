"""A TopK sparse autoencoder (Gao et al. 2024, "Scaling and evaluating sparse autoencoders").

    pre  = W_enc (x - b_pre) + b_enc          the encoder pre-activation (F features)
    z    = TopK(ReLU(pre))                    at most k features non-zero
    x'   = W_dec z + b_pre                    decoder columns of unit norm

Trained on the normalised squared error plus an auxiliary term (AuxK) against dead features: the
latents that have not fired for a while reconstruct what the others missed, with their own top
k_aux, so that their encoder rows keep getting a gradient. After every step the decoder's columns
are renormalised, and before it the gradient along each column is removed (it would only change
the column's norm).
"""
from __future__ import annotations

import torch
from torch import nn


class TopKSAE(nn.Module):
    def __init__(self, width: int, features: int, k: int, generator: torch.Generator | None = None):
        super().__init__()
        self.width, self.features, self.k = width, features, k
        decoder = torch.randn(width, features, generator=generator)
        decoder /= decoder.norm(dim=0, keepdim=True)
        self.W_dec = nn.Parameter(decoder)
        self.W_enc = nn.Parameter(decoder.t().clone())  # tied at the start, as Gao et al. do
        self.b_enc = nn.Parameter(torch.zeros(features))
        self.b_pre = nn.Parameter(torch.zeros(width))

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        """(..., width) -> (..., features): the encoder pre-activation."""
        return (x - self.b_pre) @ self.W_enc.t() + self.b_enc

    def sparse(self, pre: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """TopK(ReLU(pre)) along the last dimension: the code."""
        top = torch.topk(pre, k or self.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, top.indices, top.values.clamp_min(0))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.sparse(self.pre(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec.t() + self.b_pre

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction, code, pre-activation)."""
        pre = self.pre(x)
        z = self.sparse(pre)
        return self.decode(z), z, pre

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=0, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        """Drop the part of each decoder column's gradient along the column (it only scales it)."""
        if self.W_dec.grad is not None:
            along = (self.W_dec.grad * self.W_dec).sum(dim=0, keepdim=True)
            self.W_dec.grad -= along * self.W_dec


def losses(sae: TopKSAE, x: torch.Tensor, dead: torch.Tensor, k_aux: int,
           ask_host: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(normalised reconstruction error, auxiliary error, code) of a batch `x` (n, width).

    Both errors are divided by the batch's total variance, so they read as fractions of variance
    unexplained; `dead` (features,) marks the latents that may revive.
    """
    reconstruction, z, pre = sae(x)
    variance = (x - x.mean(dim=0)).square().sum().clamp_min(1e-12)
    residual = x - reconstruction
    error = residual.square().sum() / variance
    # AuxK: the dead latents' k_aux largest (alive ones masked to -inf, which the code's ReLU makes 0: with
    # fewer dead latents than k_aux the rest of the top k adds nothing), and no loss at all when none is dead.
    # With `ask_host` (on a CPU, where reading a value costs nothing) the whole term is skipped when none is
    # dead - a third of a step on a CPU; on a GPU asking would make every step wait for the device, so the
    # term is computed and multiplied by 0 instead. Both give the same numbers.
    aux = torch.zeros((), device=x.device)
    if ask_host and not bool(dead.any()):
        return error, aux, z
    masked = pre.masked_fill(~dead, float("-inf"))
    z_aux = sae.sparse(masked, min(k_aux, pre.shape[-1])).nan_to_num(0.0)
    predicted = z_aux @ sae.W_dec.t()
    aux = (residual.detach() - predicted).square().sum() / variance * dead.any()
    return error, aux, z
