"""Receptive-field squares of an image, padded where they leave it, and their encoding: what the
dataset examples (examples/patches.py) and the atlas's cells (atlas/cells.py) cut from the views the
model saw. Why the squares are cut this way (one shrink of the view per layer, slices of a kept
canvas): examples/patches.py.
"""
from __future__ import annotations

import io

import numpy as np
import simplejpeg
import torch
from PIL import Image

from microscope.data.images import resize_rgb
from microscope.store import LayerInfo

PAD_COLOUR = (128, 128, 128)  # a flat mid grey that reads as "no image here" on the site's white pages


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
