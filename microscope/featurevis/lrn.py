"""Local response normalisation with a hand-written backward pass, for optimising through old networks.

torch's `LocalResponseNorm` sums squares across channels with a 3-D average pool and lets autograd
differentiate a dozen elementwise steps; on a CPU its forward and backward are a large share of each
feature-visualization step of InceptionV1 (which normalises twice, on its widest activations; see
bench/NOTES.md). This version sums over channels with a 1-D pool along the contiguous channel axis of a
channels_last tensor and differentiates in closed form: faster, and equal to torch's to float rounding
(a test checks values and gradients).

    y_c = x_c / d_c^beta,   d_c = k + alpha/n * sum_{j in window(c)} x_j^2
    dL/dx_i = g_i / d_i^beta - (2 alpha beta / n) x_i * sum_{c : i in window(c)} g_c y_c / d_c

`with_fast_lrn(extractor)` swaps it into a feature-visualization extractor only: the network's own
modules, used by every other stage, are untouched.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _channel_window_sum(t: torch.Tensor, size: int, transposed: bool = False) -> torch.Tensor:
    """Sum over a window of `size` channels (torch's placement: size//2 before, (size-1)//2 after)."""
    n, c, h, w = t.shape
    rows = t.permute(0, 2, 3, 1).reshape(-1, 1, c)  # free for channels_last tensors
    before, after = size // 2, (size - 1) // 2
    rows = F.pad(rows, (after, before) if transposed else (before, after))
    sums = F.avg_pool1d(rows, size, stride=1) * size
    return sums.reshape(n, h, w, c).permute(0, 3, 1, 2)


class _LocalResponseNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, size, alpha, beta, k):
        d = _channel_window_sum(x * x, size).mul_(alpha / size).add_(k)
        y = x * d.pow(-beta)
        ctx.save_for_backward(x, y, d)
        ctx.size, ctx.alpha, ctx.beta = size, alpha, beta
        return y

    @staticmethod
    def backward(ctx, g):
        x, y, d = ctx.saved_tensors
        spread = _channel_window_sum(g * y / d, ctx.size, transposed=True)
        gx = g * d.pow(-ctx.beta) - (2 * ctx.alpha * ctx.beta / ctx.size) * x * spread
        return gx, None, None, None, None


class FastLocalResponseNorm(nn.Module):
    """Drop-in for `torch.nn.LocalResponseNorm` on (N, C, H, W) inputs."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)
        return _LocalResponseNorm.apply(x, self.size, self.alpha, self.beta, self.k)


def with_fast_lrn(extractor: nn.Module) -> nn.Module:
    """Replace every `nn.LocalResponseNorm` leaf of an fx-built extractor by `FastLocalResponseNorm`.

    torch.fx gives a GraphModule its own tree of container modules holding the original leaves, so
    replacing a leaf here leaves the network that the extractor was traced from unchanged.
    """
    for name, module in list(extractor.named_modules()):
        if isinstance(module, nn.LocalResponseNorm):
            parent_name, _, leaf = name.rpartition(".")
            parent = extractor.get_submodule(parent_name) if parent_name else extractor
            setattr(parent, leaf, FastLocalResponseNorm(module.size, module.alpha, module.beta, module.k))
    return extractor
