"""Thumbnails of the dataset's example images: written with a recorded checksum, checked, repaired.

Every image that is an example of some unit gets a small JPEG of the model's view of it (the site's
photos). They are shared by all layers of a dataset, so they are not covered by any one layer's
result record: each pack of images [first, last) has a ThumbStamps record of its own. A thumbnail
that is missing, damaged or unrecorded (stores from before the stamps) is rewritten from the dataset
by the examples view's "thumbs" step, without recomputing any layer.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from microscope.examples.patches import PatchFormat, thumbnail_jpeg
from microscope.store import ExamplesSummary, FileStamp, Store, ThumbStamps, atomic_write_bytes


def needed(store: Store, model: str, layers: list[str]) -> set[int]:
    """The images the layers' examples show (their thumbnails are needed), from their stored summaries."""
    found: set[int] = set()
    for layer in layers:
        summary = store.read(store.examples_summary_file(model, layer), ExamplesSummary)
        if summary is not None:
            for indices in (summary.top_index, summary.bottom_index, summary.band_index):
                found.update(np.unique(indices[indices >= 0]).tolist())
    return found


def to_write(store: Store, model: str, fingerprint: str, indices) -> list[int]:
    """Those of `indices` whose thumbnail is missing, damaged or has no recorded checksum."""
    stamps = store.thumb_stamps(model, fingerprint)
    return sorted(i for i in indices if store.thumb_problem(store.thumb_file(model, fingerprint, i), stamps.get(i)))


def record(store: Store, model: str, fingerprint: str, written: dict[int, Path], pack_images: int) -> None:
    """Add the stamps of thumbnails just written to their packs' records."""
    by_pack: dict[int, dict[int, Path]] = defaultdict(dict)
    for index, path in written.items():
        by_pack[index // pack_images][index] = path
    for pack, paths in by_pack.items():
        first, last = pack * pack_images, (pack + 1) * pack_images
        file = store.thumb_stamps_file(model, fingerprint, first, last)
        old = store.read(file, ThumbStamps)
        stamps = dict(old.stamps) if old is not None else {}
        stamps.update({str(index): FileStamp.of_file(path) for index, path in paths.items() if path.is_file()})
        store.write(file, ThumbStamps(first=first, last=last, stamps=stamps))


def rewrite(store: Store, model: str, dataset, indices: list[int], form: PatchFormat) -> int:
    """Write the thumbnails of `indices` from the dataset and record them; returns how many failed to load."""
    written, failed = {}, 0
    for index in indices:
        tensor, _ = dataset.load(index)
        if tensor is None:
            failed += 1
            continue
        path = store.thumb_file(model, dataset.fingerprint(), index)
        atomic_write_bytes(path, thumbnail_jpeg(tensor.permute(1, 2, 0).contiguous().numpy(), form))
        written[index] = path
    record(store, model, dataset.fingerprint(), written, form.pack_images)
    return failed
