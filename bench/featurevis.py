"""Feature visualization speed, side by side in one run, on the `inceptionv1` architecture.

    python bench/featurevis.py [--size 224] [--steps 12] [--batch 8] [--layer mixed4a] [--repeats 3]

Rows (same image size and steps; random weights, which cost the same as trained ones):
  microscope   `render`: one batch element per channel, network truncated after the layer, weights
               frozen, channels_last, closed-form LRN backward, seeded transforms.
  bare         forward + backward of the same truncated extractor on a batch of the same size at the
               transformed input size (236 px for 224), nothing else: the floor for `microscope`.
  bare, torch LRN   the same through `Network.extractor` as it is (torch's LocalResponseNorm).
  lucent       torch-lucent's `render.render_vis` with its own InceptionV1 (pretrained=False), one
               channel per call, as its tutorials use it: a reference implementation of the recipe.
Targets: microscope >= 4x faster per channel-step than lucent; microscope <= 1.25x bare.

Every input size a contender will meet is warmed up first (oneDNN builds kernels per shape; over a
512-step render that is nothing, over a few timed steps it would dominate). Rows are interleaved and
repeated, and the fastest repeat is kept: on a shared machine, the least disturbed.

Needs torch-lucent (`pip install torch-lucent --no-deps decorator "kornia==0.4.1"`: lucent calls
`kornia.get_rotation_matrix2d`, which later kornia releases dropped). lucent imports IPython only to
show images in notebooks; when IPython is absent a stub module stands in (nothing is shown here).
"""
from __future__ import annotations

import argparse
import sys
import time
import types
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microscope.featurevis import objectives as obj  # noqa: E402
from microscope.featurevis.param import FourierImage  # noqa: E402
from microscope.featurevis.render import render  # noqa: E402
from microscope.featurevis.transform import TransformRecipe, output_size  # noqa: E402
from microscope.featurevis.batch import featurevis_extractor  # noqa: E402
from microscope.network.loaded import load_network  # noqa: E402


def import_lucent():
    try:
        import IPython.display  # noqa: F401
    except ImportError:
        ipython = types.ModuleType("IPython")
        ipython.display = types.ModuleType("IPython.display")
        ipython.display.display = ipython.display.HTML = lambda *a, **k: None
        sys.modules.update({"IPython": ipython, "IPython.display": ipython.display})
    from lucent.modelzoo import inceptionv1
    from lucent.optvis import param, render as lucent_render
    return inceptionv1, param, lucent_render


def time_microscope(extractor, target, batch, size, steps):
    image = FourierImage(list(range(batch)), size)
    began = time.perf_counter()
    render(extractor, obj.channel(target, list(range(batch))), image, steps, transform_seed=0)
    return (time.perf_counter() - began) / (batch * steps)


def bare_step(extractor, target, x):
    x.grad = None
    extractor(x)[target].mean(dim=(2, 3)).diagonal().sum().backward()  # element i: channel i


def time_bare(extractor, target, batch, size, steps):
    side = output_size(TransformRecipe(), size, 1.0)
    x = torch.rand(batch, 3, side, side).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    began = time.perf_counter()
    for _ in range(steps):
        bare_step(extractor, target, x)
    return (time.perf_counter() - began) / (batch * steps)


def time_lucent(lucent, model, layer, channels, size, steps):
    _, param, lucent_render = lucent
    began = time.perf_counter()
    for channel in range(channels):
        lucent_render.render_vis(model, f"{layer}:{channel}", param_f=lambda: param.image(size),
                                 thresholds=(steps,), show_image=False, progress=False)
    return (time.perf_counter() - began) / (channels * steps)


def warm_up(extractors, target, batch, size, lucent_model):
    recipe = TransformRecipe()
    for side in sorted({output_size(recipe, size, scale) for scale in recipe.scales}):
        for extractor in extractors:
            x = torch.rand(batch, 3, side, side).contiguous(memory_format=torch.channels_last)
            bare_step(extractor, target, x.requires_grad_(True))
    # lucent pads to size + 24 and then resizes by 0.9-1.1 (a downscaled image is padded back).
    for side in range(size + 22, int((size + 24) * 1.1) + 3):
        lucent_model(torch.rand(1, 3, side, side, requires_grad=True)).sum().backward()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=8, help="channels per microscope batch")
    parser.add_argument("--layer", default="mixed4a")
    parser.add_argument("--lucent-channels", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # lucent and kornia 0.4 are old: deprecation noise

    network = load_network("inceptionv1", weights="random", progress=False)
    target = network.layer(args.layer).pre_relu or args.layer
    fast = featurevis_extractor(network, [target])
    plain = network.extractor([target])
    lucent = import_lucent()
    lucent_model = lucent[0](pretrained=False).eval()  # as lucent's tutorials use it
    warm_up([fast, plain], target, args.batch, args.size, lucent_model)

    runs = {
        "microscope": lambda: time_microscope(fast, target, args.batch, args.size, args.steps),
        "bare": lambda: time_bare(fast, target, args.batch, args.size, args.steps),
        "bare, torch LRN": lambda: time_bare(plain, target, args.batch, args.size, args.steps),
        "lucent": lambda: time_lucent(lucent, lucent_model, args.layer, args.lucent_channels, args.size, args.steps),
    }
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].append(run())
    best = {name: min(values) for name, values in times.items()}

    print(f"\nfeature visualization, inceptionv1 {args.layer}, {args.size} px, {args.steps} steps, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, best of {args.repeats}")
    print(f"| {'':16} | {'s / channel-step':>16} | {'vs microscope':>13} | batch |")
    print(f"|{'-' * 18}|{'-' * 18}|{'-' * 15}|-------|")
    batches = {"lucent": 1}
    for name in runs:
        print(f"| {name:16} | {best[name]:16.4f} | {best[name] / best['microscope']:12.2f}x | "
              f"{batches.get(name, args.batch):5} |")
    speedup = best["lucent"] / best["microscope"]
    overhead = best["microscope"] / best["bare"] - 1
    print(f"\nspeed-up over lucent: {speedup:.2f}x (target >= 4x); "
          f"overhead over bare forward+backward: {overhead * 100:+.1f}% (target <= 25%)")


if __name__ == "__main__":
    main()
