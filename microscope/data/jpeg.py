"""Plain JPEGs: the files a device's JPEG decoder reads as Pillow does, and decoding a batch of them there.

On a GPU, decoding photos in a few CPU processes cannot keep up with the forward pass; torchvision's
`decode_jpeg` decodes a list of JPEGs on the device itself (nvJPEG). It only matches what `load_rgb`
makes of a file for plain JPEGs, which `plain_jpeg` recognises from the header alone (no decoding):
8-bit baseline, extended or progressive Huffman frames of 1 (grey) or 3 (YCbCr) components, no Adobe
segment (CMYK, YCCK, RGB transforms), and no EXIF or XMP orientation that `load_rgb` would turn
upright. It also wants the file to end with an EOI marker: a truncated JPEG is refused by Pillow
("image file is truncated"), but a device decoder may hand back a half-grey picture without a word,
so such a file goes to Pillow, which skips it with its reason. Every other file goes to Pillow too:
the check only chooses the decoder, never whether a photo is read.

torchvision 0.29 deprecates its image decoders in favour of TorchCodec; the project pins torchvision
<= 0.29.1 and the warning is silenced where the decoder is called, until it moves.
"""
from __future__ import annotations

import re
import warnings
from typing import Callable

import torch
from torchvision.io import ImageReadMode, decode_jpeg

PLAIN_FRAMES = {0xC0, 0xC1, 0xC2}  # SOF0 baseline, SOF1 extended sequential, SOF2 progressive (Huffman)
OTHER_FRAMES = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # lossless, hierarchical, arithmetic
START_OF_SCAN, APP1, APP14 = 0xDA, 0xE1, 0xEE
STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length (TEM, RSTn)
ROTATED = range(2, 9)  # EXIF orientations that ImageOps.exif_transpose acts on; others leave the photo as it is
RGB_IDS = (ord("R"), ord("G"), ord("B"))  # component ids libjpeg reads as RGB, not YCbCr
XMP_ORIENTATION = re.compile(rb'tiff:Orientation(="|>)([0-9])')  # as Pillow's Image.getexif reads it


def plain_jpeg(data: bytes) -> bool:
    """Whether a device decoder reads these bytes as `load_rgb` does (see the module's docstring)."""
    if len(data) < 4 or data[:2] != b"\xff\xd8" or data[-2:] != b"\xff\xd9":
        return False
    position, frame = 2, False
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return False
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte before a marker
            position += 1
            continue
        if marker in STANDALONE:
            position += 2
            continue
        length = int.from_bytes(data[position + 2:position + 4], "big")
        if length < 2 or position + 2 + length > len(data):
            return False
        segment = data[position + 4:position + 2 + length]
        if marker == START_OF_SCAN:
            return frame  # the header is all read: what follows is entropy-coded data
        if not _plain_segment(marker, segment, frame):
            return False
        frame = frame or marker in PLAIN_FRAMES
        position += 2 + length
    return False


def _plain_segment(marker: int, segment: bytes, frame_seen: bool) -> bool:
    if marker in PLAIN_FRAMES:
        return not frame_seen and _plain_frame(segment)
    if marker in OTHER_FRAMES:
        return False
    if marker == APP14 and segment.startswith(b"Adobe"):
        return False
    if marker == APP1:
        if segment.startswith(b"Exif\0\0") and _orientation(segment[6:]) in (None, *ROTATED):
            return False
        match = XMP_ORIENTATION.search(segment)
        if match and int(match[2]) in ROTATED:
            return False
    return True


def _plain_frame(segment: bytes) -> bool:
    """An 8-bit frame of a known size with 1 component, or 3 that are YCbCr."""
    if len(segment) < 6 or segment[0] != 8:
        return False
    height, width, components = int.from_bytes(segment[1:3], "big"), int.from_bytes(segment[3:5], "big"), segment[5]
    if not height or not width or components not in (1, 3) or len(segment) < 6 + 3 * components:
        return False  # a height of 0 is given later by a DNL marker, which not every decoder reads
    return tuple(segment[6 + 3 * i] for i in range(components)) != RGB_IDS


def _orientation(tiff: bytes) -> int | None:
    """The orientation tag of an EXIF block's first IFD (1 when absent), None when the block is damaged."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return None
    offset = int.from_bytes(tiff[4:8], order)
    if offset + 2 > len(tiff):
        return None
    for entry in range(offset + 2, offset + 2 + 12 * int.from_bytes(tiff[offset:offset + 2], order), 12):
        if entry + 12 > len(tiff):
            return None
        if int.from_bytes(tiff[entry:entry + 2], order) == 0x0112:
            return int.from_bytes(tiff[entry + 8:entry + 10], order)
    return 1


def decode_on(device: torch.device, data: list[torch.Tensor],
              frame: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor | None]:
    """Plain JPEGs (1-d uint8 CPU tensors of their bytes) decoded to RGB on `device` and framed there.

    `frame` takes a (3, H, W) uint8 tensor on the device to the model's view. One call decodes the
    whole list (on CUDA, nvJPEG batches it); when that call fails, each file is decoded alone, and a
    file the decoder still refuses is None: the caller decodes it with Pillow, which reads it or says why not.
    """
    if not data:
        return []
    try:
        decoded = _decode(data, device)
    except (RuntimeError, ValueError):  # one bad file fails the whole call
        decoded = [_decode_one(item, device) for item in data]
    return [None if image is None else frame(image) for image in decoded]


def _decode_one(data: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    try:
        return _decode([data], device)[0]
    except (RuntimeError, ValueError):
        return None


def _decode(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29's, see the module's docstring
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
