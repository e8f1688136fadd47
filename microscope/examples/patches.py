"""Receptive-field crops of the example images, cut after the pass from the view the model saw.

A unit at activation position (y, x) sees a square of the input (`LayerInfo.receptive_square`): its
receptive field, rf_size pixels wide. The patch is exactly that square of the view. Where it hangs
over the image's border (always, for deep layers whose field is wider than the image) the outside
is PAD_COLOUR, a flat mid grey that reads as "no image here" on the site's white pages. Global
layers (logits) see the whole image: their patch is the whole view.

Patches wider than `size` pixels are shrunk to `size`; smaller ones keep their pixels (a conv1
patch is 7 x 7) and the site scales them up without smoothing. A layer has C x (k + 12) patches
(inception_4a: 30,720 at k = 48) from up to every image, so the cost per patch and per image and
layer is what counts. Each image's view is read once for all its patches (from the pass's view
cache, viewcache.py, or decoded again); per layer, if the field is wider than `size`, the view is
shrunk once as a whole by size / field (bicubic, antialiased, torch's uint8 kernel), then padded
with PAD_COLOUR as far as the fields reach (on a canvas kept from image to image), and the
patches are slices of that - a slice can sit up to half an output pixel off the exact field,
invisible at this size, while shrinking every patch on its own costs far more. Encoding is
libjpeg-turbo through simplejpeg (bench/NOTES.md has the numbers behind these choices).
Work goes by chunks of images, one pack per layer and chunk (microscope/data/packs.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from microscope.examples.viewcache import ViewCache
from microscope.data.patches import cut_patches, encode_all, shrink
from microscope.data.packs import BAND0, BOTTOM, CHUNK, TOP, pack_complete, write_pack
from microscope.store import ExamplesSummary, LayerInfo, atomic_write_bytes

@dataclass
class LayerPatches:
    """The crops to cut for one layer: parallel arrays, one row per patch."""

    layer: LayerInfo
    directory: Path  # the layer's patches/ folder, where its packs go (see microscope/data/packs.py)
    index: np.ndarray  # dataset index
    unit: np.ndarray
    y: np.ndarray
    x: np.ndarray
    kind: np.ndarray  # packs.TOP, packs.BOTTOM, packs.BAND0 + band
    rank: np.ndarray

    @classmethod
    def from_summary(cls, layer: LayerInfo, directory: Path, summary: ExamplesSummary, bands: bool,
                     bottom: int | None = None) -> "LayerPatches":
        """Top examples, the first `bottom` bottom ones (all if None) and band samples if `bands`,
        of every unit; empty slots left out."""
        parts = [(summary.top_index, summary.top_y, summary.top_x, TOP),
                 (summary.bottom_index[:, :bottom], summary.bottom_y[:, :bottom], summary.bottom_x[:, :bottom], BOTTOM)]
        if bands:
            for band in range(summary.band_index.shape[1]):
                parts.append((summary.band_index[:, band], summary.band_y[:, band], summary.band_x[:, band],
                              BAND0 + band))
        columns = {"index": [], "unit": [], "y": [], "x": [], "kind": [], "rank": []}
        for index, y, x, kind in parts:
            unit, rank = np.nonzero(index >= 0)
            columns["index"].append(index[unit, rank].astype(np.int64))
            columns["unit"].append(unit)
            columns["y"].append(y[unit, rank])
            columns["x"].append(x[unit, rank])
            columns["kind"].append(np.full(unit.size, kind))
            columns["rank"].append(rank)
        return cls(layer, directory, **{k: np.concatenate(v) for k, v in columns.items()})


@dataclass(frozen=True)
class PatchFormat:
    size: int  # largest side of a patch, pixels
    quality: int
    suffix: str  # jpg, webp or png
    thumb_size: int
    pack_images: int = CHUNK  # images per pack
    thumb_quality: int = 85


def thumbnail_jpeg(view: np.ndarray, form: PatchFormat) -> bytes:
    """The model's view of an image (H, W, 3), shrunk to the thumbnail size, as JPEG."""
    height, width = view.shape[:2]
    thumb = view if max(height, width) <= form.thumb_size else \
        shrink(view, round(form.thumb_size * height / width), form.thumb_size)
    return encode_all([thumb], "jpg", form.thumb_quality)[0]


def cut_chunk(dataset, chunk: int, layers: list[LayerPatches], thumbs: dict[int, Path], form: PatchFormat,
              views: ViewCache | None = None) -> int:
    """Cut, encode and pack the patches of every layer from the images of `chunk`, the images
    [chunk * form.pack_images, (chunk + 1) * form.pack_images) (and write the thumbnails of its images
    named in `thumbs`). Packs already complete are kept.

    Returns how many of its images could not be read (they were readable during the pass, so this
    only happens if the files changed since); then no pack of the chunk is written.
    """
    parts = []
    for patches in layers:
        if pack_complete(patches.directory, chunk):
            continue
        rows = np.flatnonzero(patches.index // form.pack_images == chunk)
        if rows.size:
            parts.append((patches, rows[np.argsort(patches.index[rows], kind="stable")]))
    thumbs = {index: path for index, path in thumbs.items() if index // form.pack_images == chunk}
    indices = sorted({int(i) for patches, rows in parts for i in patches.index[rows]} | set(thumbs))
    entries: list[list] = [[] for _ in parts]
    by_image = [_runs(patches.index[rows]) for patches, rows in parts]  # image -> slice of its rows
    canvases: dict = {}
    failed = 0
    for index in indices:
        view = None if views is None else views.get(index)
        if view is None:
            tensor, _ = dataset.load(index)
            if tensor is None:
                failed += 1
                continue
            view = tensor.permute(1, 2, 0).contiguous().numpy()  # (H, W, 3), as shrink and the encoders read it
        for (patches, rows), out, runs in zip(parts, entries, by_image):
            if index in runs:
                rows = rows[runs[index]]
                cut = cut_patches(view, patches.layer, patches.y[rows], patches.x[rows], form.size, canvases)
                out += zip(patches.unit[rows].tolist(), patches.kind[rows].tolist(), patches.rank[rows].tolist(),
                           encode_all(cut, form.suffix, form.quality))
        if index in thumbs:
            # Not fsync'ed: the examples view calls os.sync() once before it marks a layer complete.
            atomic_write_bytes(thumbs[index], thumbnail_jpeg(view, form), sync=False)
    if not failed:  # an incomplete pack is never written: the next run cuts the chunk again
        for (patches, _), out in zip(parts, entries):
            if out:
                patches.directory.mkdir(parents=True, exist_ok=True)
                write_pack(patches.directory, chunk, out)
    return failed


def _runs(sorted_values: np.ndarray) -> dict[int, slice]:
    """value -> slice of its run in a sorted array."""
    values, starts = np.unique(sorted_values, return_index=True)
    ends = np.append(starts[1:], sorted_values.size)
    return {int(v): slice(int(a), int(b)) for v, a, b in zip(values, starts, ends)}
