"""Top-1 / top-5 accuracy of a network on a labelled image folder: the check that weights are right.

A wrong channel order, mean or padding rarely crashes anything; it just costs accuracy. Running the
standard evaluation view (resize 256, centre crop 224) over labelled photos and comparing with the
published number is the cheapest end-to-end test that a port computes what the original computed.

Labels are indices into the model's logits. A model whose logits follow another class order (Lucid's
inceptionv1 has 1008 logits in the ILSVRC2012 devkit's order, with unused slots) needs a `label_map`
from dataset label to logit index: a constant offset would not do, the orders are permutations.
"""
from __future__ import annotations

from typing import Sequence

import torch
from tqdm import tqdm

from microscope.errors import UsageError
from microscope.data.images import ImageDataset
from microscope.network.loaded import Network

# The class count of the ImageNet label indices (0..999) used by labels.csv files and ImageFolder trees
# of ImageNet; a model with a different number of logits needs an explicit `label_map`.
IMAGENET_CLASSES = 1000


def evaluate(network: Network, dataset: ImageDataset, batch_size: int = 32, workers: int | None = None,
             progress: bool = True, label_map: Sequence[int] | None = None) -> dict:
    """Top-1 and top-5 accuracy (fractions) of `network` on `dataset`, seen through `dataset.view`.

    Returns {"top1", "top5", "n": images scored, "skipped": [(file, reason) of unreadable images]}.
    `label_map[label]` is the logit index of a dataset label.
    """
    if dataset.labels is None:
        raise UsageError(f"the images in {dataset.root} have no labels; pass --labels CSV "
                         "(file,class_index) or use an ImageFolder tree (--labels folders)")
    targets = torch.tensor(dataset.labels, dtype=torch.long)
    if label_map is not None:
        targets = _mapped(targets, label_map)
    correct1 = correct5 = scored = 0
    skipped: list[tuple[str, str]] = []
    checked = False
    bar = tqdm(total=len(dataset), desc=f"evaluate {network.spec.name}", unit="img", disable=not progress)
    with torch.inference_mode():
        for batch in dataset.batches(batch_size, workers, pin_memory=network.device.type == "cuda"):
            skipped += batch.skipped
            bar.update(len(batch.indices) + len(batch.skipped))
            if not len(batch.indices):
                continue
            rgb01 = batch.images.to(network.device, non_blocking=True).float() / 255
            logits = network.activations(rgb01, ["logits"])["logits"].flatten(1)
            if not checked:  # the logits' width is only known once the network has run
                _check_targets(network, targets, logits.shape[1], label_map is not None)
                checked = True
            target = targets[batch.indices].to(logits.device)
            top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hits = top5 == target[:, None]
            correct1 += int(hits[:, 0].sum())
            correct5 += int(hits.any(dim=1).sum())
            scored += len(batch.indices)
            bar.set_postfix(top1=f"{correct1 / scored:.3f}", top5=f"{correct5 / scored:.3f}")
    bar.close()
    if scored == 0:
        raise UsageError(f"none of the {len(dataset)} images in {dataset.root} could be read; "
                         "see the warnings above for why")
    return {"top1": correct1 / scored, "top5": correct5 / scored, "n": scored, "skipped": skipped}


def _mapped(labels: torch.Tensor, label_map: Sequence[int]) -> torch.Tensor:
    table = torch.as_tensor(list(label_map), dtype=torch.long)
    if len(labels) and int(labels.max()) >= len(table):
        raise UsageError(f"label {int(labels.max())} is outside the label map ({len(table)} entries); "
                         "pass a label map that covers every class of the dataset")
    return table[labels]


def _check_targets(network: Network, targets: torch.Tensor, width: int, mapped: bool) -> None:
    name = network.spec.name
    if not mapped and width != IMAGENET_CLASSES:
        raise UsageError(
            f"model {name} has {width} logits, not the {IMAGENET_CLASSES} ImageNet classes in their standard "
            "order, so dataset labels cannot index them directly; evaluate a 1000-class model "
            "(inceptionv1-caffe, googlenet) or pass a label map"
        )
    if len(targets) and (int(targets.max()) >= width or int(targets.min()) < 0):
        bad = int(targets.max()) if int(targets.max()) >= width else int(targets.min())
        raise UsageError(f"class index {bad} is outside model {name}'s {width} logits (0..{width - 1}); "
                         "check the labels file")
