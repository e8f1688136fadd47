"""`--images imagenette`: the Imagenette validation set (10 ImageNet classes, 3,925 photos).

torchvision downloads and unpacks it into the cache (its archive URL and md5 live in
`torchvision.datasets.Imagenette`); an unpacked copy already in the cache is used as it is, which is
also how the tests exercise this path without a network. We write a `file,class_index` CSV beside it
whose indices are ImageNet-1k class indices, so top-class statistics name real ImageNet classes.
"""
from __future__ import annotations

from pathlib import Path

from torchvision.datasets import Imagenette
from torchvision.models._meta import _IMAGENET_CATEGORIES

from microscope.errors import UsageError
from microscope.store import atomic_write_text
from microscope.data.cache import cache_dir

SIZE = "320px"  # the 320 px edition: large enough for a 224 view, a tenth of the full download


def imagenet_index(wnid: str) -> int:
    """ImageNet-1k class index of one of Imagenette's ten synsets, by its torchvision class name."""
    name = Imagenette._WNID_TO_CLASS[wnid][0]
    return _IMAGENET_CATEGORIES.index(name)


def imagenette(root: Path | None = None, download: bool = True) -> tuple[Path, Path]:
    """(image folder, labels CSV) of the Imagenette validation split, downloading it if needed."""
    root = Path(root) if root is not None else cache_dir() / "imagenette"
    try:
        dataset = Imagenette(str(root), split="val", size=SIZE, download=download)
    except Exception as error:  # network down, bad archive, or nothing there with download=False
        url = Imagenette._ARCHIVES[SIZE][0]
        raise UsageError(
            f"cannot get Imagenette from {url} ({type(error).__name__}: {error}); "
            f"download and unpack it into {root} yourself, or pass --images DIR"
        ) from None
    images = Path(dataset._image_root)
    labels = root / f"imagenette-{SIZE}-val-labels.csv"
    rows = ["file,class_index"]
    for path, folder_index in dataset._samples:
        wnid = dataset.wnids[folder_index]
        rows.append(f"{Path(path).relative_to(images).as_posix()},{imagenet_index(wnid)}")
    if len(rows) == 1:
        raise UsageError(f"Imagenette in {images} holds no images; delete {root} and run again to re-download")
    atomic_write_text(labels, "\n".join(rows) + "\n")
    return images, labels
