"""Folders of photos as the model sees them: discovery, labels, decoding, and the centre-crop view.

An `ImageDataset` is a folder of images found recursively, in sorted order of their relative POSIX
paths, so that image `i` is the same file on every machine and with any number of loader workers.
Labels come from an ImageFolder tree (one class per top-level subfolder) or a `file,class_index` CSV.

Decoding is deliberately forgiving about *formats* (grayscale, 16-bit, CMYK, palette, alpha, EXIF
rotation, animations) and strict about *damage*: a corrupt or truncated file is skipped with a
warning naming it, never half-decoded (Pillow's LOAD_TRUNCATED_IMAGES stays off) and never fatal.

Finding the files (safely: link loops, FIFOs) is image_files.py; reading labels is image_labels.py.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, ImageOps

from microscope.errors import UsageError
from microscope.data.files import NotRegular, content_digest, find_images, open_regular
from microscope.data.jpeg import decode_on as decode_jpegs, plain_jpeg
from microscope.data.labels import csv_labels, folder_labels

log = logging.getLogger(__name__)


# Transparent pixels are shown over white: images with alpha are mostly product shots and logos
# made for white pages, and the site displays every image on white.
ALPHA_BACKGROUND = (255, 255, 255)
IMAGE_SAMPLE_SEED = 20260601  # of --image-sample: fixed, so that a sample is part of what a folder is


class UnreadableImage(UsageError):
    """A file that cannot be decoded into a picture (missing, corrupt, truncated, not an image)."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Framing:
    """How a photo becomes the model's square input: shorter side to `resize`, then a centre crop.

    Resizing is bilinear and antialiases when shrinking (the filter's support widens with the
    scale factor), as Pillow's BILINEAR and torchvision's `Resize` do, so the standard evaluation
    recipe (resize 256, crop 224) matches published numbers. It runs on torch's uint8 kernel
    (`resize_rgb`), within 1 grey level of Pillow's and faster (bench/NOTES.md): decoding photos is
    most of what the examples stage does besides the forward pass. `resize=None` keeps the size.
    A photo smaller than the crop is always upscaled so that its shorter side equals the crop.
    """

    resize: int | None = 256
    crop: int = 224

    def __post_init__(self):
        if self.crop < 1:
            raise UsageError(f"crop size must be a positive number of pixels, got {self.crop}")
        if self.resize is not None and self.resize < self.crop:
            raise UsageError(f"resize ({self.resize}) must be at least the crop ({self.crop}); "
                             "pass a larger resize or a smaller crop")

    def tensor(self, image: Image.Image) -> torch.Tensor:
        """The view as a uint8 tensor (3, crop, crop); callers convert with `.float() / 255`."""
        return self.frame(torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1))

    def frame(self, pixels: torch.Tensor) -> torch.Tensor:
        """A decoded photo (3, H, W) uint8, on any device, as the view (3, crop, crop) on the same device."""
        height, width = pixels.shape[1:]
        short = min(width, height)
        target = self.resize if self.resize is not None else max(short, self.crop)
        if short != target:
            scale = target / short
            # The shorter side lands exactly on `target`; the longer one keeps the aspect ratio.
            height, width = (max(target, round(height * scale)), target) if width <= height else \
                            (target, max(target, round(width * scale)))
            pixels = resize_rgb(pixels, height, width, "bilinear")
        # torchvision's CenterCrop rounds the offset the same way.
        left = int(round((width - self.crop) / 2.0))
        top = int(round((height - self.crop) / 2.0))
        return pixels[:, top:top + self.crop, left:left + self.crop].contiguous()


def resize_rgb(pixels: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, height, width) uint8, "bilinear" or "bicubic", antialiased.

    On the CPU, torch's uint8 kernel (the one torchvision's tensor `Resize` uses) on a channels-last
    input: within 1 grey level of Pillow's filters of the same name, and faster. Elsewhere (CUDA has
    no uint8 antialiased kernel) `resize_float`. The result is channels-last too: `.permute(1, 2, 0)`
    of it is a contiguous (height, width, 3) array.
    """
    if pixels.device.type != "cpu":
        return resize_float(pixels, height, width, mode)
    batch = pixels[None].contiguous(memory_format=torch.channels_last)
    resized = torch.nn.functional.interpolate(batch, size=(height, width), mode=mode, antialias=True)
    return resized.contiguous(memory_format=torch.channels_last)[0]  # (it is, except in corner cases)


def resize_float(pixels: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    """`resize_rgb` through float32 and back (rounded, clamped: bicubic overshoots), on any device.

    The same antialiased filter as the uint8 kernel, rounded once at the end instead of in fixed point:
    within 1 grey level of it (tests/test_device_decode.py measures it on the CPU).
    """
    batch = pixels[None].contiguous(memory_format=torch.channels_last).float()
    resized = torch.nn.functional.interpolate(batch, size=(height, width), mode=mode, antialias=True)
    return resized.round_().clamp_(0, 255).to(torch.uint8).contiguous(memory_format=torch.channels_last)[0]


def load_rgb(path: str | Path) -> Image.Image:
    """Decode a file into an 8-bit RGB picture, upright, first frame, alpha over white.

    Raises `UnreadableImage` (one line: path and reason) if the file cannot be fully decoded. The
    reason never holds the path itself: it is stored with the in-root name and may be shown.
    """
    path = Path(path)
    try:
        with open_regular(path) as f, Image.open(f) as image:
            image.seek(0)  # animations (GIF, WebP): the first frame
            image.load()  # decode now, inside the try: truncation only shows up here
            image = _upright(image)
            return _to_rgb(image)
    except NotRegular as error:
        raise UnreadableImage(path, str(error)) from None
    except FileNotFoundError:
        raise UnreadableImage(path, "no such file") from None
    except Image.UnidentifiedImageError:  # its message names the file object, not the file
        raise UnreadableImage(path, "cannot identify image file") from None
    except OSError as error:
        if error.strerror and error.filename is not None:  # e.g. "[Errno 13] Permission denied: '/...'"
            raise UnreadableImage(path, error.strerror.lower()) from None
        raise UnreadableImage(path, _reason(error, path)) from None
    except Exception as error:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError, EOFError...
        raise UnreadableImage(path, _reason(error, path)) from None


def _reason(error: Exception, path: Path) -> str:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return reason.replace(str(path), path.name)  # a local path must not travel with the reason


def _upright(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image, in_place=True) or image
    except Exception:  # noqa: BLE001 - a damaged EXIF block should not cost us an intact photo
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image  # fully loaded: it outlives its file
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grayscale (PNG): Pillow's convert("L") would clip at 255 instead of scaling.
        array = np.asarray(image, dtype=np.float64)
        gray = np.clip(np.rint(array / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode == "F":
        array = np.asarray(image, dtype=np.float64)
        gray = np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or \
        (mode == "P" and "transparency" in image.info) or \
        (mode in ("L", "RGB") and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    # L, 1, P, CMYK (Adobe-inverted CMYK JPEGs are un-inverted by Pillow's decoder), YCbCr, LAB, HSV.
    return image.convert("RGB")


class ImageDataset(torch.utils.data.Dataset):
    """A folder of images in a fixed order, optionally labelled, seen through a `Framing`.

    `labels`: None, "folders" (ImageFolder tree: class = top-level subfolder, classes sorted by name,
    the same indices as torchvision's ImageFolder), or a path to a `file,class_index` CSV whose file
    column is relative to `root` (header row optional). With a CSV, the dataset is exactly the images
    the CSV lists. `sample`: keep a fixed sample of that many of them (--image-sample). Hidden files and
    folders (names starting with ".", e.g. macOS "._x.jpg") are ignored.
    """

    def __init__(self, root: str | Path, labels: str | Path | None = None, view: Framing = Framing(),
                 sample: int | None = None):
        self.root = Path(root)
        self.view = view
        self.classes: list[str] | None = None
        self.labels: list[int] | None = None
        self._fingerprint: str | None = None
        found, skipped = find_images(self.root)
        if labels is None:
            self.files = found
        elif str(labels) == "folders":
            self.files = found
            self.classes, self.labels = folder_labels(self.root, found)
        else:
            self.files, self.labels = csv_labels(Path(labels), self.root, found, skipped)
        self.unlisted = len(found) - len(self.files)  # images of the folder a labels CSV leaves out
        if sample is not None and sample < len(self.files):
            # Seeded apart from --seed: the same folder and count always give the same images, so a preview's
            # examples are reused by the next preview whatever its seed. Spread over the folder, in its order.
            chosen = sorted(np.random.default_rng(IMAGE_SAMPLE_SEED).choice(len(self.files), sample, replace=False))
            self.files = [self.files[i] for i in chosen]
            self.labels = None if self.labels is None else [self.labels[i] for i in chosen]

    @classmethod
    def from_index(cls, index, view: Framing) -> "ImageDataset":
        """The dataset a stored `DatasetIndex` describes, without scanning its folder again (another
        process or machine of the same run reads the same files)."""
        dataset = cls.__new__(cls)
        dataset.root, dataset.view, dataset.files = Path(index.root), view, list(index.files)
        dataset.labels, dataset.classes, dataset._fingerprint = index.labels, index.classes, index.fingerprint
        dataset.unlisted = 0  # not known without scanning the folder
        return dataset

    def __len__(self) -> int:
        return len(self.files)

    def path(self, index: int) -> Path:
        return self.root / self.files[index]

    def load(self, index: int) -> tuple[torch.Tensor | None, str | None]:
        """(image, None), or (None, reason) when the file cannot be decoded."""
        try:
            return self.view.tensor(load_rgb(self.path(index))), None
        except UnreadableImage as error:
            return None, error.reason

    def batches(self, batch_size: int = 32, workers: int | None = None, first: int = 0, last: int | None = None,
                pin_memory: bool = False, only=None, decode_on: torch.device | None = None) -> Iterator["Batch"]:
        """The images [first, last) decoded in `workers` processes, in fixed chunks of indices.

        Batch b holds the readable images of indices [first + b * batch_size, first + (b + 1) *
        batch_size), so batch b is the same on every run whatever the number of workers, and a pass
        can restart at any batch (`first`). Unreadable files are left out of their batch (a batch
        may come back empty) and named in its `skipped`, with one warning line each. With `only` (sorted
        indices), the batches hold those images alone, batch_size at a time.

        With `decode_on` (a device), the workers only read plain JPEGs' bytes (microscope/data/jpeg.py)
        and this process decodes and frames them on that device, a batch at a time; other files are
        decoded by the workers as without it. The batches are the same (indices, skipped, order), their
        images on that device: exactly the workers' on the CPU, within a grey level or so on CUDA.
        """
        if batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {batch_size}")
        workers = default_workers(decode_on) if workers is None else workers
        if workers < 0:
            raise UsageError(f"number of loader workers must be 0 or more, got {workers}")
        last = len(self) if last is None else min(last, len(self))
        chunks = [list(range(start, min(last, start + batch_size))) for start in range(first, last, batch_size)] \
            if only is None else [list(only[start:start + batch_size]) for start in range(0, len(only), batch_size)]
        items, collate = (_Decoded(self), _collate) if decode_on is None else (_Read(self), _collate_read)
        loader = torch.utils.data.DataLoader(items, batch_sampler=chunks, num_workers=workers,
                                             collate_fn=collate, pin_memory=pin_memory)
        for loaded in loader:
            indices, images, bad = loaded if decode_on is None else self._on_device(torch.device(decode_on), *loaded)
            skipped = [(self.files[index], reason) for index, reason in bad]
            for index, reason in bad:
                log.warning("skipped unreadable image %s: %s", self.path(index), reason)
            yield Batch(indices, images, skipped)

    def _on_device(self, device: torch.device, decoded_indices: torch.Tensor, decoded: torch.Tensor,
                   jpeg_indices: list[int], jpegs: list[torch.Tensor], bad: list):
        """A batch of `_collate_read` as (indices, images on `device`, bad): the JPEGs decoded there."""
        views = dict(zip(decoded_indices.tolist(), decoded.to(device, non_blocking=True)))
        for index, view in zip(jpeg_indices, decode_jpegs(device, jpegs, self.view.frame)):
            if view is None:  # the device decoder refused it: Pillow reads it, or says why not
                view, reason = self.load(index)
                if view is None:
                    bad.append((index, reason))
                    continue
                view = view.to(device)
            views[index] = view
        order = sorted(views)
        images = torch.stack([views[index] for index in order]) if order else \
            torch.empty(0, 3, 0, 0, dtype=torch.uint8, device=device)
        return torch.tensor(order, dtype=torch.long), images, sorted(bad)

    def fingerprint(self) -> str:
        """16 hex digits identifying the images (paths, sizes, contents), for caching results.

        Labels and the view are not part of it: they do not change what the images are. Files up
        to 128 KiB are hashed whole; larger ones by size plus their first and last 64 KiB, which is
        cheap on a million photos and still catches any re-encoding or edit in practice.
        """
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for relative in self.files:
                digest.update(relative.encode("utf-8") + b"\0")
                digest.update(content_digest(self.root / relative))
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint


@dataclass
class Batch:
    indices: torch.Tensor  # (n,) int64 dataset indices of the readable images
    images: torch.Tensor  # (n, 3, crop, crop) uint8, on the CPU (pinned if asked) or the decoding device
    skipped: list[tuple[str, str]]  # (path relative to the dataset root, reason) of unreadable files


def default_workers(device: torch.device | None = None) -> int:
    """Loader processes when none are asked for.

    On the CPU, 4 at most: the forward pass and the accumulators share the cores with them, and more
    decoders only take cores from those (bench/NOTES.md). On CUDA the forward runs on the device and the
    cores would idle: when photos are not plain JPEGs (PNG, WebP, rotated or CMYK JPEGs) the workers
    decode with Pillow, some 200 ImageNet photos a second each, far below the device's thousands, so
    every core but the one feeding the device decodes (16 at most: each worker holds a copy of torch,
    a few hundred MB). With plain JPEGs decoded on the device the extra workers only read files.
    """
    cores = os.cpu_count() or 1
    if device is not None and torch.device(device).type == "cuda":
        return max(1, min(16, cores - 1))
    return min(4, cores)


class _Decoded(torch.utils.data.Dataset):
    """Item i as (i, uint8 image or None, reason or None), decoded in the loader's workers."""

    def __init__(self, dataset: ImageDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, reason = self.dataset.load(index)
        return index, image, reason


def _collate(items):
    good = [(index, image) for index, image, _ in items if image is not None]
    bad = [(index, reason) for index, image, reason in items if image is None]
    indices = torch.tensor([index for index, _ in good], dtype=torch.long)
    images = torch.stack([image for _, image in good]) if good else torch.empty(0, 3, 0, 0, dtype=torch.uint8)
    return indices, images, bad


class _Read(_Decoded):
    """Item i as (i, image, reason, jpeg): a plain JPEG's bytes (image and reason None), else decoded here."""

    def __getitem__(self, index: int):
        jpeg = _plain_bytes(self.dataset.path(index))
        if jpeg is not None:
            return index, None, None, jpeg
        image, reason = self.dataset.load(index)
        return index, image, reason, None


def _plain_bytes(path: Path) -> torch.Tensor | None:
    """The file's bytes as a uint8 tensor if it is a plain JPEG; None for any other file (or none at all)."""
    try:
        with open_regular(path) as f:
            head = f.read(2)
            if head != b"\xff\xd8":  # not a JPEG: Pillow's, without reading the rest twice
                return None
            data = head + f.read()
    except (OSError, NotRegular):
        return None  # load_rgb says why, in the words the worker path uses
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if plain_jpeg(data) else None


def _collate_read(items):
    """(indices and images decoded by Pillow, indices and bytes of the plain JPEGs, bad), in index order."""
    indices, images, bad = _collate([(index, image, reason) for index, image, reason, jpeg in items if jpeg is None])
    jpegs = [(index, jpeg) for index, _, _, jpeg in items if jpeg is not None]
    return indices, images, [index for index, _ in jpegs], [jpeg for _, jpeg in jpegs], bad
