"""The caricatures and DeepDreams of a store, as a table: per layer, how close each caricature is to its own photo
(the cosine of their activations at the layer, flattened) against the closest other photo of the set, how much
more the DeepDream excites the layer than its photo, and the seconds the layer's job took.

    .venv/bin/python build.py caricature --model inceptionv1-caffe --weights ../shared/weights/bvlc_googlenet.npz \\
        --layers conv2,inception_3a,...,inception_5b --images PHOTOS --labels LABELS.csv --store STORE
    .venv/bin/python bench/caricature.py --store STORE [--model inceptionv1-caffe]

A caricature is "own" when its photo is the closest of the set (the issue's check); the minimum over the photos is
what a reader should trust.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microscope.caricature.panel import entries  # noqa: E402
from microscope.store import CaricatureResult, Store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--model", default="inceptionv1-caffe")
    args = parser.parse_args()
    store = Store(args.store)
    model = store.read_model(args.model)
    print("| layer | photos | caricature cosine to own photo: min / median | closest other photo: max | own is "
          "closest | DeepDream / photo activation norm: min / median | steps |")
    print("|---|---|---|---|---|---|---|")
    for info in model.layers:
        record = store.read(store.caricature_result_file(args.model, info.name), CaricatureResult)
        if record is None:
            continue
        shown = entries(record)  # the numbers layer.json gives each photo
        own = np.array([entry["cosine"] for entry in shown])
        others = np.array([entry["cosine_next"] for entry in shown])
        closest = sum(int(np.argmax(p.cosines) == i) for i, p in enumerate(record.photos))
        gain = np.array([entry["dream_gain"] for entry in shown if entry["dream_gain"] is not None])
        print(f"| {info.name} | {len(own)} | {own.min():.2f} / {np.median(own):.2f} | {others.max():.2f} | "
              f"{closest} of {len(own)} | {gain.min():.2f} / {np.median(gain):.2f} | "
              f"{record.caricature['steps']} ({record.caricature['image'].get('name', 'lucid')}), "
              f"{record.deepdream['steps']}x{record.deepdream['octaves']} |")


if __name__ == "__main__":
    main()
