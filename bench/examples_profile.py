"""Where the examples pass spends its time besides the forward: each accumulator, per layer, per batch.

    .venv/bin/python bench/examples_profile.py [--count 96] [--dataset-size 4000] [--batch-size 32] [--layers L,L]
                                               [--atlas-vectors 0] [--weights PATH]

Decodes the first --count photos of ../shared/data/imagenet-sample, runs the network
truncated after the layers once per batch (timed: the bare forward, as the pass runs it, channels_last,
inference mode), and then feeds each layer's activations to its accumulator (microscope/examples/
accumulator.py) with the pass's default settings for a dataset of --dataset-size photos (default 4,000), and
with --atlas-vectors N the atlas sample too (100,000: 25 positions per image of 4,000). Every part of an update is timed on its own, on one
thread as the pass runs them (stream.one_thread): the part's method is wrapped on the accumulator instance,
and "extremes" is what is left of the update (amax, amin, the histogram's maximum, the sums).

Prints, per part, milliseconds per batch summed over the layers, and its share of the bare forward of the
same batch. The pass's updates run on Python threads side by side (stream.LayerUpdates), so on several
cores the wall time of the updates is less than their sum; this table is the work, not the wall time.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from microscope.data.images import Framing, ImageDataset  # noqa: E402
from microscope.examples.config import SummarySettings  # noqa: E402
from microscope.examples.stream import activation_shapes, extracted, new_state, one_thread  # noqa: E402
from microscope.network.loaded import load_network  # noqa: E402

SHARED = ROOT.parent / "shared"
BLOCKS = "inception_3a,inception_3b,inception_4a,inception_4b,inception_4c,inception_4d,inception_4e," \
         "inception_5a,inception_5b"
PARTS = ("top", "bottom", "bands", "histogram", "atlas draw", "atlas reservoir", "maxima", "correlation")


class Timed:
    """Calls through to `function`, adding its seconds to `totals[name]`."""

    def __init__(self, function, name: str, totals: dict):
        self.function, self.name, self.totals = function, name, totals

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.totals[self.name] += time.perf_counter() - start


class TimedAtlas:
    def __init__(self, atlas, totals: dict):
        self.atlas, self.draw = atlas, Timed(atlas.draw, "atlas draw", totals)


def instrument(accumulator, totals: dict) -> None:
    accumulator.top.update = Timed(accumulator.top.update, "top", totals)
    accumulator.bottom.update = Timed(accumulator.bottom.update, "bottom", totals)
    accumulator.bands.update = Timed(accumulator.bands.update, "bands", totals)
    accumulator.histogram.update = Timed(accumulator.histogram.update, "histogram", totals)
    if accumulator.reservoir is not None:
        accumulator.reservoir.offer = Timed(accumulator.reservoir.offer, "atlas reservoir", totals)
        accumulator.atlas = TimedAtlas(accumulator.atlas, totals)
    if accumulator.maxima is not None:
        accumulator.maxima.update = Timed(accumulator.maxima.update, "maxima", totals)
    if accumulator.correlation is not None:
        accumulator.correlation.update = Timed(accumulator.correlation.update, "correlation", totals)


def photos() -> ImageDataset:
    return ImageDataset(SHARED / "data" / "imagenet-sample", view=Framing(224, 224))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=96, help="photos run through (imagenet-sample's first)")
    parser.add_argument("--dataset-size", type=int, default=4000, help="photos the pass is sized for (atlas sample)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--atlas-vectors", type=int, default=0, help="the atlas sample's size (0: none, the default)")
    parser.add_argument("--layers", default=BLOCKS)
    parser.add_argument("--weights", default=str(SHARED / "weights" / "bvlc_googlenet.npz"))
    args = parser.parse_args()
    layers = args.layers.split(",")
    network = load_network("inceptionv1-caffe", weights=args.weights, device="cpu")
    dataset = photos()
    settings = SummarySettings(atlas_vectors=args.atlas_vectors)
    print(f"profile of the examples pass's accumulators: {len(layers)} layers, {args.count} photos in batches of "
          f"{args.batch_size}, sized for a dataset of {args.dataset_size} (atlas {settings.atlas_vectors} vectors, "
          f"concepts {settings.concept_images} images, correlation {settings.correlation_positions} positions), "
          f"{torch.get_num_threads()} threads for the forward, 1 for the updates", flush=True)
    twins = {layer: network.layer(layer).pre_relu for layer in layers}
    extractor = network.extractor(extracted(network, layers))
    shapes = activation_shapes(network, layers, 224)
    state = new_state(network, layers, shapes, 48, settings, n_images=args.dataset_size, labelled=True)
    per_layer = {layer: defaultdict(float) for layer in layers}
    for layer in layers:
        instrument(state[layer], per_layer[layer])
    forward, decoded = 0.0, []
    with torch.inference_mode():
        for batch in dataset.batches(args.batch_size, 2, first=0, last=min(args.count, len(dataset))):
            rgb = batch.images.float().div_(255).contiguous(memory_format=torch.channels_last)
            start = time.perf_counter()
            decoded.append((batch.indices, extractor(rgb)))
            forward += time.perf_counter() - start
        # The activations of --count photos stand for the whole dataset: batch b of the pass is decoded
        # batch b mod len(decoded) under the dataset indices it would have (the accumulators then see the
        # acceptance rates of a pass of --dataset-size photos, which fall as the pass goes on).
        batches = -(-args.dataset_size // args.batch_size)
        updates = defaultdict(float)
        for number in tqdm(range(batches), desc="updates", unit="batch"):
            indices, outputs = decoded[number % len(decoded)]
            indices = indices - indices[0] + number * args.batch_size
            with one_thread():
                for layer in layers:
                    start = time.perf_counter()
                    twin = twins[layer]
                    state[layer].update(outputs[layer], outputs[twin] if twin else None, indices)
                    updates[layer] += time.perf_counter() - start
    forward = forward / len(decoded) * batches
    per_batch = forward / batches * 1000
    print(f"\nbare forward: {per_batch:.0f} ms per batch of {args.batch_size}\n")
    print("| part | ms per batch (all layers) | share of the forward | largest layer |")
    print("|---|---|---|---|")
    rows = {part: sum(per_layer[layer][part] for layer in layers) for part in PARTS}
    rows["extremes and sums"] = sum(updates.values()) - sum(rows.values())
    for part, seconds in sorted(rows.items(), key=lambda item: -item[1]):
        worst = max(layers, key=lambda layer: per_layer[layer][part]) if part in PARTS else "-"
        print(f"| {part} | {seconds / batches * 1000:.1f} | {seconds / forward:.1%} | {worst} |")
    total = sum(updates.values())
    print(f"| **all updates** | {total / batches * 1000:.1f} | {total / forward:.1%} | "
          f"{max(layers, key=lambda layer: updates[layer])} |")


if __name__ == "__main__":
    main()
