"""--images imagenette, exercised on a local copy laid out as torchvision unpacks it (no network here)."""
import csv

import pytest
from PIL import Image
from torchvision.models._meta import _IMAGENET_CATEGORIES

from microscope.errors import UsageError
from microscope.data.images import ImageDataset
from microscope.data.imagenette import imagenet_index, imagenette


def test_wnids_map_to_imagenet_indices():
    assert imagenet_index("n01440764") == 0  # tench
    assert _IMAGENET_CATEGORIES[imagenet_index("n03888257")] == "parachute"
    assert imagenet_index("n02102040") == 217  # English springer


def test_local_copy_is_used_and_labelled(tmp_path):
    val = tmp_path / "imagenette2-320" / "val"
    for wnid, count in (("n01440764", 2), ("n03888257", 3)):
        (val / wnid).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (40, 30), (i * 40, 10, 200)).save(val / wnid / f"{wnid}_{i}.JPEG")
    images, labels = imagenette(tmp_path, download=True)  # already there: nothing is fetched
    assert images == val
    rows = list(csv.DictReader(labels.open()))
    assert len(rows) == 5
    assert {r["class_index"] for r in rows if r["file"].startswith("n03888257/")} == {"701"}
    dataset = ImageDataset(images, labels=labels)
    assert sorted(set(dataset.labels)) == [0, 701]


def test_missing_copy_without_download_is_a_clear_error(tmp_path):
    with pytest.raises(UsageError, match="--images DIR"):
        imagenette(tmp_path / "empty", download=False)
