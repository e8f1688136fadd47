"""The issue's quality bar for feature visualization, on the real weights.

    python bench/featurevis_quality.py [--layers inception_3b,inception_4c] [--channels 32] [--offsets 0]
                                       [--steps 512] [--size 224] [--store artifacts/fv-quality]

For an evenly spaced sample of `--channels` channels of each layer (or the union of such samples
shifted by each of `--offsets`, so that a sample can grow run by run), render the channel objective
(pre-ReLU, Lucid's recipe) with the featurevis view, reload the *saved* PNG, and compare the channel's mean
activation on it with the best channel mean over the 1000 photos of ../shared/data/imagenet-sample
(evaluation view: shorter side 256, centre crop 224). The bar: the render wins for >= 90 % of channels.
Writes a contact sheet per layer (renders in unit order, left to right, top to bottom) into the store
root and prints a table. Renders are resumable: re-running the command continues where it stopped.
`--reference 16` also renders inception_4a units 0-15 for 128 steps, the setting of
../shared/reference/fv-caffe-inception_4a-units0-15-128steps.jpg, for a side-by-side look.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microscope.network.catalogue import catalogue  # noqa: E402
from microscope.network.loaded import load_network  # noqa: E402
from microscope.run.pipeline import run_views  # noqa: E402
from microscope.selection import Units  # noqa: E402
from microscope.store import Store  # noqa: E402
from microscope.views.featurevis import FeatureVisSettings  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def photo_channel_means(network, layers, photos: Path, batch: int = 16) -> dict[str, np.ndarray]:
    """(photos, channels) channel means of each layer over the photos' evaluation views."""
    files = sorted(p for p in photos.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    means = {layer: [] for layer in layers}
    for start in range(0, len(files), batch):
        views = []
        for path in files[start:start + batch]:
            with Image.open(path) as image:
                image = TF.center_crop(TF.resize(image.convert("RGB"), 256), 224)
                views.append(TF.to_tensor(image))
        with torch.no_grad():
            acts = network.activations(torch.stack(views), list(layers))
        for layer in layers:
            means[layer].append(acts[layer].mean(dim=(2, 3)).cpu().numpy())
    return {layer: np.concatenate(values) for layer, values in means.items()}


def render(network, store: Store, layer: str, units: list[int], steps: int, size: int, batch_size: int) -> float:
    """The channel objective of `units` through the featurevis view; returns the seconds it took."""
    began = time.perf_counter()
    run_views(network, ["featurevis"], store=store.root, layers=[layer], units=Units(tuple((u, u) for u in units)),
              settings={"featurevis": FeatureVisSettings(objectives=("channel",), steps=steps, size=size,
                                                         batch_size=batch_size)},
              progress=True)
    return time.perf_counter() - began


def rendered_channel_means(network, store: Store, layer: str, units: list[int]) -> np.ndarray:
    values = []
    for unit in units:
        path = store.renders_dir(network.spec.name, layer, unit) / "channel.png"
        with Image.open(path) as image:
            x = TF.to_tensor(image.convert("RGB"))[None]
        with torch.no_grad():
            values.append(float(network.activations(x, [layer])[layer][0, unit].mean()))
    return np.array(values)


def contact_sheet(network, store: Store, layer: str, units: list[int], path: Path, columns: int = 8) -> None:
    tiles = [Image.open(store.renders_dir(network.spec.name, layer, u) / "channel.png").convert("RGB")
             for u in units]
    side = tiles[0].size[0]
    rows = math.ceil(len(tiles) / columns)
    sheet = Image.new("RGB", (columns * side, rows * side), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * side, (i // columns) * side))
    sheet.save(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", default="inception_3b,inception_4c")
    parser.add_argument("--channels", type=int, default=32, help="evenly spaced channels per layer")
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--offsets", default="0",
                        help="comma-separated shifts of the sample, as fractions of its spacing; the sample is the "
                             "union (e.g. 0,0.5: a second, disjoint sample of the same size)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--store", default="artifacts/fv-quality")  # artifacts/ is git-ignored
    parser.add_argument("--photos", default=str(SHARED / "data" / "imagenet-sample"))
    parser.add_argument("--weights", default=str(SHARED / "weights" / "bvlc_googlenet.npz"))
    parser.add_argument("--reference", type=int, default=0, metavar="N",
                        help="also render inception_4a units 0..N-1 for 128 steps (the reference image: 16)")
    args = parser.parse_args()

    network = load_network("inceptionv1-caffe", weights=args.weights, progress=False)
    store = Store(args.store)
    layers = args.layers.split(",")
    samples = {}
    for layer in layers:
        channels = catalogue(network, [layer])[0].channels
        spacing = (channels - 1) / max(args.channels - 1, 1)
        samples[layer] = sorted({min(int(round(u)), channels - 1)
                                 for offset in args.offsets.split(",")
                                 for u in np.linspace(0, channels - 1, args.channels) + float(offset) * spacing})
    if args.reference:
        began = time.perf_counter()
        units = list(range(args.reference))
        render(network, Store(Path(args.store) / "reference"), "inception_4a", units, 128, args.size, args.batch_size)
        contact_sheet(network, Store(Path(args.store) / "reference"), "inception_4a", units,
                      Path(args.store) / f"contact-inception_4a-units0-{args.reference - 1}-128steps.png")
        print(f"reference sheet: {time.perf_counter() - began:.0f} s", flush=True)
    for layer in layers:
        seconds = render(network, store, layer, samples[layer], args.steps, args.size, args.batch_size)
        print(f"{layer}: {seconds:.0f} s for the renders not in the store yet", flush=True)
        contact_sheet(network, store, layer, samples[layer], Path(args.store) / f"contact-{layer}.png")

    began = time.perf_counter()
    cache = Path(args.store) / "photo-channel-means.npz"  # the photos' side does not change between runs
    photos = dict(np.load(cache)) if cache.exists() else {}
    if not set(layers) <= set(photos):
        photos.update(photo_channel_means(network, layers, Path(args.photos)))
        np.savez(cache, **photos)
    print(f"{len(photos[layers[0]])} photos measured in {time.perf_counter() - began:.0f} s")
    print("\n| layer | channels | render beats best photo | median render / best photo | min ratio |")
    print("|---|---|---|---|---|")
    details = []
    for layer in layers:
        units = samples[layer]
        rendered = rendered_channel_means(network, store, layer, units)
        best_photo = photos[layer].max(axis=0)[units]
        wins = rendered > best_photo
        ratio = rendered / np.maximum(best_photo, 1e-6)
        print(f"| {layer} | {len(units)} | {wins.sum()}/{len(units)} = {wins.mean():.0%} | "
              f"{np.median(ratio):.1f}x | {ratio.min():.2f}x |")
        details += [(layer, u, r, p) for u, r, p in zip(units, rendered, best_photo)]
    print("\nlayer unit render_mean best_photo_mean")
    for layer, unit, render_mean, photo_mean in details:
        print(f"{layer} {unit} {render_mean:.2f} {photo_mean:.2f}")


if __name__ == "__main__":
    main()
