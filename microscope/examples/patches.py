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
Work goes by chunks of images, one pack per layer and chunk (microscope/packs.py).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import simplejpeg
import torch
from PIL import Image

from microscope.examples.viewcache import ViewCache
from microscope.images import resize_rgb
from microscope.packs import BAND0, BOTTOM, CHUNK, TOP, pack_complete, write_pack
from microscope.store import ExamplesSummary, LayerInfo, atomic_write_bytes

PAD_COLOUR = (128, 128, 128)


@dataclass
class LayerPatches:
    """The crops to cut for one layer: parallel arrays, one row per patch."""

    layer: LayerInfo
    directory: Path  # the layer's patches/ folder, where its packs go (see microscope/packs.py)
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


def cut_patches(view: np.ndarray, layer: LayerInfo, y: np.ndarray, x: np.ndarray, size: int,
                canvases: dict | None = None) -> list[np.ndarray]:
    """The receptive-field squares of positions (y, x) in `view` (H, W, 3), padded, at most size px.

    With `canvases` (a dict the caller keeps), padded canvases are reused from call to call, and
    the squares returned are views into one: valid until the next call with the same dict.
    """
    height, width = view.shape[:2]
    square = layer.receptive_square(y, x)
    if square is None:  # a global layer sees the whole view
        tops, lefts, side = np.zeros(len(y), np.int64), np.zeros(len(x), np.int64), height
    else:
        tops, lefts, side = np.rint(square[0]).astype(np.int64), np.rint(square[1]).astype(np.int64), square[2]
    if side > size:  # shrink the view, then cut from it: the fields scale by size / side
        scale = size / side
        view = shrink(view, max(1, round(height * scale)), max(1, round(width * scale)))
        height, width = view.shape[:2]
        tops, lefts, side = np.rint(tops * scale).astype(np.int64), np.rint(lefts * scale).astype(np.int64), size
    return _padded_squares(view, tops, lefts, side, {} if canvases is None else canvases)


def shrink(view: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3), bicubic and antialiased (torch's uint8 kernel, within
    1 grey level of Pillow's BICUBIC, and faster)."""
    pixels = resize_rgb(torch.from_numpy(view).permute(2, 0, 1), height, width, "bicubic")
    return pixels.permute(1, 2, 0).numpy()


def _padded_squares(view: np.ndarray, tops: np.ndarray, lefts: np.ndarray, side: int,
                    canvases: dict) -> list[np.ndarray]:
    """side x side squares of `view` at (tops, lefts), PAD_COLOUR where they leave it."""
    height, width = view.shape[:2]
    pad = int(max(0, -tops.min(), -lefts.min(), tops.max() + side - height, lefts.max() + side - width))
    if pad == 0:
        padded = view
    else:
        # Canvases are kept per size (pad rounded up so that one serves many images): their
        # border is filled once and stays PAD_COLOUR, only the middle is overwritten.
        pad = -(-pad // 16) * 16
        key = (height, width, pad)
        if key not in canvases:
            canvases[key] = np.empty((height + 2 * pad, width + 2 * pad, 3), np.uint8)
            canvases[key][:] = PAD_COLOUR
        padded = canvases[key]
        padded[pad:pad + height, pad:pad + width] = view
    return [padded[t + pad:t + pad + side, l + pad:l + pad + side] for t, l in zip(tops.tolist(), lefts.tolist())]


def encode_all(images: list[np.ndarray], suffix: str, quality: int) -> list[bytes]:
    """Each (H, W, 3) uint8 image as a file's bytes. JPEG goes through simplejpeg (libjpeg-turbo,
    4:2:0 like Pillow's default), which skips Pillow's per-image Python."""
    if suffix == "jpg":
        # simplejpeg takes strided rows (slices of a canvas) as they are: no copy.
        return [simplejpeg.encode_jpeg(image, quality=quality, colorspace="RGB", colorsubsampling="420")
                for image in images]
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        picture = Image.fromarray(np.ascontiguousarray(image))
        if suffix == "webp":
            picture.save(buffer, format="WEBP", quality=quality, method=4)
        else:  # png: lossless, for exact checks
            picture.save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    return encoded


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
