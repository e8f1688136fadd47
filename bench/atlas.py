"""The activation atlas's steps on a real layer: what sampling costs next to the forward pass, and UMAP.

    .venv/bin/python bench/atlas.py [--layer inception_4c] [--positions 4] [--capacity 100000]
                                    [--images ../shared/data] [--limit N] [--grid 20]

Side by side in one run over the same batches: the bare forward pass (the network truncated after the
layer), and drawing `--positions` random inner positions per image into the reservoir
(microscope/atlas/reservoir.py) - the work the examples pass will add. Then the UMAP layout of the
kept vectors and the grid's cell means (microscope/atlas/layout.py).
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
from microscope.atlas.reservoir import Reservoir  # noqa: E402
from microscope.images import ImageDataset, View  # noqa: E402
from microscope.network import load_network  # noqa: E402
from microscope.sae.sample import SampleSettings, vectors_of  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="inception_4c")
    parser.add_argument("--positions", type=int, default=4)
    parser.add_argument("--capacity", type=int, default=100_000)
    parser.add_argument("--grid", type=int, default=20)
    parser.add_argument("--images", default=str(SHARED / "data"))
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()

    network = load_network("inceptionv1-caffe", weights=str(SHARED / "weights" / "bvlc_googlenet.npz"), device="cpu",
                           progress=False)
    dataset = ImageDataset(args.images, view=View(224, 224))
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
    rows = [
        ("layer", args.layer), ("images", last), ("vectors kept", f"{len(reservoir)} (capacity {args.capacity})"),
        ("bare forward pass", f"{forward:.1f} s"),
        ("sampling into the reservoir", f"{sample:.2f} s = {100 * sample / forward:.2f} % of the forward pass"),
        ("UMAP layout", f"{seconds_umap:.1f} s"),
        (f"{args.grid} x {args.grid} cell means", f"{seconds_cells:.3f} s, {int(cells.shown.sum())} cells with > 5 vectors"),
        ("threads", torch.get_num_threads()),
    ]
    for name, value in rows:
        print(f"{name:<32} {value}")


if __name__ == "__main__":
    main()
