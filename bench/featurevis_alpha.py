"""Transparent renders (`channel-alpha`) against the best dataset example, on the real weights.

    python bench/featurevis_alpha.py --store ../scratch-concepts/store [--layers inception_4c] [--units 6]
                                     [--recipe lucid] [--steps 512] [--penalty 1.0] [--penalty-from 0.25]
                                     [--sheets ../scratch-alpha] [--opaque]

For `--units` evenly spaced channels of each layer, render the channel-alpha objective (one batch per
layer, the recipe's transparency numbers unless `--penalty`/`--penalty-from` replace them) and print per
unit: the render's mean alpha, the unit's channel mean and spatial max on the saved RGBA render composited
over the recipe's 8 seeded random backgrounds (what the stored record says), and the unit's best dataset
example (the examples view's `dataset_max`: its top value, read from `--store`'s summary.npz, which this
only reads). `--opaque` also renders the plain channel objective, for the same numbers and for the
sheets: `--sheets` writes, per unit, the transparent render over a checkerboard beside the opaque one.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microscope.featurevis.batch import UnitBatch, featurevis_extractor, optimised_layer, render_batch  # noqa: E402
from microscope.featurevis.recipe import RECIPES  # noqa: E402
from microscope.featurevis.registry import UNIT_OBJECTIVES  # noqa: E402
from microscope.network.catalogue import catalogue  # noqa: E402
from microscope.network.loaded import load_network  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def dataset_max(store: Path, model: str, layer: str) -> np.ndarray:
    """(channels,) each unit's best dataset example (its top value), as the examples view's facts say."""
    with np.load(store / model / layer / "examples" / "summary.npz") as summary:
        return summary["top_values"][:, 0].astype(float)


def checkerboard(size: int, square: int = 8) -> Image.Image:
    y, x = np.indices((size, size)) // square
    return Image.fromarray(np.where((x + y) % 2 == 0, 204, 255).astype(np.uint8)).convert("RGB")


def sheet(rgba: np.ndarray, rgb: np.ndarray | None) -> Image.Image:
    """The transparent render over a checkerboard, beside the opaque render."""
    side = rgba.shape[0]
    over = checkerboard(side)
    over.paste(Image.fromarray(rgba, "RGBA"), (0, 0), Image.fromarray(rgba, "RGBA"))
    out = Image.new("RGB", (side * (2 if rgb is not None else 1) + (8 if rgb is not None else 0), side), "white")
    out.paste(over, (0, 0))
    if rgb is not None:
        out.paste(Image.fromarray(rgb), (side + 8, 0))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default=str(SHARED.parent / "scratch-concepts" / "store"))
    parser.add_argument("--layers", default="inception_4c")
    parser.add_argument("--units", type=int, default=6, help="evenly spaced channels per layer")
    parser.add_argument("--recipe", default="lucid", choices=tuple(RECIPES))
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--penalty", type=float, default=None)
    parser.add_argument("--penalty-from", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--opaque", action="store_true", help="also render the channel objective")
    parser.add_argument("--sheets", default=None, help="folder for the checkerboard sheets (outside the repo)")
    parser.add_argument("--weights", default=str(SHARED / "weights" / "bvlc_googlenet.npz"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    network = load_network("inceptionv1-caffe", weights=args.weights, progress=False)
    recipe = RECIPES[args.recipe]
    numbers = recipe.transparency
    if args.penalty is not None:
        numbers = replace(numbers, penalty=args.penalty)
    if args.penalty_from is not None:
        numbers = replace(numbers, penalty_from=args.penalty_from)
    recipe = replace(recipe, transparency=numbers)
    steps = args.steps or recipe.default_steps
    print(f"recipe {recipe.name} {steps} steps at {args.size} px, transparency {numbers.as_dict()}")
    print("| layer | unit | mean alpha | alpha sd | channel mean | max (8 backgrounds) | opaque max | "
          "dataset max | max / dataset |")
    print("|---|---|---|---|---|---|---|---|---|")
    for layer in args.layers.split(","):
        channels = catalogue(network, [layer])[0].channels
        units = tuple(sorted({int(round(u)) for u in np.linspace(0, channels - 1, args.units + 2)[1:-1]}))
        best = dataset_max(Path(args.store), network.spec.name, layer)
        target = optimised_layer(network, layer)
        extractor = featurevis_extractor(network, [target, layer] if target != layer else [layer])
        made = {}
        for name in ("channel-alpha", "channel") if args.opaque else ("channel-alpha",):
            began = time.perf_counter()
            made[name] = render_batch(network, extractor, UnitBatch(layer, target, UNIT_OBJECTIVES[name], units, steps,
                                                                    args.size, args.seed, recipe))
            print(f"<!-- {layer} {name}: {time.perf_counter() - began:.0f} s -->", flush=True)
        alpha = made["channel-alpha"]
        for i, unit in enumerate(units):
            a = alpha.pixels[i, ..., 3] / 255
            opaque = f"{made['channel'].activation_max[i]:.1f}" if "channel" in made else "-"
            print(f"| {layer} | {unit} | {a.mean():.3f} | {a.std():.3f} | {alpha.activation_mean[i]:.1f} | "
                  f"{alpha.activation_max[i]:.1f} | {opaque} | {best[unit]:.1f} | "
                  f"{alpha.activation_max[i] / best[unit]:.2f} |", flush=True)
            if args.sheets:
                Path(args.sheets).mkdir(parents=True, exist_ok=True)
                rgb = made["channel"].pixels[i] if "channel" in made else None
                sheet(alpha.pixels[i], rgb).save(Path(args.sheets) / f"{layer}-{unit}-{recipe.name}{steps}.png")


if __name__ == "__main__":
    main()
