"""Throughput of the examples stage against a bare forward pass of the same truncated network.

    .venv/bin/python bench/examples.py [--images DIR,DIR] [--count N] [--batch-size 32] [--workers N]
                                       [--decode-count 1280]
                                       [--bare-every 4] [--device cpu|cuda] [--weights PATH|random]

For one layer (inception_4a) and for all nine inception blocks, side by side in one run:

- bare forward: the network truncated after the deepest chosen layer, returning the chosen layers,
  torch.inference_mode, channels_last, over batches decoded beforehand (no decoding); and the
  same with the layers' pre-ReLU twins as extra outputs, which is the stage's own graph (for an
  inception block the twin is one more concatenation, ~5 % of the forward). Both are timed INSIDE
  the stage's run: after every --bare-every batches of the pass, one bare batch, the two kinds by
  turns (cycling through the first images) - so all see the same machine at the same moments,
  which matters on shared cloud CPUs whose speed drifts by 30 % within minutes. Their time is
  taken out of the stage's. Ratios are printed against three: "x / y / z" = against the network alone /
  against it with the twins / against a bare decode + forward with the twins (the pass's loader, same
  workers, no accumulator: what issue 31's target is set against). Decoding's cost is a factor measured
  over --decode-count photos spread over the dataset, the two by turns (`decode_cost`), applied to the
  interleaved forward-with-twins rate;
- pass: the stage's streaming pass (decoding with loader workers, forward, all accumulators), from
  the call to the last batch's checkpoint;
- with --atlas 100000,0 the same rows with and without the atlas's sample of activation vectors
  (microscope/atlas), side by side;
- with --variants all,no-maxima,no-correlation,neither the same rows with and without what issue 28 added
  to the pass: the per-image maxima kept for concept labels (only with labels) and the units'
  correlation sums (similar units, families), side by side;
- stage: the whole examples view through the pipeline (plan, then every job: pass, summaries,
  patches, thumbnails, results), as `build.py examples` runs it.

Prints images per second and ratios to the bare forward (issue 31's target: the stage at >= 85 %), the seconds
after the pass (patches, thumbnails, summaries: a cost per unit and per example image, not per
dataset image), and from those the dataset size from which the stage reaches 85 % of the bare
forward. Images: the first --count (default: all) of the given folders, by default ../shared's
imagenet-sample (1000 photos) then imagenet-val-1300 (1300), with their labels.
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

from microscope.examples.config import SummarySettings  # noqa: E402
from microscope.examples.stream import extracted  # noqa: E402
from microscope.run.executors import LocalExecutor  # noqa: E402
from microscope.data.images import ImageDataset, Framing, default_workers  # noqa: E402
from microscope.network.loaded import load_network  # noqa: E402
from microscope.data.packs import read_patch_index  # noqa: E402
from microscope.run.pipeline import run_views  # noqa: E402
from microscope.run.session import Images  # noqa: E402
from microscope.store import Store  # noqa: E402
from microscope.views.examples import ExamplesSettings  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
BLOCKS = ["inception_3a", "inception_3b", "inception_4a", "inception_4b", "inception_4c",
          "inception_4d", "inception_4e", "inception_5a", "inception_5b"]


def joined(folders: list[Path], count: int, scratch: Path) -> ImageDataset:
    """The folders side by side (symbolic links under scratch), labelled, cut to `count` images.

    Labels: a folder's labels.csv, else sorted order = class index (imagenet-sample's naming)."""
    root = scratch / "images"
    root.mkdir()
    lines = []
    for number, folder in enumerate(folders):
        (root / str(number)).symlink_to(folder.resolve(), target_is_directory=True)
        listed = folder / "labels.csv"
        if listed.exists():
            rows = [line.split(",") for line in listed.read_text().split()[1:]]
        else:
            names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
            rows = [(name, str(i)) for i, name in enumerate(names)]
        lines += [f"{number}/{name},{label}\n" for name, label in rows]
    csv = scratch / "labels.csv"
    csv.write_text("".join(lines[:count] if count else lines))
    return ImageDataset(root, labels=csv, view=Framing(224, 224))


class BareForward:
    """The truncated network alone over decoded batches; accumulates images and seconds."""

    def __init__(self, network, decoded: torch.Tensor, names: list[str], batch_size: int):
        self.extractor, self.device = network.extractor(names), network.device
        self.batches = [decoded[i:i + batch_size] for i in range(0, len(decoded), batch_size)]
        self.images, self.seconds, self.next = 0, 0.0, 0
        self.run(warm_up=True)

    def run(self, warm_up: bool = False) -> float:
        """One batch; returns the seconds it took."""
        batch = self.batches[self.next % len(self.batches)]
        self.next += 1
        start = time.perf_counter()
        with torch.inference_mode():
            rgb = batch.to(self.device).float().div_(255)
            self.extractor(rgb.contiguous(memory_format=torch.channels_last))
        _sync(self.device)
        took = time.perf_counter() - start
        if not warm_up:
            self.images, self.seconds = self.images + len(batch), self.seconds + took
        return took

    @property
    def throughput(self) -> float:
        return self.images / self.seconds


def decode_cost(network, dataset: ImageDataset, names: list[str], batch_size: int, workers: int, count: int,
                scratch: Path, rounds: int = 3) -> tuple[float, int]:
    """How much slower a bare decode + forward runs than the forward alone: the factor, and the images timed.

    Over `count` photos spread evenly over the dataset (every n-th of its labels.csv, so small and large
    photos in their proportions), batches come from the pass's own loader (same workers, same batch size)
    into the same graph with no accumulator, then the same batches decoded beforehand go through it alone;
    the two by turns, `rounds` times each, and the factor is the median of the rounds' ratios (each pair of
    runs sees the machine in the same minute; the machine's speed drifts between them). The first batch of
    each run is left out (the loader's start, paid once per shard by the pass). Dividing the interleaved
    forward-only rate by this factor gives the bare decode + forward rate at the stage's own moments.
    """
    rows = (dataset.root.parent / "labels.csv").read_text().splitlines()
    step = max(1, len(rows) // max(1, count))
    listed = scratch / "decode-sample.csv"
    listed.write_text("".join(row + "\n" for row in rows[::step][:count]))  # as joined() writes it
    subset = ImageDataset(dataset.root, labels=listed, view=dataset.view)
    extractor = network.extractor(names)

    def forward(images: torch.Tensor) -> None:
        rgb = images.to(network.device).float().div_(255)
        extractor(rgb.contiguous(memory_format=torch.channels_last))

    def timed(batches) -> float:
        began = None
        for batch in batches:
            if began is None:  # after the first batch
                _sync(network.device)
                began = time.perf_counter()
            forward(batch)
        _sync(network.device)
        return time.perf_counter() - began

    with torch.inference_mode():
        decoded = [batch.images.clone() for batch in subset.batches(batch_size, workers)]
        forward(decoded[0])  # warm-up
        ratios = [timed(batch.images for batch in subset.batches(batch_size, workers)) / timed(iter(decoded))
                  for _ in range(rounds)]
    return float(np.median(ratios)), len(subset) - len(decoded[0])


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# (images whose per-image maxima are kept for concepts, correlation positions per image); 0 images is what a
# dataset without labels costs.
VARIANTS = {"all": (SummarySettings().concept_images, SummarySettings().correlation_positions),
            "no-maxima": (0, SummarySettings().correlation_positions),
            "no-correlation": (SummarySettings().concept_images, 0), "neither": (0, 0)}


def stage(network, dataset, layers: list[str], bares: list[BareForward], every: int, scratch: Path,
          batch_size: int, workers: int, atlas_vectors: int, variant: str = "all") -> dict:
    store = Path(tempfile.mkdtemp(dir=scratch))
    marks, aside = [], [0.0]  # aside: seconds spent in bare batches, taken out of the stage's time
    start = time.perf_counter()

    def on_batch(job, done: int) -> None:
        if job.step != "pass":
            return
        _sync(network.device)
        marks.append(time.perf_counter() - aside[0])
        if done % every == 0:
            aside[0] += bares[(done // every) % len(bares)].run()

    concept_images, correlation = VARIANTS[variant]
    outcome = run_views(network, ["examples"], store=store, layers=layers,
              images=Images(str(dataset.root), str(dataset.root.parent / "labels.csv")),
              settings={"examples": ExamplesSettings(top_k=48, image_batch_size=batch_size, workers=workers,
                                                     atlas_vectors=atlas_vectors, summary=SummarySettings(
                                                         atlas_vectors=atlas_vectors, concept_images=concept_images,
                                                         correlation_positions=correlation))},
              executor=LocalExecutor(on_progress=on_batch))
    end = time.perf_counter() - aside[0]
    for bare in bares:
        if not bare.images:  # a pass too short for every kind: time one batch of it right after
            bare.run()
    refs = [ref for layer in layers for unit in read_patch_index(Store(store), Store(store).patches_dir(
            network.spec.name, layer)).values() for ref in unit.values()]
    steps = ", ".join(f"{stage.split()[-1]} {seconds:.1f}" for stage, seconds in outcome.run.seconds.items()
                      if not stage.endswith("pass"))
    return {"pass": len(dataset) / (marks[-1] - start), "stage": len(dataset) / (end - start),
            "pass_s": marks[-1] - start, "after": end - marks[-1], "patches": len(refs),
            "patch_bytes": sum(ref.length for ref in refs) / max(1, len(refs)), "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", default=f"{SHARED / 'data' / 'imagenet-sample'},{SHARED / 'data' / 'imagenet-val-1300'}",
                        help="comma-separated folders")
    parser.add_argument("--count", type=int, default=0, help="use the first N images (0: all)")
    parser.add_argument("--bare-every", type=int, default=4, help="a bare batch after every N batches of the pass")
    parser.add_argument("--bare-count", type=int, default=256, help="images the bare batches cycle through")
    parser.add_argument("--decode-count", type=int, default=1280,
                        help="photos over which decoding's cost is measured (0: not measured)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", default=str(SHARED / "weights" / "bvlc_googlenet.npz"))
    parser.add_argument("--configs", default="1,9", help="which rows: 1 (inception_4a) and/or 9 (all blocks)")
    parser.add_argument("--atlas", default=str(SummarySettings().atlas_vectors),
                        help="comma-separated atlas sample sizes, one row each (0: no atlas sample), e.g. 100000,0")
    parser.add_argument("--variants", default="all", help=f"comma-separated, one row each: {', '.join(VARIANTS)}")
    args = parser.parse_args()

    network = load_network("inceptionv1-caffe", weights=args.weights, device=args.device, progress=False)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        dataset = joined([Path(folder) for folder in args.images.split(",")], args.count, scratch)
        decoded = torch.stack([dataset.load(i)[0] for i in range(min(len(dataset), args.bare_count))])
        print(f"{len(dataset)} images, batch {args.batch_size}, {args.workers} loader workers, "
              f"{torch.get_num_threads()} torch threads, device {network.device}, "
              f"defaults {SummarySettings().patch_format} q{SummarySettings().patch_quality}\n")
        print("| layers | atlas | variant | bare img/s: network / + twins / decode + twins (images) | pass img/s "
              "| pass / bare | stage img/s | stage / bare | pass s | after pass s | patches | bytes/patch | 85 % from |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        rows = {"1": ("inception_4a", ["inception_4a"]), "9": ("9 inception blocks", BLOCKS)}
        for key, atlas, variant in [(key, int(atlas), variant) for key in args.configs.split(",")
                                    for atlas in args.atlas.split(",") for variant in args.variants.split(",")]:
            title, layers = rows[key]
            bares = [BareForward(network, decoded, names, args.batch_size)
                     for names in (layers, extracted(network, layers))]
            result = stage(network, dataset, layers, bares, args.bare_every, scratch, args.batch_size, args.workers,
                           atlas, variant)
            alone, twins = (bare.throughput for bare in bares)
            factor, timed = (decode_cost(network, dataset, extracted(network, layers), args.batch_size, args.workers,
                                         args.decode_count, scratch) if args.decode_count else (float("nan"), 0))
            decoding = twins / factor  # the interleaved forward's rate, slowed as decoding slows it

            def ratios(rate: float) -> str:
                return f"{rate / alone:.0%} / {rate / twins:.0%} / {rate / decoding:.0%}"

            print(f"| {title} | {atlas} | {variant} | {alone:.1f} / {twins:.1f} / {decoding:.1f} "
                  f"({bares[0].images}, {bares[1].images}, x{factor:.3f} over {timed}) "
                  f"| {result['pass']:.1f} | {ratios(result['pass'])} | {result['stage']:.1f} "
                  f"| **{ratios(result['stage'])}** | {result['pass_s']:.0f} | {result['after']:.1f} "
                  f"| {result['patches']} | {result['patch_bytes']:.0f} "
                  f"| {break_even(result, alone)} / {break_even(result, twins)} / {break_even(result, decoding)} |",
                  flush=True)
            print(f"<!-- seconds of the view's other steps, {title}: {result['steps']} -->", flush=True)


def break_even(result: dict, bare: float, target: float = 0.85) -> str:
    """Images from which the stage runs at `target` x bare: the pass costs per image, the rest per unit."""
    slack = 1 / (target * bare) - 1 / result["pass"]  # seconds per image left for the fixed cost
    return f"{result['after'] / slack:,.0f} images" if slack > 0 else "never (pass too slow)"


if __name__ == "__main__":
    main()
