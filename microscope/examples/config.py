"""What a layer's stored examples hold beyond k (SummarySettings), and the identity of a layer's result:
everything that determines it.

A later run skips a layer when the stored result's identity equals the one it would compute: same
model and weights, same images (dataset fingerprint) and labels, view, k and settings, same code version.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from microscope.errors import UsageError
from microscope.examples.bands import DEFAULT_BANDS
from microscope.data.patches import PAD_COLOUR

# Bump when the meaning or computation of any stored array changes: old results are then recomputed.
VERSION = 3  # 2: patches packed (microscope/data/packs.py), shrunk before padding; 3: concepts, similar units
# (concepts/scoring.py's rules are part of the result: bump it when they change)


ATLAS_SAMPLE = 100_000  # the atlas sample a user should ask for (--atlas-vectors): UMAP lays it out in minutes
SAMPLE_FIELDS = ("atlas_vectors", "atlas_positions")  # what only the atlas sample depends on


@dataclass(frozen=True)
class SummarySettings:
    """What a layer's stored result holds beyond its top k: the summary's histogram, bands, bottom
    examples and classes, its patches and thumbnails, and the atlas sample. All of them are part of
    the result's identity. The command line sets only `atlas_vectors` (--atlas-vectors, a field of
    views/examples.py's ExamplesSettings); the rest keep these defaults there."""

    histogram_bins: int = 128  # per channel; between half and all of them are used (see histogram.py)
    band_bins: int = 32  # strata of the band sampler (see bands.py)
    band_samples: int = 8  # random images per quantile band
    bands: tuple = DEFAULT_BANDS
    bottom_patches: int = 12  # bottom examples that get a patch (the site shows 12; all are kept in summary.npz)
    band_patches: bool = False  # band samples link to thumbnails; patches for them cost ~35 % more bytes
    patch_size: int = 80  # largest side of a stored patch, in pixels
    patch_format: str = "jpg"  # "jpg", "webp" (smaller, much slower to encode), "png" (lossless)
    patch_quality: int = 90
    pack_images: int = 64  # dataset images whose patches share one pack file (microscope/data/packs.py)
    thumb_size: int = 160
    class_summary: int = 5  # classes listed per channel in top_classes (with labels)
    seed: int = 0  # of the band samples' priorities (and of the atlas sample's)
    atlas_vectors: int = 0  # activation vectors kept per layer for its atlas; 0: none (nobody asked: it costs
    # the pass about 2 % and the summaries a large file per layer, bench/NOTES.md); ATLAS_SAMPLE when asked
    atlas_positions: int = 0  # inner positions drawn per image; 0: enough to fill atlas_vectors (at least 1)
    concept_images: int = 20_000  # images whose per-unit maxima are kept for the concept scores (a seeded sample)
    concept_min_images: int = 8  # a concept is scored only with this many images in each half (concepts/scoring.py)
    correlation_positions: int = 16  # positions per image the units' correlation is summed over (similar units)

    def __post_init__(self):
        if self.patch_format not in ("webp", "jpg", "png"):
            raise UsageError(f"patch format {self.patch_format!r} is not one of webp, jpg, png")
        for name in ("histogram_bins", "band_bins", "band_samples", "patch_size", "thumb_size", "class_summary",
                     "pack_images", "concept_min_images"):
            if getattr(self, name) < 1:
                raise UsageError(f"examples setting {name} must be at least 1, got {getattr(self, name)}")
        for name in ("atlas_vectors", "atlas_positions", "concept_images", "correlation_positions"):
            if getattr(self, name) < 0:
                raise UsageError(f"examples setting {name} must be 0 or more, got {getattr(self, name)}")
        if self.bottom_patches < 0:
            raise UsageError(f"examples setting bottom_patches must be 0 or more, got {self.bottom_patches}")
        for name, start, stop in self.bands:
            if not 0 <= start < stop <= 1:
                raise UsageError(f"quantile band {name!r} must satisfy 0 <= from < to <= 1, got {start}, {stop}")

    def as_json(self) -> dict:
        data = asdict(self)
        data["bands"] = [list(band) for band in self.bands]
        return data

    @classmethod
    def from_json(cls, data: dict) -> "SummarySettings":
        return cls(**{**data, "bands": tuple(tuple(band) for band in data["bands"])})


def identity(network, dataset, layer: str, top_k: int, settings: SummarySettings) -> dict:
    """Everything that determines a layer's result; equal identities mean equal results."""
    found = {
        "version": VERSION, "model": network.spec.name, "weights_id": network.weights_id, "layer": layer,
        "dataset": dataset.fingerprint(), "labels": _labels_id(dataset.labels),
        "view": {"resize": dataset.view.resize, "crop": dataset.view.crop}, "top_k": top_k,
        "settings": settings.as_json(), "pad_colour": list(PAD_COLOUR),
    }
    derived = network.derived_key(layer)
    if derived is not None:  # a derived layer (an SAE's features): another SAE, other results
        found["derived"] = derived
    return found


def _labels_id(labels) -> str | None:
    return None if labels is None else hashlib.sha256(json.dumps(list(labels)).encode()).hexdigest()[:16]
