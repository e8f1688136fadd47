"""Every stage measured side by side in one run, and the projected time of a whole InceptionV1 (issue 31).

    .venv/bin/python bench/gpu.py --photos DIR --weights PATH|random [--device auto|cuda|cpu] [--quick]
                                  [--photo-count 50000]

Meant for one GPU (under 8 minutes there); `--device cpu --quick` runs in about a minute on a laptop
(tests/test_bench_gpu.py runs it). Timings reuse bench/featurevis.py (`bare_step`, `time_lucent`,
`import_lucent`, `warm_up`) and bench/examples.py (`joined`, `BareForward`, `stage`), and the view's own
step timer (microscope/featurevis/batch.py `step_seconds`). Stages, each against its floor:

  feature visualization   seconds per element-step (one image of one unit, one optimisation step) of
                          `render_batch` at the view's batch size (on CUDA measured for the layer:
                          featurevis/sizing.py; 8 on CPU) and precision (bf16 on CUDA), on `--layer`;
                          against a bare forward+backward of the same extractor on a batch of that size,
                          same precision; and against torch-lucent's `render_vis` (one channel per call),
                          when `lucent` is importable. The same steps through the network compiled
                          (featurevis/compiled.py, `build --compile on`) beside the eager ones, with
                          the compilation's own seconds (not under --quick on a CPU: compiling there takes
                          longer than the whole run).
  examples                images per second of the examples pass (bench/examples.py `stage`: the whole
                          view through the pipeline) over the photos; against a bare decode + forward of
                          the same photos (ImageDataset.batches, one process decoding, the network
                          truncated after the same layers). On CUDA both decode plain JPEGs on the device
                          (microscope/data/jpeg.py), the pass because run_shard picks it there.
  SAE                     training steps per second (microscope/sae/train.py) on random vectors of the
                          layer's width, batch 512; no baseline.
  atlas icons             icons per second (the icon objective `direction_neuron`, Lucid's transforms, the
                          atlas's defaults: 96 px, batch 128 on CUDA / 16 on CPU); against a bare
                          forward+backward of a batch of that size at the transformed size.
  site                    seconds per unit page of `build_site` over the store the examples stage wrote.

The projection (the last column; the total line sums the stage rows):

  layers L         every conv and block layer of inceptionv1-caffe (conv1, conv2_reduce, conv2, the nine
                   inception blocks): 12 layers, their channels C_L from the layer catalogue.
  layer weight w_L a bare forward+backward of the extractor truncated after L (at the feature
                   visualization's size and batch), over the same on `--layer`: a deeper layer costs more.
  feature vis.     sum over L of C_L x E x S x t x w_L, per recipe: E = 7 images per unit for the four
                   default objectives (channel, neuron, negative: 1 each; diversity: 4), S = the recipe's
                   steps (lucid 512, fast 128), t = the measured seconds per element-step (for `fast`
                   scaled by `relative_pixels`: its polish steps see untransformed, smaller images).
  examples         photo-count x (the pass's seconds per photo over the nine blocks) + the seconds after
                   the pass (patches, thumbnails, summaries) scaled by units of the nine blocks / units
                   measured. With --quick only inception_3a is measured: the pass is then too cheap.
  SAEs             two layers (inception_3b, inception_4c) at the default steps (sizing.MIN_STEPS, 6000:
                   early stopping may end sooner, a large data set may need more), each at its width.
  atlases          sum over L of ICONS x w_L / icons per second, ICONS = grid^2 + (2 grid)^2 = 2,000 cells
                   per layer at the default grid 20 (an upper bound: only cells with > 5 vectors get an
                   icon). The UMAP layout and class attribution are not counted.
  site             units (sum of C_L) x seconds per unit page.

Approximate: w_L comes from bare passes at one batch size; the diversity objective's extra term and each
render's final measurement are not counted; the examples pass's rate is that of few photos (the pass
streams, so it holds); the site's unit pages here have no renders (an examples-only store).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from microscope.examples.planning import default_batch  # noqa: E402
from microscope.featurevis.batch import (UnitBatch, featurevis_extractor, optimised_layer, relative_pixels,  # noqa: E402
                                         render_batch, step_seconds)
from microscope.featurevis.compiled import compiled_extractor  # noqa: E402
from microscope.featurevis.objectives import direction_neuron  # noqa: E402
from microscope.jobs import usable_cpus  # noqa: E402
from microscope.featurevis.param import FourierImage  # noqa: E402
from microscope.featurevis.recipe import NO_TRANSFORMS, RECIPES  # noqa: E402
from microscope.featurevis.registry import DEFAULT_OBJECTIVES, UNIT_OBJECTIVES  # noqa: E402
from microscope.featurevis.render import render, resolve_precision  # noqa: E402
from microscope.featurevis.sizing import measured_batch_size  # noqa: E402
from microscope.featurevis.transform import TransformRecipe, output_size  # noqa: E402
from microscope.network.catalogue import catalogue  # noqa: E402
from microscope.network.loaded import load_network  # noqa: E402
from microscope.sae.sizing import MIN_STEPS  # noqa: E402
from microscope.sae.train import TrainSettings, Vectors, train  # noqa: E402
from microscope.site.builder import build_site  # noqa: E402
from microscope.store import Store  # noqa: E402
from microscope.views.atlas import AtlasSettings  # noqa: E402


def bench_module(name: str):
    """Another bench script as a module (bench/ is not a package; its scripts are reused, not copied)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FV, EXAMPLES = bench_module("featurevis"), bench_module("examples")
BLOCKS = EXAMPLES.BLOCKS
SAE_LAYERS = ("inception_3b", "inception_4c")
ELEMENTS = sum(UNIT_OBJECTIVES[name].images(RECIPES["lucid"]) for name in DEFAULT_OBJECTIVES)  # 7


@dataclass(frozen=True)
class Plan:
    """How much of each stage is timed: about a second each with --quick, a few seconds otherwise."""

    size: int = 224  # feature visualization
    fv_steps: int = 8
    lucent_channels: int = 2
    lucent_steps: int = 8
    example_layers: tuple[str, ...] = tuple(BLOCKS)
    sae_steps: int = 40
    icon_steps: int = 8


QUICK = Plan(size=64, fv_steps=3, lucent_channels=1, lucent_steps=2, example_layers=("inception_3a",), sae_steps=3,
             icon_steps=2)


def synced(device: torch.device, run) -> float:
    """Seconds `run()` took, the device's queue drained before and after (CUDA returns early)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    began = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - began


def autocast(device: torch.device, dtype):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def bare_seconds(network, layer: str, batch: int, side: int, steps: int, dtype=None) -> float:
    """Seconds per element-step of a bare forward+backward (bench/featurevis.py's `bare_step`)."""
    target = optimised_layer(network, layer)
    extractor = featurevis_extractor(network, [target])
    x = torch.rand(batch, 3, side, side, device=network.device).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    with autocast(network.device, dtype):
        FV.bare_step(extractor, target, x)  # warm-up: kernels are chosen per shape

        def run():
            for _ in range(steps):
                FV.bare_step(extractor, target, x)
        return synced(network.device, run) / (batch * steps)


def time_featurevis(network, plan: Plan, layer: str, layers: list, compiled: bool) -> dict:
    device = network.device
    dtype = resolve_precision("auto", device)
    lucid, fast = RECIPES["lucid"], RECIPES["fast"]
    target = optimised_layer(network, layer)
    extractor = featurevis_extractor(network, [target, layer] if target != layer else [layer])  # as the view's
    channels = {info.name: info.channels for info in layers}.get(layer) or catalogue(network, [layer])[0].channels
    template = UnitBatch(layer, target, UNIT_OBJECTIVES["channel"], (0,), lucid.default_steps, plan.size, 0, lucid,
                         dtype)
    batch = measured_batch_size(network, extractor, template, channels)  # the view's (microscope/views/featurevis.py)
    units = replace(template, units=tuple(i % channels for i in range(batch)))
    step = step_seconds(network, extractor, units, steps=plan.fv_steps) / batch  # lucid's average step
    scale = relative_pixels(lucid, plan.size, lucid.default_steps)
    weights = {info.name: bare_seconds(network, info.name, batch, plan.size, 1, dtype) for info in layers}
    bare = bare_seconds(network, layer, batch, plan.size, plan.fv_steps, dtype) * scale
    result = {"batch": batch, "dtype": dtype, "lucid": step, "bare": bare, "layer_weight": {
        name: seconds / weights[layer] for name, seconds in weights.items()},
        "fast": step / scale * relative_pixels(fast, plan.size, fast.default_steps)}
    result["lucent"] = time_lucent(network, plan, layer)
    result["compiled"] = time_compiled(network, plan, extractor, units) if compiled else None
    return result


def time_compiled(network, plan: Plan, extractor, units: UnitBatch) -> dict:
    """Seconds per element-step of the same steps through the compiled network (lucid's average step),
    and the seconds of the first step (nearly all of it compiling: forward and backward, this one shape)."""
    stepper = compiled_extractor(extractor)
    plain = replace(units.recipe, transforms=NO_TRANSFORMS, polish_share=0.0)  # step_seconds's shape
    compiling = synced(network.device, lambda: render_batch(network, extractor, replace(units, steps=1, recipe=plain),
                                                              step_extractor=stepper))
    step = step_seconds(network, extractor, units, steps=plan.fv_steps, step_extractor=stepper) / len(units.units)
    return {"lucid": step, "compile_s": compiling}


def time_lucent(network, plan: Plan, layer: str) -> float | None:
    """torch-lucent's seconds per channel-step on the same device, or None when it is not installed."""
    if importlib.util.find_spec("lucent") is None:
        return None
    import warnings
    warnings.filterwarnings("ignore")  # lucent and kornia 0.4 are old: deprecation noise
    lucent = FV.import_lucent()
    model = lucent[0](pretrained=False).to(network.device).eval()
    lucent_layer = layer.replace("inception_", "mixed")  # lucent's names for the same blocks
    FV.time_lucent(lucent, model, lucent_layer, 1, plan.size, 1)  # warm-up
    return FV.time_lucent(lucent, model, lucent_layer, plan.lucent_channels, plan.size, plan.lucent_steps)


def time_examples(network, plan: Plan, photos: Path, scratch: Path) -> dict:
    """The examples stage (bench/examples.py `stage`) against a bare decode + forward of the same photos."""
    dataset = EXAMPLES.joined([photos], 0, scratch)
    layers = list(plan.example_layers)
    batch_size = default_batch(network.device)  # as build picks it
    decoded = torch.stack([dataset.load(i)[0] for i in range(min(len(dataset), batch_size))])
    # No bare batches inside the pass (every: never); the bare decode + forward is timed below instead.
    bares = [EXAMPLES.BareForward(network, decoded, layers, batch_size)]
    stores = scratch / "stores"
    stores.mkdir()
    result = EXAMPLES.stage(network, dataset, layers, bares, 10**9, stores, batch_size, 0, 0)
    extractor = network.extractor(layers)

    # Decoded as the pass decodes: plain JPEGs on the device on CUDA (pinned, non-blocking copies for the rest),
    # by this process's Pillow on the CPU - so the ratio compares like with like.
    cuda = network.device.type == "cuda"

    def bare():
        with torch.inference_mode():
            for batch in dataset.batches(batch_size, workers=0, pin_memory=cuda,
                                         decode_on=network.device if cuda else None):
                rgb = batch.images.to(network.device, non_blocking=True).float().div_(255)
                extractor(rgb.contiguous(memory_format=torch.channels_last))
    seconds = synced(network.device, bare)
    return {"pass": result["pass"], "pass_s": result["pass_s"], "after": result["after"], "images": len(dataset),
            "bare": len(dataset) / seconds, "layers": layers, "store": next(stores.iterdir())}


def time_sae(plan: Plan, widths: dict[str, int], device: torch.device) -> dict[str, float]:
    """Training steps per second at each layer's width (8 x expansion, k 32, batch 512: the view's defaults)."""
    rates = {}
    rng = np.random.default_rng(0)
    for layer, width in widths.items():
        vectors = Vectors([np.maximum(rng.normal(size=(2048, width)), 0).astype(np.float32)])
        settings = TrainSettings(features=8 * width, k=32, steps=plan.sae_steps, checkpoint_every=10**9)
        began = time.perf_counter()
        train(vectors, settings, device=device)
        rates[layer] = plan.sae_steps / (time.perf_counter() - began)
    return rates


def time_icons(network, plan: Plan, layer: str) -> dict:
    """Icons per second of the atlas's renders on `layer`, and the bare forward+backward's equivalent."""
    icons = AtlasSettings().icons(0, network.device)
    extractor = featurevis_extractor(network, [layer])
    channels = extractor(torch.zeros(1, 3, icons.size, icons.size, device=network.device))[layer].shape[1]
    means = torch.rand(icons.batch_size, channels, generator=torch.Generator().manual_seed(0))
    recipe = RECIPES["lucid"]

    def run():
        render(extractor, direction_neuron(layer, means.to(network.device)),
               FourierImage(list(range(icons.batch_size)), icons.size).to(network.device), plan.icon_steps,
               transform_seed=0, transforms=recipe.transforms)
    seconds = synced(network.device, run)
    side = output_size(TransformRecipe(), icons.size, 1.0)
    bare = bare_seconds(network, layer, icons.batch_size, side, plan.icon_steps) * icons.steps
    return {"rate": icons.batch_size * plan.icon_steps / (seconds * icons.steps), "bare": 1 / bare,
            "batch": icons.batch_size, "size": icons.size, "steps": icons.steps}


def time_site(store: Path, out: Path) -> dict:
    began = time.perf_counter()
    build_site(Store(store), out, progress=False)
    seconds = time.perf_counter() - began
    pages = len(list(out.glob("models/*/*/*/index.html")))
    return {"per_page": seconds / max(1, pages), "pages": pages}


def hours(seconds: float) -> str:
    return f"{seconds:.1f} s ({seconds / 3600:.2f} h)"


def rows(fv: dict, ex: dict, sae: dict, icons: dict, site: dict, channels: dict, photo_count: int):
    """(stage, measured, baseline, ratio, projected seconds or None) of each row."""
    weight = fv["layer_weight"]
    units = sum(channels.values())
    fv_rows = []
    for name in ("lucid", "fast"):
        steps = RECIPES[name].default_steps
        projected = sum(c * ELEMENTS * steps * fv[name] * weight[layer] for layer, c in channels.items())
        fv_rows.append((f"feature vis., {name} recipe ({steps} steps, batch {fv['batch']})",
                        f"{fv[name] * 1e3:.3f} ms / element-step", f"bare fwd+bwd {fv['bare'] * 1e3:.3f} ms",
                        f"{fv[name] / fv['bare']:.2f}x", projected))
    compiled = fv["compiled"]
    fv_rows.append((f"feature vis., lucid recipe, compiled (batch {fv['batch']})",
                    "not timed (--quick on a CPU: compiling costs more than the run)" if compiled is None else
                    f"{compiled['lucid'] * 1e3:.3f} ms / element-step (compiling {compiled['compile_s']:.0f} s)",
                    f"eager {fv['lucid'] * 1e3:.3f} ms",
                    "-" if compiled is None else f"{fv['lucid'] / compiled['lucid']:.2f}x faster", None))
    lucent = fv["lucent"]
    lucent_row = ("torch-lucent, lucid recipe (batch 1)",
                  "not installed" if lucent is None else f"{lucent * 1e3:.3f} ms / channel-step",
                  f"microscope {fv['lucid'] * 1e3:.3f} ms", "-" if lucent is None else f"{lucent / fv['lucid']:.2f}x",
                  None)
    measured_units = sum(channels[layer] for layer in ex["layers"])
    block_units = sum(channels[layer] for layer in BLOCKS)
    examples = (photo_count * ex["pass_s"] / ex["images"]) + ex["after"] * block_units / measured_units
    sae_seconds = sum(MIN_STEPS / rate for rate in sae.values())
    icon_seconds = sum((AtlasSettings().grid ** 2 + (2 * AtlasSettings().grid) ** 2) * weight[layer] / icons["rate"]
                       for layer in channels)
    return [*fv_rows, lucent_row,
            (f"examples pass ({', '.join(ex['layers']) if len(ex['layers']) < 9 else 'nine blocks'}, "
             f"{ex['images']} photos)", f"{ex['pass']:.1f} images/s", f"bare decode+forward {ex['bare']:.1f} images/s",
             f"{ex['pass'] / ex['bare']:.2f}x", examples),
            (f"SAE training ({', '.join(sae)}, batch 512)",
             ", ".join(f"{rate:.2f}" for rate in sae.values()) + " steps/s", "none", "-", sae_seconds),
            (f"atlas icons ({icons['size']} px, {icons['steps']} steps, batch {icons['batch']})",
             f"{icons['rate']:.3f} icons/s", f"bare fwd+bwd {icons['bare']:.3f} icons/s",
             f"{icons['bare'] / icons['rate']:.2f}x", icon_seconds),
            (f"site ({site['pages']} unit pages)", f"{site['per_page'] * 1e3:.1f} ms / unit page", "none", "-",
             units * site["per_page"])]


def cpu_share(table: list, ex: dict, site: dict, channels: dict) -> str:
    """The projected seconds of the work left to the CPU cores after the device's: the examples stage after its
    pass (summaries, patch cutting and encoding, thumbnails: forked over the cores) and the site's pages."""
    measured_units = sum(channels[layer] for layer in ex["layers"])
    after = ex["after"] * sum(channels[layer] for layer in BLOCKS) / measured_units
    pages = sum(channels.values()) * site["per_page"]
    total = sum(row[4] for row in table if row[4] is not None)
    return (f"CPU work after the device's: examples after the pass {hours(after)}, site pages {hours(pages)}; "
            f"{(after + pages) / total:.1%} of the projected total, on {usable_cpus()} cores")


def print_table(table: list) -> None:
    print("| stage | measured | baseline | ratio | projected, whole InceptionV1 |")
    print("|---|---|---|---|---|")
    for stage, measured, baseline, ratio, projected in table:
        print(f"| {stage} | {measured} | {baseline} | {ratio} | "
              f"{'- (not in the total)' if projected is None else hours(projected)} |")
    total = sum(row[4] for row in table if row[4] is not None)
    print(f"| **total** | | | | **{hours(total)}** |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, required=True, help="a folder of photos (the examples stage's)")
    parser.add_argument("--weights", required=True, help="inceptionv1-caffe weights (.npz/.caffemodel) or 'random'")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--quick", action="store_true", help="tiny counts: about a second a stage (for tests)")
    parser.add_argument("--photo-count", type=int, default=50_000, help="photos the projection's examples pass sees")
    parser.add_argument("--layer", default="inception_4a", help="where feature vis. and icons are timed")
    args = parser.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    plan = QUICK if args.quick else Plan()
    network = load_network("inceptionv1-caffe", weights=args.weights, device=device, progress=False)
    layers = [info for info in catalogue(network, [layer.name for layer in network.layers
                                                   if layer.kind in ("conv", "block")])]
    channels = {info.name: info.channels for info in layers}
    print(f"bench/gpu.py on {network.device} ({torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}){', quick' if args.quick else ''}. Timing:\n"
          f"  feature vis. on {args.layer} at {plan.size} px, {plan.fv_steps} steps, and a bare fwd+bwd of each of "
          f"{len(layers)} layers; torch-lucent {plan.lucent_channels} channel(s) x {plan.lucent_steps} steps\n"
          f"  the examples stage over {args.photos} ({', '.join(plan.example_layers)}) and a bare decode+forward\n"
          f"  SAE training, {plan.sae_steps} steps at the widths of {', '.join(SAE_LAYERS)}\n"
          f"  atlas icons on {args.layer}, {plan.icon_steps} steps, and a bare fwd+bwd\n"
          f"  the site over the examples' store\n"
          f"Projection: {len(layers)} layers, {sum(channels.values())} units, {args.photo_count} photos "
          f"(see the docstring)\n", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        # Compiling on a CPU (a C++ compiler run, a minute or more on a laptop) would be most of a --quick run.
        fv = time_featurevis(network, plan, args.layer, layers, compiled=not (args.quick and device == "cpu"))
        ex = time_examples(network, plan, args.photos, scratch)
        sae = time_sae(plan, {layer: channels[layer] for layer in SAE_LAYERS}, network.device)
        icons = time_icons(network, plan, args.layer)
        site = time_site(ex["store"], scratch / "site")
    table = rows(fv, ex, sae, icons, site, channels, args.photo_count)
    print_table(table)
    print(cpu_share(table, ex, site, channels))


if __name__ == "__main__":
    main()
