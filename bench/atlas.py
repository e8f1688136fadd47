"""The activation atlas's steps on a real layer: sampling next to the forward pass, UMAP, icons, attribution.

    .venv/bin/python bench/atlas.py [--layer inception_4c] [--positions 4] [--capacity 100000]
                                    [--images ../shared/data] [--limit N] [--grid 20]
                                    [--icons 16] [--icon-steps 128] [--icon-size 96] [--attributions 64]

Side by side in one run over the same batches: the bare forward pass (the network truncated after the
layer), and drawing `--positions` random inner positions per image into the reservoir
(microscope/activations/reservoir.py) - the work the examples pass will add. Then the UMAP layout of the
kept vectors and the grid's cell means (microscope/atlas/layout.py). Then one batch of `--icons` cell
icons (microscope/atlas/icons.py's render) next to the same number of bare forward + backward passes of
that batch, and the class attribution of `--attributions` positions (microscope/atlas/attribution.py,
one forward-mode pass each) next to a bare forward pass of their photos.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microscope.atlas.layout import LayoutSettings, grid_cells, normalise, umap_layout  # noqa: E402
from microscope.activations.reservoir import Reservoir  # noqa: E402
from microscope.data.images import ImageDataset, Framing  # noqa: E402
from microscope.network.loaded import load_network  # noqa: E402
from microscope.activations.positions import SampleSettings, vectors_of  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="inception_4c")
    parser.add_argument("--positions", type=int, default=4)
    parser.add_argument("--capacity", type=int, default=100_000)
    parser.add_argument("--grid", type=int, default=20)
    parser.add_argument("--images", default=str(SHARED / "data"))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--icons", type=int, default=16)
    parser.add_argument("--icon-steps", type=int, default=128)
    parser.add_argument("--icon-size", type=int, default=96)
    parser.add_argument("--attributions", type=int, default=64)
    args = parser.parse_args()

    network = load_network("inceptionv1-caffe", weights=str(SHARED / "weights" / "bvlc_googlenet.npz"), device="cpu",
                           progress=False)
    dataset = ImageDataset(args.images, view=Framing(224, 224))
    last = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    extractor = network.extractor([args.layer])
    sampling = SampleSettings(positions_per_image=args.positions)
    reservoir = None
    forward = sample = 0.0
    with torch.inference_mode():
        for batch in dataset.batches(32, first=0, last=last):
            began = time.perf_counter()
            activation = extractor(batch.images.float().div_(255))[args.layer]
            forward += time.perf_counter() - began
            began = time.perf_counter()
            vectors, images, y, x = vectors_of(activation, batch.indices, sampling)
            if reservoir is None:
                reservoir = Reservoir.empty(args.capacity, vectors.shape[1], seed=0)
            reservoir.offer(vectors, images, y, x)
            sample += time.perf_counter() - began
    began = time.perf_counter()
    xy = normalise(umap_layout(reservoir.vectors, LayoutSettings()))
    seconds_umap = time.perf_counter() - began
    began = time.perf_counter()
    cells = grid_cells(xy, reservoir.vectors, args.grid)
    seconds_cells = time.perf_counter() - began
    icons = bench_icons(network, args, cells)
    attribution = bench_attribution(network, args, dataset, reservoir)
    rows = [
        ("layer", args.layer), ("images", last), ("vectors kept", f"{len(reservoir)} (capacity {args.capacity})"),
        ("bare forward pass", f"{forward:.1f} s"),
        ("sampling into the reservoir", f"{sample:.2f} s = {100 * sample / forward:.2f} % of the forward pass"),
        ("UMAP layout", f"{seconds_umap:.1f} s"),
        (f"{args.grid} x {args.grid} cell means", f"{seconds_cells:.3f} s, {int(cells.shown.sum())} cells with > 5 vectors"),
        *icons, *attribution,
        ("threads", torch.get_num_threads()),
    ]
    for name, value in rows:
        print(f"{name:<32} {value}")


def bench_icons(network, args, cells) -> list[tuple[str, str]]:
    from microscope.featurevis.batch import featurevis_extractor
    from microscope.featurevis.objectives import direction_neuron
    from microscope.featurevis.param import FourierImage
    from microscope.featurevis.recipe import Recipe
    from microscope.featurevis.render import render

    means = cells.mean[cells.shown][:args.icons]
    extractor = featurevis_extractor(network, [args.layer])
    recipe = Recipe()
    image = FourierImage(list(range(len(means))), args.icon_size)
    began = time.perf_counter()
    render(extractor, direction_neuron(args.layer, torch.as_tensor(means)), image, args.icon_steps, transform_seed=0,
           transforms=recipe.transforms)
    seconds = time.perf_counter() - began
    x = torch.rand(len(means), 3, args.icon_size, args.icon_size, requires_grad=True)
    began = time.perf_counter()
    for _ in range(args.icon_steps):
        extractor(x)[args.layer].sum().backward()
    bare = time.perf_counter() - began
    return [(f"{len(means)} icons, {args.icon_steps} steps, {args.icon_size} px", f"{seconds:.1f} s = "
             f"{seconds / len(means):.2f} s per icon, {seconds / bare:.2f} x bare forward+backward ({bare:.1f} s)")]


def bench_attribution(network, args, dataset, reservoir) -> list[tuple[str, str]]:
    from microscope.atlas.attribution import Attribution

    attribution = Attribution(network, args.layer)
    if attribution.logits is None:
        return []
    image = reservoir.image[:args.attributions]
    picked = sorted(set(image.tolist()))
    batch = next(dataset.batches(len(picked), only=picked))
    began = time.perf_counter()
    with torch.no_grad():
        activation = network.activations(batch.images.float().div(255), [args.layer])[args.layer]
    bare = time.perf_counter() - began
    rows = np.searchsorted(batch.indices.numpy(), image)
    began = time.perf_counter()
    attribution(activation, rows, reservoir.y[:args.attributions], reservoir.x[:args.attributions])
    seconds = time.perf_counter() - began
    return [(f"class attribution of {len(image)} positions", f"{seconds:.1f} s = {1000 * seconds / len(image):.0f} ms "
             f"each (all classes); forward pass of their {len(picked)} photos {bare:.1f} s")]


if __name__ == "__main__":
    main()
