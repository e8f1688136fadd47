"""Which photos a layer's caricatures and DeepDreams show: a folder given with --photos, or a few chosen from the
dataset by a fixed, seeded rule.

The rule: with labels, `count` classes spread evenly over the dataset's classes in index order (for ImageNet's
1,000 that is classes 0, 200, 400, ... : a fish, a dog, ... rather than six dogs), and in each class one photo
drawn with the run's seed; without labels, `count` photos drawn with the seed. A photo that cannot be decoded is
passed over for the next one the rule gives, so a damaged file never costs the set a photo.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from microscope.data.files import content_digest
from microscope.data.images import ImageDataset, UnreadableImage, load_rgb
from microscope.errors import UsageError

MAX_PHOTOS = 32  # a layer page shows every photo of the set with its two images


@dataclass(frozen=True)
class Photo:
    path: str  # absolute
    name: str  # its name in its folder (what the page shows)
    key: str  # 16 hex digits of its content digest: the store's name for it
    label: str | None = None  # its class name, where the dataset has labels


def readable(path: Path) -> bool:
    try:
        load_rgb(path)
        return True
    except UnreadableImage:
        return False


def photo(dataset: ImageDataset, index: int, class_names=None) -> Photo:
    path = dataset.path(index)
    label = None
    if dataset.labels is not None:
        number = dataset.labels[index]
        names = dataset.classes or class_names or []
        label = names[number] if 0 <= number < len(names) else f"class {number}"
    return Photo(str(path.resolve()), dataset.files[index], content_digest(path).hex()[:16], label)


def folder_photos(folder: str | Path) -> list[Photo]:
    """Every readable photo of a --photos folder, in its sorted order; one line if there is none or too many."""
    dataset = ImageDataset(folder)  # says "no images found in ..." for a folder without any
    chosen = [photo(dataset, i) for i in range(len(dataset)) if readable(dataset.path(i))]
    if not chosen:
        raise UsageError(f"none of the {len(dataset)} image files in --photos {folder} can be read; "
                         "pass a folder with readable photos")
    if len(chosen) > MAX_PHOTOS:
        raise UsageError(f"--photos {folder} has {len(chosen)} photos; caricatures take at most {MAX_PHOTOS} "
                         "(each is shown on every layer page): pass a folder with fewer")
    return _unique(chosen)


def dataset_photos(dataset: ImageDataset, count: int, seed: int, class_names=None) -> list[Photo]:
    """`count` readable photos of the dataset by the module's rule (fewer only if the dataset has fewer)."""
    rng = np.random.default_rng(seed)
    order: list[tuple[list[int], bool]] = []  # (candidates, one photo of them at most)
    if dataset.labels is not None:
        labels = np.asarray(dataset.labels)
        classes = np.unique(labels)
        spread = classes[np.unique(np.linspace(0, len(classes) - 1, min(count, len(classes))).round().astype(int))]
        rest = [c for c in classes if c not in set(spread.tolist())]  # where a class has no readable photo
        order = [(rng.permutation(np.flatnonzero(labels == c)).tolist(), True) for c in [*spread, *rest]]
    order.append((rng.permutation(len(dataset)).tolist(), False))  # fewer classes than photos wanted
    chosen: dict[str, Photo] = {}
    for candidates, one in order:
        for index in candidates:
            if len(chosen) == count:
                return list(chosen.values())
            if readable(dataset.path(index)):
                found = photo(dataset, index, class_names)
                if found.key not in chosen:  # the same photo under two names is one photo
                    chosen[found.key] = found
                    if one:
                        break
    return list(chosen.values())


def _unique(photos: list[Photo]) -> list[Photo]:
    """The same photo twice (two names, one content) is shown once."""
    seen: dict[str, Photo] = {}
    for one in photos:
        seen.setdefault(one.key, one)
    return list(seen.values())
