"""Expanded weights of a whole model, pair by pair, against one forward + backward pass of the network.

    .venv/bin/python bench/circuits.py [--model inceptionv1-caffe] [--weights PATH|random] [--top 12] [--batch 64]

For every pair of consecutive layers (conv1 -> conv2_reduce -> ... -> inception_5b -> logits), side by
side in one run: the seconds to linearise the network between them and compute every expanded
weight (`circuits` view's job: one backward per batch of output units on a small input), and the
seconds of one forward + backward pass of the network truncated after the later layer, on one
image at the model's input size (the median of three, taken right before). Prints a table and the
whole model's time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microscope.network.catalogue import catalogue  # noqa: E402
from microscope.circuits.expanded import expanded_weights  # noqa: E402
from microscope.circuits.linear import linearise  # noqa: E402
from microscope.network.loaded import load_network  # noqa: E402
from microscope.selection import layer_chain  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def forward_backward(network, layer: str, size: int) -> float:
    """Seconds of one forward + backward of the network truncated after `layer` (median of 3)."""
    target = network.layer(layer).pre_relu or layer
    extractor = network.extractor([target])
    times = []
    for _ in range(4):  # the first builds oneDNN's kernels for these shapes
        image = torch.rand(1, 3, size, size, requires_grad=True)
        began = time.perf_counter()
        extractor(image)[target].sum().backward()
        times.append(time.perf_counter() - began)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="inceptionv1-caffe")
    parser.add_argument("--weights", default=str(SHARED / "weights" / "bvlc_googlenet.npz"))
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--batch", type=int, default=64, help="output units per backward pass")
    args = parser.parse_args()

    network = load_network(args.model, weights=args.weights, progress=False)
    infos = {info.name: info for info in catalogue(network)}
    chain = layer_chain(network.spec.layers)
    size = network.spec.input_size
    print(f"{args.model}, {torch.get_num_threads()} threads, torch {torch.__version__}, top {args.top}, "
          f"batch {args.batch}\n")
    print("| pair | units out x in | map | expanded weights s | fwd+bwd s | ratio |")
    print("|---|---|---|---|---|---|")
    total = total_bare = 0.0
    for previous, layer in zip(chain, chain[1:]):
        bare = forward_backward(network, layer, size)
        began = time.perf_counter()
        pair = linearise(network, previous, layer)
        found = expanded_weights(pair, infos[previous].channels, infos[previous].height, args.top, batch=args.batch)
        seconds = time.perf_counter() - began
        total, total_bare = total + seconds, total_bare + bare
        outputs, inputs = found.sums.shape
        print(f"| {previous} -> {layer} | {outputs} x {inputs} | {found.maps.shape[2]}x{found.maps.shape[3]} "
              f"| {seconds:.2f} | {bare:.3f} | {seconds / bare:.0f}x |", flush=True)
    print(f"\nwhole model: {total:.1f} s for {len(chain) - 1} pairs "
          f"(one forward + backward of each pair's network: {total_bare:.2f} s in all)")


if __name__ == "__main__":
    main()
