"""Images for the site: compact WebP renders, patch sprites, JPEG dataset photos, and their budget.

Outside the `site` package because the views' panels make these images too: importing anything of
`microscope.site` runs its builder, which imports every view (tests/test_imports.py keeps it one way).

The artifact store keeps lossless, full-size images; the site ships small lossy copies so that a
whole InceptionV1 (about 7,000 units) fits GitHub Pages' 1 GB. `SIZES` says how every image is
shrunk; what that costs per unit is measured (the report printed by `build_site`, and
bench/site_sizes.py), with each view's `budget` as the estimate before anything is built.

The top dataset patches are packed into one horizontal strip per unit: one file and one request
instead of 48, and WebP compresses the strip better than separate tiles; pages crop single
patches out of it with CSS. Bottom examples and band samples are cropped, also with CSS, out of
the dataset photos the site ships anyway for the hover view: those photos are shared by all units,
so where a photo shows the receptive field at least as sharply as a patch would (every layer whose
field covers SIZES.patch photo pixels or more) this costs no bytes per unit at all. Small-field
layers get strips for those too.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from PIL import Image, ImageOps

from microscope.data.packs import PatchRef

if TYPE_CHECKING:  # only named in annotations: the site passes its writer in
    from microscope.site.output import SiteWriter

log = logging.getLogger("microscope.site")


@dataclass(frozen=True)
class Sizes:
    hero: int = 224  # the channel render, shown large: full size up to this many pixels
    hero_quality: int = 85
    render: int = 112  # the other objectives (neuron, negative, diversity-*)
    render_quality: int = 78
    thumb: int = 96  # grid thumbnail on layer and model pages
    thumb_quality: int = 75
    patch: int = 56  # one dataset patch inside a strip
    patch_quality: int = 72
    photo: int = 160  # dataset photo (the model's square view) for hover and for cropped tiles
    photo_quality: int = 78
    top: int = 48  # examples shown per kind
    bottom: int = 12
    band_samples: int = 6  # per quantile band
    webp_method: int = 4  # 6 saves ~3 % at twice the encoding time


SIZES = Sizes()
# Bump when an image conversion changes in a way SIZES does not show: cached outputs are redone.
CONVERSION_VERSION = 2

# Bytes per unit of the page itself, for the size estimate where no unit was built yet (each view
# says what its own images take: Shown.budget). Measured by bench/site_sizes.py.
PAGE_BUDGET = {"unit page": 24_700, "unit.json": 13_500}


def encode_image(image: Image.Image, fmt: str, quality: int, method: int = SIZES.webp_method) -> bytes:
    buffer = io.BytesIO()
    if fmt == "WEBP":  # an RGBA image keeps its alpha (libwebp's default alpha_quality 100: lossless)
        image.save(buffer, format="WEBP", quality=quality, method=method)
    else:
        image.save(buffer, format="JPEG", quality=quality, optimize=True, progressive=True)
    return buffer.getvalue()


def _open_rgb(source: Path | PatchRef) -> Image.Image:
    with Image.open(source.open_bytes() if isinstance(source, PatchRef) else source) as image:
        image.load()
        if image.mode != "RGB":
            background = Image.new("RGB", image.size, (255, 255, 255))
            rgba = image.convert("RGBA")
            background.paste(rgba, mask=rgba.split()[3])
            return background
        return image.copy()


def shrink(image: Image.Image, side: int) -> Image.Image:
    """Fit inside side x side (never enlarged): a big render is downsampled with a good filter."""
    if max(image.size) <= side:
        return image
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def render_webp(source: Path, side: int, quality: int, keep_alpha: bool = False) -> tuple[bytes, dict]:
    """A render (or patch) as a WebP fitting side x side; metadata: its width and height. `keep_alpha`:
    a transparent render stays transparent (WebP carries alpha, lossless, beside the lossy colour);
    otherwise it is flattened over white, as grid thumbnails are."""
    image = shrink(_open_rgba(source) if keep_alpha else _open_rgb(source), side)
    return encode_image(image, "WEBP", quality), {"width": image.width, "height": image.height}


def _open_rgba(source: Path) -> Image.Image:
    """An image as RGBA if it has transparency, else as RGB."""
    with Image.open(source) as image:
        image.load()
        keeps = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
        return image.convert("RGBA" if keeps else "RGB")


def strip_webp(sources: list[Path | None], tile: int, quality: int) -> tuple[bytes, dict]:
    """Patches side by side in square tiles; returns the WebP and {"tile": side used}.

    Tiles are never larger than the biggest patch: an early layer's 19 px patches stay 19 px (the
    page enlarges them without smoothing, so one sees the pixels the unit saw). Bigger patches are
    shrunk to `tile`; a missing patch leaves a grey tile.
    """
    patches = [_open_rgb(source) if source is not None else None for source in sources]
    tile = min(tile, max([max(p.size) for p in patches if p is not None] or [tile]))
    strip = Image.new("RGB", (tile * len(sources), tile), (238, 238, 238))
    for i, patch in enumerate(patches):
        if patch is not None:
            patch = ImageOps.pad(patch, (tile, tile), Image.Resampling.LANCZOS, color=(238, 238, 238))
            strip.paste(patch, (i * tile, 0))
    return encode_image(strip, "WEBP", quality), {"tile": tile}


def photo_jpeg(source: Path, side: int, quality: int) -> tuple[bytes, dict]:
    """A dataset photo for the hover view; a small JPEG is shipped as it is (no second loss)."""
    with Image.open(source) as image:
        if image.format == "JPEG" and max(image.size) <= side and image.mode == "RGB":
            return source.read_bytes(), {}
    image = shrink(_open_rgb(source), side)
    return encode_image(image, "JPEG", quality), {}


def _decodes(path: Path) -> bool:
    """Whether the image decodes in full: a damaged thumbnail is left out, never shipped."""
    try:
        with Image.open(path) as image:
            image.load()
        return True
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        log.warning("store: %s is damaged (%s); the next build writes it again", path, error)
        return False


class AssetCache:
    """Skips re-encoding an image whose sources and settings have not changed since the last build.

    The record maps each output path to a short digest of its sources (their last path parts, size
    and mtime: the same file wherever the store is mounted, and no local paths published) and of
    the settings. It is one small JSON file per layer inside the site, pruned with it.
    """

    def __init__(self, writer: SiteWriter, record: str):
        self.writer = writer
        self.record = record
        self.old: dict[str, list] = {}
        try:
            self.old = json.loads(writer.path(record).read_text(encoding="utf-8")).get("assets", {})
        except (FileNotFoundError, ValueError, AttributeError):
            self.old = {}
        self.new: dict[str, list] = {}

    @staticmethod
    def fingerprint(sources: list[Path | PatchRef | None], settings: dict) -> str:
        parts = []
        for source in sources:
            if source is None:
                parts.append(None)
                continue
            if isinstance(source, PatchRef):  # a piece of a pack: the pack's identity and where in it
                stat = source.path.stat()
                parts.append(["/".join(source.path.parts[-5:]), stat.st_size, stat.st_mtime_ns,
                              source.offset, source.length])
                continue
            stat = source.stat()
            parts.append(["/".join(source.parts[-4:]), stat.st_size, stat.st_mtime_ns])
        text = json.dumps([settings, CONVERSION_VERSION, parts], sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]

    def produce(self, relative: str, sources: list[Path | None], settings: dict,
                make: Callable[[], tuple[bytes, dict]]) -> dict:
        """Write `relative` from `make()` unless cached; returns the metadata `make` reported."""
        key = self.fingerprint(sources, settings)
        old = self.old.get(relative)
        if old is not None and old[0] == key and self.writer.keep(relative):
            self.new[relative] = old
            return old[1]
        data, meta = make()
        self.writer.write(relative, data)
        self.new[relative] = [key, meta]
        return meta

    def save(self) -> None:
        body = {"settings": asdict(SIZES), "assets": dict(sorted(self.new.items()))}
        self.writer.write_text(self.record, json.dumps(body, separators=(",", ":")) + "\n")


class Photos:
    """Dataset photos (the model's view, from the store's thumbnails) for the hover view and cropped
    tiles: written once per model and dataset, shared by every unit page that shows them."""

    def __init__(self, writer: SiteWriter, folder: str, thumb_file: Callable[[int], Path], problem=lambda index: None):
        self.writer, self.folder = writer, folder
        self.thumb_file = thumb_file  # index -> its stored thumbnail (the store names it: Store.thumb_file)
        self.problem = problem  # index -> what is wrong with its thumbnail (its recorded stamp), or None
        self.cache = AssetCache(writer, f"{folder}/.assets.json")
        self.done: dict[int, str | None] = {}

    def path(self, index: int) -> str | None:
        """Site-relative path of photo `index`, producing it on first use; None if there is none."""
        if index not in self.done:
            source = self.thumb_file(index)
            problem = self.problem(index) if source.is_file() else "missing"
            if problem == "no recorded checksum":  # a store from before the stamps: decoding is the check
                problem = None if _decodes(source) else "damaged"
            if problem:  # said by the store, in one line
                self.done[index] = None
            else:
                relative = f"{self.folder}/{index}.jpg"
                self.cache.produce(relative, [source], {"side": SIZES.photo, "quality": SIZES.photo_quality},
                                   lambda: photo_jpeg(source, SIZES.photo, SIZES.photo_quality))
                self.done[index] = relative
        return self.done[index]

    def save(self, keep_old: bool) -> None:
        if keep_old:  # an incremental build keeps photos that other layers' pages link to
            for relative, entry in self.cache.old.items():
                if relative not in self.cache.new and self.writer.keep(relative):
                    self.cache.new[relative] = entry
        self.cache.save()
