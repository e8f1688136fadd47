"""The image parameterization: a Fourier spectrum with 1/frequency scaling, decorrelated colour, sigmoid.

Gradient ascent on raw pixels finds high-frequency patterns the network reacts to but people cannot
see. Lucid's remedy, reproduced here with Lucid's numbers: optimise the image's 2-D Fourier spectrum,
each coefficient scaled by 1/frequency so that all frequencies start with roughly equal energy per
step (natural images have a 1/f amplitude spectrum); express colour in a decorrelated basis
(`color.py`); squash to [0, 1] with a sigmoid, so no clipping ever kills a gradient.

Each batch element has its own spectrum, initialised from its own seed, so an element's start does
not depend on which other elements share its batch.

With `alpha=True` (transparent renders, Lucid's `param.image(alpha=True)`) a fourth plane of the same
spectrum, not colour-mixed, goes through its own sigmoid: the image's alpha, starting near 0.5.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from microscope.featurevis.color import COLOR_MATRIX, decorrelated_to_rgb


def rfft2_frequencies(height: int, width: int) -> torch.Tensor:
    """|f| in cycles per pixel of each coefficient of `torch.fft.rfft2` of an (height, width) image."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(width, dtype=torch.float64)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


def spectrum_scale(height: int, width: int, decay_power: float = 1.0) -> torch.Tensor:
    """Per-coefficient scale 1/max(|f|, 1/max(h, w))^decay_power, times sqrt(h*w).

    The floor stops the DC term from blowing up; the sqrt(h*w) makes the inverse FFT (which divides by
    h*w) roughly unitary, so the same learning rate suits any image size.
    """
    freqs = rfft2_frequencies(height, width)
    scale = 1.0 / torch.clamp(freqs, min=1.0 / max(height, width)) ** decay_power
    return (scale * (height * width) ** 0.5).to(torch.float32)


def initial_spectrum(seed: int, height: int, width: int, sd: float = 0.01, planes: int = 3) -> torch.Tensor:
    """(planes, height, width // 2 + 1, 2) real and imaginary parts ~ N(0, sd^2), drawn on the CPU from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((planes, height, width // 2 + 1, 2), generator=generator) * sd


class FourierImage(nn.Module):
    """A batch of RGB (or, with `alpha`, RGBA) images in [0, 1], one spectrum per element: `forward()` ->
    (N, 3 or 4, H, W)."""

    def __init__(self, seeds: Sequence[int], size: int | tuple[int, int], sd: float = 0.01,
                 decay_power: float = 1.0, decorrelate: bool = True, alpha: bool = False):
        super().__init__()
        self.height, self.width = (size, size) if isinstance(size, int) else size
        self.decorrelate = decorrelate
        spectra = [initial_spectrum(seed, self.height, self.width, sd, 4 if alpha else 3) for seed in seeds]
        self.spectrum = nn.Parameter(torch.stack(spectra))
        self.register_buffer("scale", spectrum_scale(self.height, self.width, decay_power), persistent=False)
        self.register_buffer("color", COLOR_MATRIX.clone(), persistent=False)  # on the image's device with it

    def decorrelated(self) -> torch.Tensor:
        """The image before colour mixing and sigmoid: (N, 3 or 4, H, W) decorrelated coordinates."""
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        # Lucid divides by 4 so that the sigmoid starts near its linear range.
        return torch.fft.irfft2(spectrum, s=(self.height, self.width)) / 4.0

    def forward(self) -> torch.Tensor:
        t = self.decorrelated()
        rgb = decorrelated_to_rgb(t[:, :3], self.color) if self.decorrelate else t[:, :3]
        if t.shape[1] == 3:
            return torch.sigmoid(rgb)
        return torch.sigmoid(torch.cat([rgb, t[:, 3:]], dim=1))  # the alpha plane is not colour-mixed


def sample_images(generator: torch.Generator, count: int, size: tuple[int, int], sd: float,
                  decay_power: float = 1.0) -> torch.Tensor:
    """(count, 3, H, W) random images of this parameterization (Lucid's `image_sample`): coefficients
    ~ N(0, sd^2) drawn from `generator`, on the CPU."""
    height, width = size
    spectrum = torch.randn((count, 3, height, width // 2 + 1, 2), generator=generator) * sd
    scaled = torch.view_as_complex(spectrum) * spectrum_scale(height, width, decay_power)
    return torch.sigmoid(decorrelated_to_rgb(torch.fft.irfft2(scaled, s=(height, width)) / 4.0))
