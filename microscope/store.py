"""The artifact store: where every pipeline stage reads and writes, so any stage can be re-run alone.

Layout (one current result per model and layer; `config.json` says what produced it, and a stage
whose config differs from what it is asked for recomputes):

    <root>/<model>/model.json                         the layer catalogue and weights id
    <root>/<model>/datasets/<fingerprint>/images.json the dataset's files, in index order
    <root>/<model>/datasets/<fingerprint>/thumbs/     small full-image thumbnails (<index>.jpg)
    <root>/<model>/<layer>/examples/config.json       what produced the dataset examples
    <root>/<model>/<layer>/examples/summary.npz       per-channel top/bottom examples, histograms, stats
    <root>/<model>/<layer>/examples/patches/          receptive-field crops, packed (<chunk>.bin + .idx.npz)
    <root>/<model>/<layer>/examples/pending.json      only while a run computes the layer (its run id)
    <root>/<model>/examples-runs/<run id>.pt          checkpoint of an unfinished examples pass
    <root>/<model>/examples-runs/<run id>.views       the pass's decoded views, while it runs (viewcache.py)
    <root>/<model>/<layer>/featurevis/config.json     recipe, steps, size, seed, weights id
    <root>/<model>/<layer>/featurevis/<unit>/         <objective>.png renders + provenance.json (written last)

Dataset examples (microscope/examples; C channels, k = top_k, B bins, Q bands, S samples per band):

- images.json: {fingerprint, root, files: [relative POSIX path, index order], labels: [int] | null,
  classes: [folder name] | null, thumbs: {size, format, view}}. thumbs/<index>.jpg: the model's view
  (the square the model saw, e.g. resize 224, crop 224) shrunk to `size` px; only images that are
  some unit's example get one. Receptive boxes are in view pixels: scale by thumb size / crop.
- config.json (written last: present and matching = the layer is complete): key (everything that
  determines the result), model, weights_id, layer, dataset {fingerprint, root, files}, view
  {resize, crop}, top_k, version, n_images, skipped (count), skipped_files ([path, reason], first
  100), histogram_of (the layer whose values are histogrammed), grid {channels, height, width,
  stride, rf_size, rf_offset}, patches {format, size, quality, pad_colour, kinds}, thumbs (path
  relative to the store root), batch_size.
- summary.npz: top_values (C, k) float32, highest first, NaN where the dataset has fewer than k
  images; top_index (C, k) int64 dataset index, -1 where empty; top_y, top_x (C, k) int32 argmax
  in the activation grid (first in row-major order on ties). Ranking: each image's max over
  positions, ties to the lower index. bottom_values/index/y/x: the same for the minimum over
  positions of the pre-ReLU twin (the layer itself if it has none), lowest first.
  band_names (Q,), band_fractions (Q, 2) the requested top-fraction interval of each band (e.g.
  0.01-0.1: ranked in the top 10 % but not the top 1 %); band_index/values/y/x (C, Q, S), a
  uniform random sample of the band's images (-1/NaN padded), highest score first; band_count
  (C, Q) images in the band; band_value_range (C, Q, 2) the band's scores lie in (low, high];
  band_fraction_range (C, Q, 2) the top-fraction interval the band actually covers (whole
  histogram bins). hist_counts (C, B) int64 exact counts over every position of every image of
  the pre-ReLU twin, hist_edges (C, B + 1) float64, bin i = (edges[i], edges[i + 1]] (the ReLU
  layer's histogram is this one with all mass at or below 0 in the bin ending at 0); n_positions
  (C,) = images x height x width; mean (C,) float64 of the layer; nonzero_fraction (C,) of positions
  where the layer is > 0. With labels: top_classes, top_class_counts (C, 5) the classes most
  frequent among the top k (-1 / 0 padded).
- patches/<chunk>.bin and <chunk>.idx.npz: packs of encoded patches, one pack per CHUNK (64)
  dataset images (format in microscope/packs.py; read them with packs.read_patch_index): a patch
  for every top example, for the first 12 bottom ones (config.json "patches.bottom"; the site
  shows 12) and for band samples if band patches are asked for; rank 0 = best, format jpg by
  default (webp, png possible; config.json says). Each patch is the receptive-field square of
  the view at (y, x), padded with mid grey (128, 128, 128) where it leaves the image, shrunk to at
  most `size` px (80); global layers: the whole view.

Every write is atomic (temp file in the same directory, then rename), so a killed run never leaves a
half-written file that a later run would trust.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | Path, data: bytes, sync: bool = True) -> None:
    """Temp file in the same folder, then rename. `sync=False` skips the fsync, for many files
    written in a row that the caller flushes with one os.sync() before it marks them complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; published files must be readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: str | Path, default: Any = None) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def atomic_save_npz(path: str | Path, sync: bool = True, **arrays: np.ndarray) -> None:
    """Like np.savez_compressed, at zlib level 1: ~3x faster than its level 6 and ~10 % larger
    (the examples stage saves ~1 MB of histograms and indices per layer)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, np.asanyarray(array), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue(), sync=sync)


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def atomic_save_image(path: str | Path, image, **save_args) -> None:
    """Save a PIL image atomically; the format follows the suffix (.png, .webp, .jpg)."""
    path = Path(path)
    buffer = io.BytesIO()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}[path.suffix.lower()]
    image.save(buffer, format=fmt, **save_args)
    atomic_write_bytes(path, buffer.getvalue())


class Store:
    """Paths of the artifact store. Knows nothing of torch or HTML."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def model_dir(self, model: str) -> Path:
        return self.root / model

    def model_json(self, model: str) -> Path:
        return self.model_dir(model) / "model.json"

    def dataset_dir(self, model: str, fingerprint: str) -> Path:
        return self.model_dir(model) / "datasets" / fingerprint

    def layer_dir(self, model: str, layer: str) -> Path:
        return self.model_dir(model) / layer

    def examples_dir(self, model: str, layer: str) -> Path:
        return self.layer_dir(model, layer) / "examples"

    def featurevis_dir(self, model: str, layer: str) -> Path:
        return self.layer_dir(model, layer) / "featurevis"

    def unit_featurevis_dir(self, model: str, layer: str, unit: int) -> Path:
        return self.featurevis_dir(model, layer) / str(unit)

    def patches_dir(self, model: str, layer: str) -> Path:
        """The layer's patch packs (see microscope/packs.py)."""
        return self.examples_dir(model, layer) / "patches"


def default_store_root() -> Path:
    return Path(os.environ.get("MICROSCOPE_STORE", "artifacts"))
