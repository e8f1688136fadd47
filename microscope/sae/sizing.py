"""How many activation vectors, and how many steps, an SAE gets when the user does not say.

A dictionary of F features learns directions from the vectors it sees; with too few per feature
it memorises them instead (training FVU falls, held-out FVU does not). On InceptionV1's
inception_3b (3,840 features) 900 training images x 16 positions (3.75 vectors per feature) gave
held-out FVU 0.35 against 0.11 on the training vectors, and 64 positions (15 per feature) brought
it under 0.25 (bench/NOTES.md, "SAE sizing"). So the sample aims at `VECTORS_PER_FEATURE` vectors
per feature, spread over the training images:

    positions per image = ceil(16 x features / training images), within [16, min(96, inner positions)]

- at least 16: more vectors never hurt, and a large dataset keeps the sampling it always had;
- at most 96, and never more than the grid has away from the edge: positions of one image overlap
  in their receptive fields and share its content, so beyond about a hundred more positions add
  little that is new; the data are then too few, and the plan says so in one line, with the fix;
- and within `DISK_BUDGET` bytes of training vectors (they are memory-mapped from the store: memory
  holds one batch, the disk holds them all): a very large dataset gets fewer positions per image.

Steps: at most 3,000 batches (25 passes over inception_3b's 62,000 vectors from 1,000 photos), raised
to one pass over a training set larger than that, at most 20,000. Held-out early stopping
(stopping.py) ends training sooner once the held-out FVU stops falling; longer training memorises:
at 6,000 steps a fifth of inception_3b's features fired on no held-out image (bench/NOTES.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

VECTORS_PER_FEATURE = 16
MIN_POSITIONS, MAX_POSITIONS = 16, 96
DISK_BUDGET = 2 * 1024 ** 3  # bytes of float32 training vectors
MIN_STEPS, MAX_STEPS = 3_000, 20_000


@dataclass(frozen=True)
class Sizing:
    layer: str
    features: int
    train_images: int
    positions_per_image: int
    steps: int
    chosen: tuple[str, ...]  # which of the two were chosen here ("positions", "steps"), not given

    @property
    def vectors(self) -> int:
        return self.train_images * self.positions_per_image

    def line(self) -> str:
        """The plan's line: what was chosen and why."""
        said = (f"{self.layer}: {self.positions_per_image} positions per image x {self.train_images:,} training images "
                f"= {self.vectors:,} vectors for {self.features:,} features "
                f"({self.vectors / self.features:.1f} per feature), {self.steps:,} steps at most")
        if self.chosen:
            said += f" ({' and '.join(self.chosen)} chosen from the data: microscope/sae/sizing.py)"
        return said

    def shortfall(self, expansion: int, width: int, held_out: float) -> str | None:
        """One line when the data are too few for the dictionary asked for, with the fix; else None.
        `held_out`: the fraction of the images kept for evaluation (the fix counts all images)."""
        wanted = VECTORS_PER_FEATURE * self.features
        if self.vectors >= wanted:
            return None
        fits = max(1, self.vectors // (VECTORS_PER_FEATURE * width))
        images = math.ceil(math.ceil(wanted / self.positions_per_image) / (1 - held_out))
        return (f"{self.layer}: {self.vectors:,} training vectors for {self.features:,} features is "
                f"{self.vectors / self.features:.1f} per feature, under the {VECTORS_PER_FEATURE} an SAE needs to "
                f"generalise: expect a held-out FVU well above the training FVU; use {images:,} images or more, "
                f"or --expansion {min(fits, expansion)}")


def choose(layer: str, features: int, width: int, train_images: int, inner_positions: int,
           positions: int | None, steps: int | None, batch_size: int) -> Sizing:
    """Positions per image and steps for one layer's SAE; a value the user gave (not None) wins."""
    chosen = []
    if positions is None:
        chosen.append("positions")
        positions = math.ceil(VECTORS_PER_FEATURE * features / max(1, train_images))
        positions = max(MIN_POSITIONS, min(positions, MAX_POSITIONS))
        affordable = DISK_BUDGET // (4 * width * max(1, train_images))
        positions = max(1, min(positions, affordable, inner_positions))
    if steps is None:
        chosen.append("steps")
        one_pass = math.ceil(train_images * positions / batch_size)
        steps = max(MIN_STEPS, min(one_pass, MAX_STEPS))
    return Sizing(layer, features, train_images, positions, steps, tuple(chosen))
