"""Render schedules side by side, for the "fast renders" issue: how much activation each reaches per compute.

    python bench/featurevis_schedules.py [--layer inception_3b] [--channels 8] [--size 224]
        [--plans "224:512:0.05;224:96:0.05+224:32:0.05:plain"] [--out DIR]

A plan is stages joined by "+", each SIZE:STEPS:LEARNING_RATE[:plain]: that many Adam steps of Lucid's
recipe (Fourier parameterization, decorrelated colour, sigmoid) at that image size, ":plain" without the
transforms (no padding, jitter, scale or rotation). A stage at another size continues from the last
one's spectrum (zero-padded: the same picture with room for finer detail); the optimiser starts afresh
at each stage. The first plan is the baseline (Lucid: 512 steps at 224 px).

For an evenly spaced sample of channels of the layer (channel objective on its pre-ReLU twin, as the
featurevis view renders it), it prints per plan: compute (sum over steps of pixels, relative to the
baseline), wall time (relative), and the activation of the saved (8-bit) image on its own channel: the
median ratio to the baseline's and the share of channels where the plan reaches at least the baseline.
It writes each plan's renders as one strip into --out, to compare by eye (and with ../shared/reference).
This is the exploration that chose `--recipe fast` (224:96:0.05+224:32:0.05:plain); bench/featurevis_recipes.py
measures the recipe as built.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microscope.network.catalogue import catalogue  # noqa: E402
from microscope.featurevis.batch import element_seed, featurevis_extractor  # noqa: E402
from microscope.featurevis.objectives import as_4d  # noqa: E402
from microscope.featurevis.param import FourierImage  # noqa: E402
from microscope.featurevis.recipe import NO_TRANSFORMS, Recipe  # noqa: E402
from microscope.featurevis.registry import UNIT_OBJECTIVES  # noqa: E402
from microscope.featurevis.render import render  # noqa: E402
from microscope.network.loaded import load_network  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def grown(spectrum: torch.Tensor, size: int) -> torch.Tensor:
    """Parameters of an (s, s) FourierImage placed in those of a (size, size) one: with param.py's
    1/frequency scale they describe the same picture, and the new coefficients start at zero."""
    n, channels, s, half, two = spectrum.shape
    if s == size:
        return spectrum.clone()
    big = torch.zeros(n, channels, size, size // 2 + 1, two)
    k = s // 2
    big[:, :, :k, :half] = spectrum[:, :, :k]
    big[:, :, size - (s - k):, :half] = spectrum[:, :, k:]
    return big


def run_plan(plan: str, extractor, objective, seeds, recipe: Recipe):
    """(final images as uint8 (N, H, W, 3), compute in pixel-steps, seconds)."""
    began, compute, image = time.perf_counter(), 0, None
    for stage, part in enumerate(plan.split("+")):
        fields = part.split(":")
        size, steps, learning_rate = int(fields[0]), int(fields[1]), float(fields[2])
        fresh = FourierImage(seeds, size, sd=recipe.init_sd, decay_power=recipe.decay_power)
        if image is not None:
            with torch.no_grad():
                fresh.spectrum.copy_(grown(image.spectrum.detach(), size))
        image = fresh
        render(extractor, objective, image, steps, transform_seed=element_seed(0, "transforms", stage),
               transforms=NO_TRANSFORMS if fields[3:] == ["plain"] else recipe.transforms, learning_rate=learning_rate)
        compute += steps * size * size
    with torch.no_grad():
        pixels = (image().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return pixels, compute, time.perf_counter() - began


def channel_means(extractor, layer: str, units: list[int], pixels: np.ndarray) -> np.ndarray:
    """Each saved image's mean activation on its own channel of `layer` (post-ReLU, as pages report)."""
    with torch.no_grad():
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255)
        activation = as_4d(extractor(x)[layer]).float()
    return activation[torch.arange(len(units)), torch.tensor(units)].flatten(1).mean(1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="inception_3b")
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--plans", default="224:512:0.05;224:128:0.05;224:96:0.05+224:32:0.05:plain;"
                                           "112:256:0.05+224:64:0.05")
    parser.add_argument("--weights", default=str(SHARED / "weights" / "bvlc_googlenet.npz"))
    parser.add_argument("--out", default="artifacts/fv-schedules")
    args = parser.parse_args()
    torch.manual_seed(0)
    network = load_network("inceptionv1-caffe", args.weights, progress=False)
    target = network.layer(args.layer).pre_relu or args.layer
    extractor = featurevis_extractor(network, [target, args.layer])
    channels = catalogue(network, [args.layer])[0].channels
    units = [int(u) for u in np.linspace(0, channels, args.channels, endpoint=False)]
    recipe = Recipe()
    objective = UNIT_OBJECTIVES["channel"].make(target, args.layer, units, recipe)
    seeds = [element_seed(0, args.layer, unit, "channel", 0) for unit in units]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{args.layer}, channels {units}, {torch.get_num_threads()} threads")
    print(f"{'plan':44s} {'compute':>8s} {'wall':>8s} {'median':>7s} {'>= base':>8s}")
    base = None
    for plan in args.plans.split(";"):
        pixels, compute, seconds = run_plan(plan, extractor, objective, seeds, recipe)
        means = channel_means(extractor, args.layer, units, pixels)
        base = base or (means, compute, seconds)
        ratio = means / base[0]
        Image.fromarray(np.concatenate(list(pixels), axis=1)).save(out / f"{args.layer}-{plan.replace(':', '_')}.png")
        print(f"{plan:44s} {compute / base[1]:8.2f} {seconds / base[2]:8.2f} {np.median(ratio):7.2f} "
              f"{np.mean(ratio >= 1):8.2f}", flush=True)


if __name__ == "__main__":
    main()
