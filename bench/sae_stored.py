"""Train an SAE again on the vectors an `sae` run left in a store, with other settings, side by side.

    .venv/bin/python bench/sae_stored.py --store STORE --layer inception_4c [--lr 4e-4] [--steps 3000]
                                         [--dead-after 200000] [--dead-limit 0.05] [--expansion 8] [--k 32]
                                         [--threads 1]

Uses the same split and code as `build.py sae` (microscope/sae/fit.py): the vectors stored for the layer,
half the held-out images to stop early, the other half for the held-out FVU, L0 and dead fraction, and a
spread of training vectors for the training FVU. Prints one line: held-out / training FVU, dead, where it
stopped, seconds, and the validation curves (FVU, and the % of features silent on the validation vectors). Run several at once (one thread each) to compare settings on
the same data.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microscope.sae.fit import train_and_evaluate  # noqa: E402
from microscope.sae.train import TrainSettings  # noqa: E402
from microscope.store import SaeVectors  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--layer", required=True)
    parser.add_argument("--model", default="inceptionv1-caffe")
    parser.add_argument("--lr", type=float, default=TrainSettings.lr)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--dead-after", type=int, default=TrainSettings.dead_after)
    parser.add_argument("--dead-limit", type=float, default=TrainSettings.dead_limit,
                        help="1 turns the silent-features guard off")
    parser.add_argument("--expansion", type=int, default=8)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    found = sorted(Path(args.store, args.model, args.layer, "sae").glob("*/vectors/*/vectors.json"))
    if not found:
        sys.exit(f"no stored SAE vectors of {args.layer} in {args.store}; run build.py sae first")
    folder = found[0].parent
    record = SaeVectors.from_json(json.loads(found[0].read_text()))
    settings = TrainSettings(features=record.width * args.expansion, k=args.k, steps=args.steps, batch_size=512,
                             lr=args.lr, dead_after=args.dead_after, dead_limit=args.dead_limit, seed=0)
    fitted = train_and_evaluate(folder, record, settings)
    trained, test, training = fitted.trained, fitted.evaluation, fitted.on_training
    seconds = fitted.seconds["training"]
    curve = " ".join(f"{value:.4f}" for _, value in trained.validation_curve)
    dead = " ".join(f"{100 * value:.1f}" for _, value in trained.validation_dead)
    print(f"{args.layer} lr {args.lr:g} steps {args.steps} dead_after {args.dead_after} dead_limit {args.dead_limit:g}: "
          f"held-out FVU {test.fvu:.4f}, training FVU {training.fvu:.4f}, dead {100 * test.dead_fraction:.2f} % "
          f"(on training vectors {100 * training.dead_fraction:.2f} %), trained {trained.steps} steps "
          f"(kept {trained.best_step}), {seconds:.0f} s; every {settings.checkpoint_every} steps, validation FVU: "
          f"{curve}; % silent on validation: {dead}")


if __name__ == "__main__":
    main()
