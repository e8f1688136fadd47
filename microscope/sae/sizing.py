"""How many activation vectors, and how many steps, an SAE gets when the user does not say.

A dictionary of F features learns directions from the vectors it sees; with too few per feature
it memorises them instead (training FVU falls, held-out FVU does not). On InceptionV1's
inception_3b (3,840 features) 900 training images x 16 positions (3.75 vectors per feature) gave
held-out FVU 0.35 against 0.11 on the training vectors; 16 per feature brought it to 0.05, but
inception_4c (4,096 features on a 14 x 14 grid, whose neighbouring positions share most of their
receptive fields) still gave 0.27 against 0.17 (bench/NOTES.md, "SAE sizing"). So the sample aims
at `VECTORS_PER_FEATURE` = 32 vectors per feature, spread over the training images:

    positions per image = ceil(32 x features / training images), within [16, min(256, inner positions)]

- at least 16: more vectors never hurt, and a large dataset keeps the sampling it always had;
- never more than the grid has away from the edge (the held-out images are measured there too);
- and within `DISK_BUDGET` bytes of training vectors (they are memory-mapped from the store: memory
  holds one batch, the disk holds them all): a very large dataset gets fewer positions per image.

Below `MIN_PER_FEATURE` = 16 vectors per feature the plan warns in one line, with the fix: there
the held-out FVU is far above the training FVU whatever the training does. The warning counts at
most `COUNTED_POSITIONS` = 96 positions per image: positions of one image overlap in their
receptive fields and share its content, so many positions of few images cannot stand in for more
images (300 photos at 256 positions each are still too few for inception_3b's 3,840 features).

Steps: at most 6,000 batches, raised to one pass over a training set larger than that, at most
20,000. Held-out early stopping (stopping.py) ends training sooner once the held-out FVU stops
falling or more than 3 % of the features fire on no held-out image: on 1,000 photos inception_4c
was still improving at 6,000 steps (held-out FVU 0.218), while inception_3b's features began to go
silent on held-out images after 2,000 (bench/NOTES.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

VECTORS_PER_FEATURE = 32  # the aim
MIN_PER_FEATURE = 16  # below it the plan warns
COUNTED_POSITIONS = 96  # positions per image the warning counts: more add little an image's others did not
MIN_POSITIONS, MAX_POSITIONS = 16, 256
DISK_BUDGET = 2 * 1024 ** 3  # bytes of float32 training vectors
MIN_STEPS, MAX_STEPS = 6_000, 20_000


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

    @property
    def counted_vectors(self) -> int:
        """The vectors that count as evidence: at most `COUNTED_POSITIONS` per image."""
        return self.train_images * min(self.positions_per_image, COUNTED_POSITIONS)

    def shortfall(self, expansion: int, width: int, held_out: float) -> str | None:
        """One line when the data are too few for the dictionary asked for, with the fix; else None.
        `held_out`: the fraction of the images kept for evaluation (the fix counts all images)."""
        wanted, counted = MIN_PER_FEATURE * self.features, self.counted_vectors
        if counted >= wanted:
            return None
        fits = max(1, counted // (MIN_PER_FEATURE * width))
        positions = min(self.positions_per_image, COUNTED_POSITIONS)
        images = math.ceil(math.ceil(wanted / positions) / (1 - held_out))
        return (f"{self.layer}: {self.train_images:,} training images give {counted / self.features:.1f} vectors per "
                f"feature for {self.features:,} features (counting at most {COUNTED_POSITIONS} positions per image: an "
                f"image's positions share its content), under the {MIN_PER_FEATURE} an SAE needs to generalise: "
                f"expect a held-out FVU well above the training FVU; use {images:,} images or more, "
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
