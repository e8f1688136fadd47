"""Decorrelated colour: optimise in a colour space whose axes are uncorrelated in natural images.

Lucid's observation: neighbouring pixel values and the three colour channels of photos are strongly
correlated, so plain RGB gradient steps mostly change brightness. We optimise coordinates `t` in the
whitened basis of ImageNet's colour covariance and map them to RGB with the covariance's square root.
The matrix below is Lucid's (`color_correlation_svd_sqrt`, the SVD square root of the ImageNet colour
correlation), scaled so that its largest column has unit norm; with that scaling a unit step in any
decorrelated direction changes an RGB value by at most one.
"""
from __future__ import annotations

import numpy as np
import torch

COLOR_CORRELATION_SVD_SQRT = np.array(
    [[0.26, 0.09, 0.02],
     [0.27, 0.00, -0.05],
     [0.27, -0.09, 0.03]], dtype=np.float32)

COLOR_CORRELATION_NORMALIZED = (
    COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))
).astype(np.float32)


# Made a tensor once: a tensor made from the NumPy array at every call would be a host-to-device copy at
# every optimisation step on a GPU (FourierImage keeps its own copy on its device, as a buffer).
COLOR_MATRIX = torch.from_numpy(COLOR_CORRELATION_NORMALIZED)


def decorrelated_to_rgb(t: torch.Tensor, matrix: torch.Tensor = COLOR_MATRIX) -> torch.Tensor:
    """(N, 3, H, W) decorrelated coordinates -> (N, 3, H, W) unbounded RGB: rgb[c] = sum_k M[c, k] t[k].
    `matrix`: COLOR_MATRIX, already on `t`'s device (`.to` is then free)."""
    return torch.einsum("ck,nkhw->nchw", matrix.to(t.device, t.dtype), t)
