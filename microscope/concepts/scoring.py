"""Each unit's concepts, chosen on one half of the images and scored on the other.

A unit ranks images by its maximum over positions. For a concept (a set of classes) the ranking's
average precision (AP) says how well the unit finds the concept's images: 1 when they all come first,
about the concept's share of the images for a random ranking. AP here is scikit-learn's
(`average_precision_score`): tied scores are one threshold, so a unit silent on half the images gets
no credit for the order the ties happen to be in.

The sampled images are split in two by a seeded permutation: the choosing half picks each unit's
concepts (by lift over chance: (AP - chance) / (1 - chance), so a large concept does not win on its
size alone), the held-out half scores them; a label is never scored on the images that chose it.
A unit is labelled when its best concept's held-out AP is above its threshold, the highest of:
- FLOOR;
- the AP that LEVEL of random rankings of that concept's held-out images reach (a permutation test at
  the concept's size): ranking images at random would label a unit about 1 time in 100 at most;
- LIFT times the AP a random ranking gives on average (`chance`): a broad concept is easy to beat by a
  little ("instrumentality", a third of ImageNet's classes, has chance 0.34, and colour units of conv2
  reach 0.41 on it, significantly), but a label should say what a unit prefers, not what it leans to.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

KEEP = 3  # concepts kept per unit
FLOOR = 0.2  # no label under this held-out AP: below it, most of a unit's top images are something else
LEVEL = 0.99  # of random rankings a label's held-out AP must beat
TRIALS = 2000  # random rankings per concept size
LIFT = 2.0  # a label's held-out AP is at least twice what a random ranking gives
MAX_SHARE = 0.5  # a concept covering more of the classes says nothing ("entity", "object")
BROAD = 0.25  # two labels are unrelated when their nearest common concept covers more of the classes


@dataclass(frozen=True)
class Members:
    """Which images of one half belong to which concept, as flat (concept, image) pairs sorted by concept."""

    concept: np.ndarray  # (E,) int64
    image: np.ndarray  # (E,) int64, positions within the half
    sizes: np.ndarray  # (K,) images of each concept in the half

    @classmethod
    def of(cls, image_classes: np.ndarray, concept_classes: list[np.ndarray], n_classes: int) -> "Members":
        """image_classes: (M,) each image's class (-1: none); concept_classes: each concept's classes."""
        member = np.zeros((len(concept_classes), n_classes + 1), dtype=bool)
        for k, classes in enumerate(concept_classes):
            member[k, classes] = True
        concept, image = np.nonzero(member[:, np.where(image_classes < 0, n_classes, image_classes)])
        return cls(concept.astype(np.int64), image.astype(np.int64),
                   np.bincount(concept, minlength=len(concept_classes)))


def ranks(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For (U, M) scores: (images scoring at least as high as each, ties included; each image's place in
    the order by score, ties by image index), both 1-based (U, M) int64."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ordered = np.take_along_axis(scores, order, 1)
    # In the sorted rows, an image's count is the end of its run of equal scores (read off in one pass).
    last = np.ones(scores.shape, dtype=bool)
    last[:, :-1] = ordered[:, 1:] != ordered[:, :-1]
    at_least_sorted = run_ends(last)
    at_least = np.empty(scores.shape, dtype=np.int64)
    place = np.empty(scores.shape, dtype=np.int64)
    np.put_along_axis(at_least, order, at_least_sorted, 1)
    np.put_along_axis(place, order, np.broadcast_to(np.arange(1, scores.shape[1] + 1), scores.shape), 1)
    return at_least, place


def run_ends(last: np.ndarray) -> np.ndarray:
    """For flags marking the last element of each run along the last axis: each element's run's end, as the
    1-based position of that last element (what searchsorted(side="right") of a sorted array in itself gives)."""
    flat = last.reshape(-1, last.shape[-1])
    ends = np.empty(flat.shape, dtype=np.int64)
    positions = np.arange(1, flat.shape[1] + 1)
    for row in range(flat.shape[0]):  # the next run end at or after each element, from the right
        ends[row] = np.minimum.accumulate(np.where(flat[row], positions, flat.shape[1])[::-1])[::-1]
    return ends.reshape(last.shape)


def average_precision(scores: np.ndarray, members: Members, k: int, block: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(AP (U, K), precision among the top k (U, K)) of every unit's ranking for every concept.

    A positive image counts the positives scoring at least as high as it over the images that do: with
    the pairs sorted by (concept, that count), the positives up to the end of its run of ties.
    """
    units, m = scores.shape
    n_concepts = len(members.sizes)
    ap = np.zeros((units, n_concepts))
    top = np.zeros((units, n_concepts))
    for start in range(0, units, block):
        rows = scores[start:start + block]
        b = rows.shape[0]
        at_least, place = ranks(rows)
        r = at_least[:, members.image]  # (b, E)
        group = members.concept[None, :] + n_concepts * np.arange(b)[:, None]
        key = np.sort((group * (m + 1) + r).ravel())
        group, r = key // (m + 1), key % (m + 1)
        # Both sorted: a run's end (of equal keys) and a group's first index, found in one pass each
        # (searchsorted of each array in itself gives the same, in n log n).
        run_end = run_ends(np.append(key[1:] != key[:-1], True))
        starts = np.append(True, group[1:] != group[:-1])
        first = np.flatnonzero(starts)[np.cumsum(starts) - 1]
        ap[start:start + b] = np.bincount(group, (run_end - first) / r, minlength=b * n_concepts).reshape(b, -1)
        hits = (place[:, members.image] <= k).ravel()
        flat = (members.concept[None, :] + n_concepts * np.arange(b)[:, None]).ravel()
        top[start:start + b] = np.bincount(flat, hits, minlength=b * n_concepts).reshape(b, -1)
    return ap / np.maximum(members.sizes, 1), top / max(1, min(k, m))


def chance(positives: np.ndarray, m: int) -> np.ndarray:
    """Expected AP of a random ranking (no ties) of m images with `positives` of a concept: a positive at
    place p counts itself and, on average, (p - 1)(n - 1)/(m - 1) others above it."""
    harmonic = np.sum(1.0 / np.arange(1, m + 1))
    n = np.asarray(positives, dtype=np.float64)
    return (harmonic + (n - 1) / max(m - 1, 1) * (m - harmonic)) / m


def random_threshold(positives: np.ndarray, m: int, seed: int) -> np.ndarray:
    """The AP that LEVEL of TRIALS random rankings of m images reach at most, for each concept size.

    Sizes are rounded down to two significant digits first (137 -> 130): fewer sizes to simulate, and a
    smaller concept's threshold is the higher one, so the rounding only ever asks for more. The answer
    depends on the sizes, m and the seed alone - the same for every layer of a dataset - and costs seconds
    (3.3 s for 4,600 images), so a process computes it once."""
    return np.array(_random_thresholds(tuple(int(v) for v in positives), int(m), int(seed)))


@functools.lru_cache(maxsize=16)
def _random_thresholds(positives: tuple[int, ...], m: int, seed: int) -> tuple[float, ...]:
    found = {}
    rng = np.random.default_rng([seed, 3])
    rounded = [_two_digits(int(v)) for v in positives]
    for n in sorted(set(rounded)):
        places = np.sort(np.argpartition(rng.random((TRIALS, m)), n - 1, axis=1)[:, :n], axis=1) + 1
        trials = (np.arange(1, n + 1) / places).mean(1)
        found[n] = float(np.quantile(trials, LEVEL, method="higher"))
    return tuple(found[n] for n in rounded)


def _two_digits(n: int) -> int:
    scale = 10 ** max(0, len(str(max(n, 1))) - 2)
    return max(1, n // scale * scale)


def thresholds(positives: np.ndarray, m: int, seed: int) -> np.ndarray:
    """The held-out AP each concept needs to label a unit (see the module's docstring)."""
    return np.maximum(np.maximum(FLOOR, random_threshold(positives, m, seed)), LIFT * chance(positives, m))


def split(n: int, seed: int) -> np.ndarray:
    """(n,) bool: the held-out half of n sampled images (the other half chooses)."""
    held = np.zeros(n, dtype=bool)
    held[np.random.default_rng([seed, 4]).permutation(n)[: n // 2]] = True
    return held
