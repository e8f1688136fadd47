"""Top-1/top-5 evaluation: exact against brute-force ranks, label checks, and the real weights' accuracy."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from microscope.errors import UsageError
from microscope.network.evaluate import evaluate
from microscope.data.images import ImageDataset, Framing, load_rgb
from microscope.network.loaded import load_network

VIEW = Framing(resize=None, crop=48)  # small: the mechanics do not need 224 px
# The rank of each image's label among its own logits (0 = the top class): top-1 hits 2 of 6,
# top-5 hits 4 of 6 (ranks 0, 0, 1, 4; not 5 or 999).
RANKS = [0, 1, 4, 5, 0, 999]


@pytest.fixture(scope="module")
def random_net():
    return load_network("inceptionv1-caffe", weights="random", seed=0)


def noise_images(root, count=len(RANKS)):
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (70, 80, 3), dtype=np.uint8)).save(root / f"img{i}.png")


def brute_force_logits(network, dataset):
    """Each image alone, loaded and cropped independently of the dataset's loader."""
    logits = []
    for i in range(len(dataset)):
        image = dataset.view.tensor(load_rgb(dataset.path(i)))
        with torch.no_grad():
            logits.append(network.activations(image[None].float() / 255, ["logits"])["logits"][0])
    return torch.stack(logits)


def write_csv(path, rows, header=True):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(["file", "class_index"])
        writer.writerows(rows)


def test_accuracy_matches_brute_force_ranks(tmp_path, random_net):
    images = tmp_path / "images"
    images.mkdir()
    noise_images(images)
    logits = brute_force_logits(random_net, ImageDataset(images, view=VIEW))
    order = logits.argsort(dim=1, descending=True)
    labels = [int(order[i, rank]) for i, rank in enumerate(RANKS)]
    # Batched and single-image logits differ by float rounding; the ranks used must not be that close.
    sorted_logits = logits.gather(1, order)
    for i, rank in enumerate(RANKS[:4]):
        assert (sorted_logits[i, rank] - sorted_logits[i, rank + 1]).abs() > 1e-5 * sorted_logits[i].abs().max()
    write_csv(tmp_path / "labels.csv", [(f"img{i}.png", label) for i, label in enumerate(labels)])
    (images / "img9.png").write_bytes(b"not a png")  # unlisted: ignored, the CSV defines the dataset
    dataset = ImageDataset(images, labels=tmp_path / "labels.csv", view=VIEW)
    result = evaluate(random_net, dataset, batch_size=4, workers=0, progress=False)
    assert result == {"top1": 2 / 6, "top5": 4 / 6, "n": 6, "skipped": []}


def test_unreadable_images_are_skipped_and_counted(tmp_path, random_net):
    images = tmp_path / "images"
    images.mkdir()
    noise_images(images, 2)
    logits = brute_force_logits(random_net, ImageDataset(images, view=VIEW))
    (images / "img0b.jpg").write_bytes(b"\xff\xd8\xff" + bytes(300))  # a broken JPEG between them
    rows = [("img0.png", int(logits[0].argmax())), ("img0b.jpg", 0), ("img1.png", int(logits[1].argmin()))]
    write_csv(tmp_path / "labels.csv", rows)
    dataset = ImageDataset(images, labels=tmp_path / "labels.csv", view=VIEW)
    result = evaluate(random_net, dataset, batch_size=2, workers=0, progress=False)
    assert {k: v for k, v in result.items() if k != "skipped"} == {"top1": 0.5, "top5": 0.5, "n": 2}
    assert [path for path, _ in result["skipped"]] == ["img0b.jpg"]


def test_label_map_translates_dataset_labels_to_logits(tmp_path):
    # Lucid's inceptionv1 has 1008 logits in another class order: plain labels are refused,
    # mapped labels are scored against the mapped logit.
    net = load_network("inceptionv1", weights="random", seed=0)
    noise_images(tmp_path, 1)
    logits = brute_force_logits(net, ImageDataset(tmp_path, view=VIEW))
    write_csv(tmp_path / "labels.csv", [("img0.png", 7)])
    dataset = ImageDataset(tmp_path, labels=tmp_path / "labels.csv", view=VIEW)
    with pytest.raises(UsageError, match="has 1008 logits"):
        evaluate(net, dataset, workers=0, progress=False)
    label_map = list(range(1000))
    label_map[7] = int(logits[0].argmax())
    result = evaluate(net, dataset, workers=0, progress=False, label_map=label_map)
    assert result["top1"] == 1.0
    with pytest.raises(UsageError, match="outside the label map"):
        evaluate(net, dataset, workers=0, progress=False, label_map=[0, 1])


def test_bad_labels_are_usage_errors(tmp_path, random_net):
    noise_images(tmp_path, 1)
    with pytest.raises(UsageError, match="no labels; pass --labels CSV"):
        evaluate(random_net, ImageDataset(tmp_path, view=VIEW), progress=False)
    write_csv(tmp_path / "labels.csv", [("img0.png", 1000)])
    dataset = ImageDataset(tmp_path, labels=tmp_path / "labels.csv", view=VIEW)
    with pytest.raises(UsageError, match="class index 1000 is outside model inceptionv1-caffe's 1000 logits"):
        evaluate(random_net, dataset, workers=0, progress=False)


def test_real_weights_classify_imagenet_photos(tmp_path, shared_dir):
    root = shared_dir / "data" / "imagenet-val-1300"
    full = ImageDataset(root, labels=root / "labels.csv", view=Framing(256, 224))
    assert len(full) == 1300 and 0 <= min(full.labels) and max(full.labels) < 1000
    with open(root / "labels.csv") as f:
        rows = list(csv.reader(f))[1:65]
    write_csv(tmp_path / "labels64.csv", rows)
    dataset = ImageDataset(root, labels=tmp_path / "labels64.csv", view=Framing(256, 224))
    net = load_network("inceptionv1-caffe", weights=str(shared_dir / "weights" / "bvlc_googlenet.npz"))
    result = evaluate(net, dataset, batch_size=32, workers=0, progress=False)
    assert result["n"] == 64 and result["skipped"] == []
    assert result["top1"] >= 0.6 and result["top5"] >= result["top1"]
