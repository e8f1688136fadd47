"""Receptive-field crops of the example images, cut after the pass from the view the model saw.

A unit at activation position (y, x) sees the input square [lo + y*stride, hi + y*stride] x
[lo + x*stride, hi + x*stride] (see receptive_field.py): its receptive field, rf_size pixels wide,
centred on rf_offset + (y, x) * stride. The patch is exactly that square of the view. Where it
hangs over the image's border (always, for deep layers whose field is wider than the image) the
outside is PAD_COLOUR, a flat mid grey that reads as "no image here" on the site's white pages.
Global layers (logits) see the whole image: their patch is the whole view.

Patches wider than `size` pixels are shrunk to `size`; smaller ones keep their pixels (a conv1
patch is 7 x 7) and the site scales them up without smoothing. A layer has C x (k + 12) patches
(inception_4a: 30,720 at k = 48) from up to every image, so the cost per patch and per image and
layer is what counts. Each image's view is read once for all its patches (from the pass's view
cache, viewcache.py, or decoded again); per layer, if the field is wider than `size`, the view is
shrunk once as a whole by size / field (bicubic, antialiased, torch's uint8 kernel), then padded
with PAD_COLOUR as far as the fields reach (on a canvas kept from image to image), and the
patches are slices of that - a slice can sit up to half an output pixel off the exact field,
invisible at this size, while shrinking every patch on its own costs 10x more. Padding first and
shrinking the padded canvas (as this module once did) gives the same pixels away from the image's
border but cost 3x more for inception_4a and 26x for inception_5b, whose 715 px fields reach far
outside the 224 px view. The default JPEG quality 90 encodes an 80 px patch in ~0.025 ms (about
2 KB), which is now most of the cost; WebP quality 80 is ~45 % smaller but ~20x slower to encode
(method 4). Measured on ImageNet.
(Only the first 12 bottom examples get patches by default: the site shows 12.)
"""
from __future__ import annotations

import io
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import simplejpeg
import torch
from PIL import Image
from tqdm import tqdm

from microscope.catalogue import LayerInfo
from microscope.examples.viewcache import ViewCache
from microscope.images import resize_rgb
from microscope.packs import BAND0, BOTTOM, CHUNK, TOP, complete_chunks, write_pack
from microscope.store import atomic_write_bytes

PAD_COLOUR = (128, 128, 128)
PROCESSES_FROM = 5000  # patches; below this, starting processes costs more than it saves


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
    def from_summary(cls, layer: LayerInfo, directory: Path, summary: dict, bands: bool,
                     bottom: int | None = None) -> "LayerPatches":
        """Top examples, the first `bottom` bottom ones (all if None) and band samples if `bands`,
        of every unit; empty slots left out."""
        parts = [(summary["top_index"], summary["top_y"], summary["top_x"], TOP),
                 (summary["bottom_index"][:, :bottom], summary["bottom_y"][:, :bottom],
                  summary["bottom_x"][:, :bottom], BOTTOM)]
        if bands:
            for band in range(summary["band_index"].shape[1]):
                parts.append((summary["band_index"][:, band], summary["band_y"][:, band],
                              summary["band_x"][:, band], BAND0 + band))
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


def receptive_squares(layer: LayerInfo, y: np.ndarray, x: np.ndarray, image_size: int):
    """(tops, lefts, side) in view pixels of positions (y, x)'s receptive fields (may hang outside)."""
    if layer.rf_size is None:
        return np.zeros(len(y), np.int64), np.zeros(len(x), np.int64), image_size
    side = layer.rf_size
    first = layer.rf_offset - (side - 1) / 2  # an integer: the field's first pixel at position 0
    tops = np.rint(first + np.asarray(y, np.int64) * layer.stride).astype(np.int64)
    lefts = np.rint(first + np.asarray(x, np.int64) * layer.stride).astype(np.int64)
    return tops, lefts, side


def cut_patches(view: np.ndarray, layer: LayerInfo, y: np.ndarray, x: np.ndarray, size: int,
                canvases: dict | None = None) -> list[np.ndarray]:
    """The receptive-field squares of positions (y, x) in `view` (H, W, 3), padded, at most size px.

    With `canvases` (a dict the caller keeps), padded canvases are reused from call to call, and
    the squares returned are views into one: valid until the next call with the same dict.
    """
    height, width = view.shape[:2]
    tops, lefts, side = receptive_squares(layer, y, x, height)
    if side > size:  # shrink the view, then cut from it: the fields scale by size / side
        scale = size / side
        view = shrink(view, max(1, round(height * scale)), max(1, round(width * scale)))
        height, width = view.shape[:2]
        tops, lefts, side = np.rint(tops * scale).astype(np.int64), np.rint(lefts * scale).astype(np.int64), size
    return _padded_squares(view, tops, lefts, side, {} if canvases is None else canvases)


def shrink(view: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3), bicubic and antialiased (torch's uint8 kernel, within
    1 grey level of Pillow's BICUBIC and 4x faster)."""
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
    4:2:0 like Pillow's default), which skips Pillow's per-image Python: about half the time per
    80 px patch (measured beside Pillow in one run: 0.055 ms against 0.125 ms)."""
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


@dataclass
class _Job:
    """Everything the cutting needs, shared with worker processes by fork (never pickled)."""

    dataset: object
    work: dict  # chunk -> [(LayerPatches, rows of the chunk's images, sorted by image)]
    thumbs: dict  # image index -> path
    size: int
    quality: int
    suffix: str
    thumb_size: int
    thumb_quality: int
    views: ViewCache | None  # the pass's decoded views, where it kept them

    def chunk(self, chunk: int) -> int:
        """Cut, encode and pack the chunk's patches of every layer (and write its thumbnails).

        Returns how many of its images could not be read."""
        parts = self.work[chunk]
        indices = sorted({int(i) for patches, rows in parts for i in patches.index[rows]}
                         | {i for i in self.thumbs if i // CHUNK == chunk})
        entries: list[list] = [[] for _ in parts]
        by_image = [_runs(patches.index[rows]) for patches, rows in parts]  # image -> slice of its rows
        canvases: dict = {}
        failed = 0
        for index in indices:
            view = None if self.views is None else self.views.get(index)
            if view is None:
                tensor, _ = self.dataset.load(index)
                if tensor is None:
                    failed += 1
                    continue
                view = tensor.permute(1, 2, 0).contiguous().numpy()  # (H, W, 3), as shrink and the encoders read it
            for (patches, rows), out, runs in zip(parts, entries, by_image):
                if index in runs:
                    rows = rows[runs[index]]
                    cut = cut_patches(view, patches.layer, patches.y[rows], patches.x[rows], self.size, canvases)
                    out += zip(patches.unit[rows].tolist(), patches.kind[rows].tolist(), patches.rank[rows].tolist(),
                               encode_all(cut, self.suffix, self.quality))
            if index in self.thumbs:
                height, width = view.shape[:2]
                thumb = view if max(height, width) <= self.thumb_size else \
                    shrink(view, round(self.thumb_size * height / width), self.thumb_size)
                # Not fsync'ed: the stage calls os.sync() once before it writes config.json.
                atomic_write_bytes(self.thumbs[index], encode_all([thumb], "jpg", self.thumb_quality)[0],
                                   sync=False)
        if not failed:  # an incomplete pack is never written: the next run cuts the chunk again
            for (patches, _), out in zip(parts, entries):
                if out:
                    write_pack(patches.directory, chunk, out)
        return failed


def _runs(sorted_values: np.ndarray) -> dict[int, slice]:
    """value -> slice of its run in a sorted array."""
    values, starts = np.unique(sorted_values, return_index=True)
    ends = np.append(starts[1:], sorted_values.size)
    return {int(v): slice(int(a), int(b)) for v, a, b in zip(values, starts, ends)}


_worker_job: _Job | None = None  # set once in each worker process, by fork


def _start_worker(job: _Job) -> None:
    global _worker_job
    _worker_job = job
    torch.set_num_threads(1)  # the parent's OpenMP pool does not survive fork; never spin one up


def _worker_chunk(chunk: int) -> int:
    return _worker_job.chunk(chunk)


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def write_patches(dataset, layers: list[LayerPatches], *, size: int, quality: int, suffix: str = "jpg",
                  thumbs: dict[int, Path] | None = None, thumb_size: int = 160, thumb_quality: int = 85,
                  processes: int | None = None, views: ViewCache | None = None, progress: bool = True) -> int:
    """Cut, encode and pack every patch (and write the thumbnails asked for), decoding each image once.

    Work goes by chunks of CHUNK images (one pack per layer and chunk, see microscope/packs.py);
    complete packs are kept (a resumed run; see run.py for why they can be trusted). Chunks are
    spread over `processes` forked processes (default: one per usable CPU, when there is enough
    work): encoding ~0.05 ms per patch is mostly Python, which threads cannot overlap. Where fork
    is not available, or with `processes=1`, threads of this process do it. Packs do not depend on
    which process wrote them. Returns the number of images that could not be read (they were
    readable during the pass, so this only happens if files changed since).
    """
    thumbs = {index: path for index, path in (thumbs or {}).items() if not path.exists()}
    for path in set(path.parent for path in thumbs.values()):
        path.mkdir(parents=True, exist_ok=True)
    work: dict[int, list[tuple[LayerPatches, np.ndarray]]] = {index // CHUNK: [] for index in thumbs}
    count = 0
    for patches in layers:
        patches.directory.mkdir(parents=True, exist_ok=True)
        done = complete_chunks(patches.directory)
        rows = np.argsort(patches.index, kind="stable")
        chunk_of = patches.index[rows] // CHUNK
        starts = np.flatnonzero(np.diff(chunk_of, prepend=-1))
        for part in np.split(rows, starts[1:]):
            if not part.size:  # a layer without patches
                continue
            chunk = int(patches.index[part[0]] // CHUNK)
            if chunk not in done:
                work.setdefault(chunk, []).append((patches, part))
                count += part.size

    job = _Job(dataset, work, thumbs, size, quality, suffix, thumb_size, thumb_quality, views)
    chunks = sorted(work)
    if processes is None:
        processes = usable_cpus() if count >= PROCESSES_FROM else 1
    if processes > 1 and "fork" in multiprocessing.get_all_start_methods():
        pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_start_worker, initargs=(job,))
        cut = _worker_chunk
    else:
        pool, cut = ThreadPoolExecutor(max_workers=max(1, processes)), job.chunk
    bar = tqdm(total=count, desc="patches", unit="patch", disable=not progress)
    failed = 0
    with pool:
        for chunk, bad in zip(chunks, pool.map(cut, chunks)):
            failed += bad
            bar.update(sum(rows.size for _, rows in work[chunk]))
    bar.close()
    return failed
