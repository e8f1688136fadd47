"""The "fast renders" bar: `--recipe fast` against Lucid's recipe, side by side, on the real weights.

    python bench/featurevis_recipes.py [--layers inception_3b,inception_4c] [--channels 32] [--size 224]
                                       [--store artifacts/fv-recipes]

For an evenly spaced sample of `--channels` channels of each layer, it renders the channel objective with
the featurevis view twice - Lucid's recipe at its 512 steps and the fast recipe at its 128 - batch by
batch in turn (so that whatever else the machine does weighs on both alike), reloads each *saved* PNG
and measures the mean activation of its own channel (post-ReLU, as the pages report it). It prints, per
layer: the median ratio fast / Lucid, the share of channels where fast >= Lucid, the compute ratio (the
sum over steps of the pixels of the batch the network sees, transforms included) and the wall-time
ratio - of each whole run_views call (the catalogue, the plan and writing the files included), of
its rendering stage alone, and of the process's CPU time; then one line per channel. The bar: fast >=
Lucid for >= 90 % of channels at <= 25 % of the compute.
It writes a contact sheet per layer and recipe into the store root, to compare by eye with each other
and with ../shared/reference. Resumable: each batch's time is kept in <store>/seconds.json, and a rerun
renders only the batches it has not timed yet.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microscope.network.catalogue import catalogue  # noqa: E402
from microscope.featurevis.batch import element_seed  # noqa: E402
from microscope.featurevis.recipe import RECIPES, Recipe  # noqa: E402
from microscope.featurevis.transform import draw_transforms, output_size  # noqa: E402
from microscope.network.loaded import load_network  # noqa: E402
from microscope.run.pipeline import run_views  # noqa: E402
from microscope.selection import Units  # noqa: E402
from microscope.store import Store  # noqa: E402
from microscope.views.featurevis import FeatureVisSettings  # noqa: E402
from featurevis_quality import contact_sheet, rendered_channel_means  # noqa: E402  (its sibling in bench/)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
RECIPE_NAMES = ("lucid", "fast")


def pixel_steps(recipe: Recipe, steps: int, size: int, seed: int = 0) -> int:
    """Pixels the network sees per element, summed over the steps, as render_batch draws them."""
    polish = recipe.polish_steps(steps)
    draws = draw_transforms(recipe.transforms, element_seed(seed, "transforms"), steps - polish)
    return sum(output_size(recipe.transforms, size, d.scale) ** 2 for d in draws) + polish * size * size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", default="inception_3b,inception_4c")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--store", default="artifacts/fv-recipes")  # artifacts/ is git-ignored
    parser.add_argument("--weights", default=str(SHARED / "weights" / "bvlc_googlenet.npz"))
    args = parser.parse_args()

    network = load_network("inceptionv1-caffe", weights=args.weights, progress=False)
    root = Path(args.store)
    root.mkdir(parents=True, exist_ok=True)
    stores = {name: Store(root / name) for name in RECIPE_NAMES}
    log_path = root / "seconds.json"
    seconds = json.loads(log_path.read_text()) if log_path.exists() else {}
    samples = {layer: [int(u) for u in np.linspace(0, catalogue(network, [layer])[0].channels, args.channels,
                                                   endpoint=False)] for layer in args.layers.split(",")}
    print(f"{torch.get_num_threads()} threads; channels: {samples}", flush=True)
    for layer, units in samples.items():
        for start in range(0, len(units), args.batch_size):
            chunk = units[start:start + args.batch_size]
            for name in RECIPE_NAMES:  # in turn, batch by batch
                key = f"{name}/{layer}/{chunk[0]}-{chunk[-1]}"
                if key in seconds:
                    continue
                settings = FeatureVisSettings(objectives=("channel",), size=args.size, batch_size=args.batch_size,
                                              recipe=name)  # at the recipe's own steps
                began, cpu = time.perf_counter(), time.process_time()
                outcome = run_views(network, ["featurevis"], store=stores[name].root, layers=[layer],
                          units=Units(tuple((u, u) for u in chunk)), settings={"featurevis": settings}, progress=False)
                seconds[key] = [time.perf_counter() - began, time.process_time() - cpu,
                                outcome.run.seconds["featurevis render"]]
                log_path.write_text(json.dumps(seconds, indent=1))
                print(f"{key}: {seconds[key][0]:.0f} s wall ({seconds[key][2]:.0f} s rendering), "
                      f"{seconds[key][1]:.0f} s cpu", flush=True)

    compute = {name: pixel_steps(RECIPES[name], RECIPES[name].default_steps, args.size) for name in RECIPE_NAMES}
    print("\n| layer | channels | median fast / Lucid | fast >= Lucid | compute fast / Lucid | wall fast / Lucid "
          "| rendering fast / Lucid | cpu time fast / Lucid |")
    print("|---|---|---|---|---|---|---|---|")
    lines = []
    for layer, units in samples.items():
        means = {name: rendered_channel_means(network, stores[name], layer, units) for name in RECIPE_NAMES}
        ratio = means["fast"] / np.maximum(means["lucid"], 1e-6)
        wall, cpu, rendering = ({name: sum(s[i] for k, s in seconds.items() if k.startswith(f"{name}/{layer}/"))
                                 for name in RECIPE_NAMES} for i in (0, 1, 2))
        print(f"| {layer} | {len(units)} | {np.median(ratio):.2f} | {np.sum(ratio >= 1)}/{len(units)} = "
              f"{np.mean(ratio >= 1):.0%} | {compute['fast'] / compute['lucid']:.3f} | "
              f"{wall['fast'] / wall['lucid']:.3f} ({wall['fast']:.0f} s / {wall['lucid']:.0f} s) | "
              f"{rendering['fast'] / rendering['lucid']:.3f} | {cpu['fast'] / cpu['lucid']:.3f} |")
        lines += [f"{layer} {u} {lucid:.2f} {fast:.2f} {r:.2f}"
                  for u, lucid, fast, r in zip(units, means["lucid"], means["fast"], ratio)]
        for name in RECIPE_NAMES:
            contact_sheet(network, stores[name], layer, units, root / f"contact-{layer}-{name}.png")
    print("\nlayer unit lucid_mean fast_mean ratio")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
