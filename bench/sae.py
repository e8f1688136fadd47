"""A TopK SAE on a real layer: held-out FVU, L0, dead features, and time per epoch against a forward pass.

    .venv/bin/python bench/sae.py [--layer inception_3b] [--expansion 8] [--k 32] [--positions-per-image N]
                                  [--steps 3000] [--batch-size 512] [--images ../shared/data] [--lr 4e-4]
                                  [--dead-after N]

Samples post-ReLU vectors of the layer (random positions away from the edge; 10 % of the images
held out, all their inner positions) from the real Caffe weights over the shared photos, trains on them (microscope/sae/train.py)
and evaluates on the held-out images. Side by side in one run: the seconds of the bare forward pass
over the same images (the network truncated after the layer, no sampling), and of one training epoch.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microscope.data.images import ImageDataset, Framing  # noqa: E402
from microscope.network.loaded import load_network  # noqa: E402
from microscope.activations.positions import SampleSettings, held_out_images, vectors_of  # noqa: E402
from microscope.sae.sizing import choose  # noqa: E402
from microscope.sae.train import TrainSettings, Vectors, evaluate, train  # noqa: E402
from microscope.sae.vectors import inner_vectors  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="inception_3b")
    parser.add_argument("--expansion", type=int, default=8)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--positions-per-image", "--positions", dest="positions", type=int, default=None,
                        help="default: chosen from the data, as `sae` does (microscope/sae/sizing.py)")
    parser.add_argument("--steps", type=int, default=3000, help="all of them: the bench does not stop early")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--dead-after", type=int, default=TrainSettings.dead_after,
                        help="training vectors without firing before AuxK may use a latent")
    parser.add_argument("--images", default=str(SHARED / "data"))
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    args = parser.parse_args()

    network = load_network("inceptionv1-caffe", weights=str(SHARED / "weights" / "bvlc_googlenet.npz"), device="cpu",
                           progress=False)
    dataset = ImageDataset(args.images, view=Framing(224, 224))
    last = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    held = held_out_images(last, SampleSettings.held_out, SampleSettings.seed)
    extractor = network.extractor([args.layer])
    with torch.inference_mode():
        _, channels, height, width = extractor(torch.zeros(1, 3, 224, 224))[args.layer].shape
    sizing = choose(args.layer, channels * args.expansion, channels, int((~held).sum()),
                    (height - 2) * (width - 2), args.positions, args.steps, args.batch_size)
    sampling = SampleSettings(positions_per_image=sizing.positions_per_image)
    print(sizing.line())
    train_rows, eval_rows = [], []
    forward = sample = 0.0
    with torch.inference_mode():
        for batch in dataset.batches(32, first=0, last=last):
            rgb = batch.images.float().div_(255)
            began = time.perf_counter()
            activation = extractor(rgb)[args.layer]
            forward += time.perf_counter() - began
            began = time.perf_counter()
            keep = torch.from_numpy(held[batch.indices.numpy()])
            train_rows.append(vectors_of(activation[~keep], batch.indices[~keep], sampling)[0])
            eval_rows.append(inner_vectors(activation[keep], sampling.edge))  # every inner position, as `sae` does
            sample += time.perf_counter() - began
    width = train_rows[0].shape[1]
    with tempfile.TemporaryDirectory() as folder:
        np.save(Path(folder) / "train.npy", np.concatenate(train_rows))
        train_set = Vectors([np.load(Path(folder) / "train.npy", mmap_mode="r")])
        held_out = Vectors([np.concatenate(eval_rows)])
        settings = TrainSettings(features=width * args.expansion, k=args.k, steps=args.steps,
                                 batch_size=args.batch_size, lr=args.lr,
                                 dead_after=args.dead_after)
        began = time.perf_counter()
        trained = train(train_set, settings, on_step=lambda step, fvu: print(f"step {step} fvu {fvu:.4f}", flush=True)
                        if step % 250 == 0 else None)
        seconds = time.perf_counter() - began
        result = evaluate(trained, held_out)
    per_epoch = seconds / args.steps * (len(train_set) // args.batch_size)
    rows = [
        ("layer", args.layer), ("images", last), ("train / held-out vectors", f"{len(train_set)} / {len(held_out)}"),
        ("features (width x expansion), k", f"{width * args.expansion} ({width} x {args.expansion}), {args.k}"),
        ("bare forward pass over the images", f"{forward:.1f} s"), ("sampling the vectors", f"{sample:.1f} s"),
        ("training", f"{seconds:.1f} s for {args.steps} steps of {args.batch_size} ({seconds / args.steps * 1e3:.0f} ms/step)"),
        ("one epoch", f"{per_epoch:.1f} s = {per_epoch / forward:.2f} x the forward pass"),
        ("held-out FVU", f"{result.fvu:.4f}"), ("held-out L0", f"{result.l0:.1f}"),
        ("dead features (never active on held-out)", f"{100 * result.dead_fraction:.2f} %"),
        ("threads", torch.get_num_threads()),
    ]
    for name, value in rows:
        print(f"{name:<42} {value}")


if __name__ == "__main__":
    main()
