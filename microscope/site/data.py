"""Reading the artifact store into plain Python values for the pages (no torch, no HTML).

Follows what the stages write (see microscope/examples/run.py and microscope/featurevis/units.py):

- examples: `config.json` (written last: present = complete), `summary.npz` with per-channel
  `top_*`/`bottom_*` (values NaN and index -1 where empty), `band_*` samples, `hist_counts` and
  `hist_edges` (C, bins + 1) of the pre-ReLU twin, `mean`, `nonzero_fraction`, `top_classes`;
  patch packs in `patches/` (see microscope/packs.py), read once per layer, when first asked for;
  `datasets/<fingerprint>/images.json` and `thumbs/<index>.jpg`, a small copy of the model's view.
- featurevis: `<unit>/provenance.json` (written after the images) whose `objectives` map a kind
  (channel, neuron, negative, diversity) to its `files` and per-file numbers.

Everything tolerates partial stores: featurevis without examples or the reverse, missing renders,
missing optional arrays. Missing pieces become None or empty lists; the pages say what to run.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from microscope.errors import UsageError
from microscope.packs import PatchRef, read_patch_index
from microscope.site.examples_data import finite_number, unit_examples
from microscope.site.names import child_dir
from microscope.store import Store, load_npz, read_json

log = logging.getLogger(__name__)

# Layers of these kinds are listed on the model page even before anything was computed for them;
# the others (branches, pre-ReLU twins, logits) appear once they have artifacts.
PROMINENT_KINDS = ("conv", "block")
OBJECTIVE_ORDER = ("channel", "neuron", "negative")
IMAGE_SUFFIXES = (".png", ".webp", ".jpg", ".jpeg")


@dataclass
class Dataset:
    fingerprint: str
    root: str  # where the images were read from, as recorded (shown, never opened)
    files: list[str]  # relative paths, index order
    classes: list[str] | None  # class names of the dataset's labels (ImageFolder), if any
    thumbs: Path | None


@dataclass
class Examples:
    config: dict
    summary: dict[str, np.ndarray]
    patches: Path
    dataset: Dataset | None
    _patch_refs: dict | None = field(default=None, repr=False)

    def patch_refs(self, unit: int) -> dict[tuple[str, int], PatchRef]:
        """(kind, rank) -> where the unit's patch is, e.g. ("top", 0), ("bottom", 3), ("band1", 0)."""
        if self._patch_refs is None:
            try:
                self._patch_refs = read_patch_index(self.patches)
            except (OSError, ValueError, KeyError) as error:
                log.warning("cannot read the patch packs in %s (%s); patches skipped", self.patches, error)
                self._patch_refs = {}
        return self._patch_refs.get(unit, {})

    @property
    def channels(self) -> int:
        values = self.summary.get("top_values")
        return int(values.shape[0]) if values is not None and values.ndim >= 1 else 0


@dataclass
class FeatureVis:
    config: dict
    units: dict[int, Path]  # unit -> folder holding provenance.json and the renders


@dataclass
class Layer:
    model: str
    info: dict  # the catalogue entry from model.json
    examples: Examples | None = None
    featurevis: FeatureVis | None = None
    units: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.info["name"]


def model_names(store: Store) -> list[str]:
    if not store.root.is_dir():
        return []
    return sorted(p.parent.name for p in store.root.glob("*/model.json"))


def read_model(store: Store, model: str) -> dict:
    folder = child_dir(store.root, model)
    data = read_json(folder / "model.json") if folder else None
    if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
        raise UsageError(f"no usable model.json for model {model!r} in the artifact store {store.root}; "
                         "run `build.py featurevis` or `build.py examples` for it first")
    data.setdefault("name", model)
    for layer in data["layers"]:
        layer.setdefault("kind", "block")
        layer.setdefault("channels", 0)
        layer.setdefault("height", None)
        layer.setdefault("width", None)
    return data


def read_layer(store: Store, model: str, info: dict) -> Layer:
    layer = Layer(model=model, info=info)
    folder = child_dir(store.model_dir(model), info["name"])
    if folder is None:
        log.warning("layer name %r cannot be a folder of the store; its artifacts are not read", info["name"])
        return layer
    layer.examples = _read_examples(store, model, folder / "examples")
    layer.featurevis = _read_featurevis(folder / "featurevis")
    units: set[int] = set()
    if layer.featurevis:
        units |= set(layer.featurevis.units)
    if layer.examples:
        units |= set(range(layer.examples.channels))
    layer.units = sorted(units)
    return layer


def _read_examples(store: Store, model: str, folder: Path) -> Examples | None:
    summary_path, config_path = folder / "summary.npz", folder / "config.json"
    if not (summary_path.is_file() and config_path.is_file()):  # config.json is written last
        return None
    try:
        summary = load_npz(summary_path)
    except (OSError, ValueError) as error:
        log.warning("cannot read %s (%s); dataset examples skipped", summary_path, error)
        return None
    config = read_json(config_path, {}) or {}
    dataset_info = config.get("dataset") if isinstance(config.get("dataset"), dict) else {}
    fingerprint = dataset_info.get("fingerprint") or config.get("dataset_fingerprint")
    dataset = None
    if isinstance(fingerprint, str):
        dataset_dir = child_dir(store.model_dir(model) / "datasets", fingerprint)
        listing = read_json(dataset_dir / "images.json") if dataset_dir else None
        files = _file_list(listing)
        if files is not None:
            listing = listing if isinstance(listing, dict) else {}
            thumbs = dataset_dir / "thumbs"
            classes = listing.get("classes")
            dataset = Dataset(fingerprint, str(dataset_info.get("root") or listing.get("root") or ""), files,
                              [str(c) for c in classes] if isinstance(classes, list) else None,
                              thumbs if thumbs.is_dir() else None)
    return Examples(config=config, summary=summary, patches=folder / "patches", dataset=dataset)


def _file_list(listing) -> list[str] | None:
    """images.json: {"files": [...]} (or a bare list)."""
    if isinstance(listing, dict):
        listing = listing.get("files")
    if not isinstance(listing, list):
        return None
    return [str(entry) for entry in listing]


def _read_featurevis(folder: Path) -> FeatureVis | None:
    if not folder.is_dir():
        return None
    units = {}
    for provenance in folder.glob("*/provenance.json"):
        if provenance.parent.name.isdigit():
            units[int(provenance.parent.name)] = provenance.parent
    if not units:
        return None
    return FeatureVis(config=read_json(folder / "config.json", {}) or {}, units=units)


# ----------------------------------------------------------------------------------------------
# One unit


def unit_data(layer: Layer, unit: int, model: dict) -> dict:
    """Everything a unit page shows, as plain values plus source image paths (`Path`s)."""
    data = {"unit": unit, "renders": [], "provenance": None, "top": [], "bottom": [], "bands": [],
            "histogram": None, "stats": {}, "classes": []}
    if layer.featurevis and unit in layer.featurevis.units:
        data["renders"], data["provenance"] = _renders(layer.featurevis.units[unit])
    if layer.examples and unit < layer.examples.channels:
        data.update(unit_examples(layer, unit, model))
    return data


def _objective_order(name: str) -> tuple:
    if name in OBJECTIVE_ORDER:
        return (OBJECTIVE_ORDER.index(name), 0, name)
    match = re.fullmatch(r"(.*?)-(\d+)", name)
    if match:
        return (len(OBJECTIVE_ORDER), match.group(1), int(match.group(2)))
    return (len(OBJECTIVE_ORDER) + 1, name, 0)


def _pick(values, i: int):
    """Per-file numbers are lists (one per image of the objective); older records hold scalars."""
    if isinstance(values, list):
        return values[i] if i < len(values) else None
    return values


def _renders(folder: Path) -> tuple[list[dict], dict]:
    provenance = read_json(folder / "provenance.json", {}) or {}
    objectives = provenance.get("objectives") if isinstance(provenance.get("objectives"), dict) else {}
    renders, seen = [], set()
    for kind, entry in objectives.items():
        if not isinstance(entry, dict):
            continue
        files = entry.get("files") or ([entry["file"]] if entry.get("file") else [])
        for i, name in enumerate(files):
            path = child_dir(folder, str(name))
            if path is None or not path.is_file():
                continue
            seen.add(path.name)
            curve = _pick(entry.get("loss_curve"), i)
            renders.append({
                "objective": path.stem, "kind": kind, "source": path,
                "value": finite_number(_pick(entry.get("objective_final", entry.get("final_value")), i)),
                "ratio": finite_number(_pick(entry.get("activation_ratio"), i)),
                "curve": [float(v) for v in curve if finite_number(v) is not None] if isinstance(curve, list) else None,
                "curve_steps": entry.get("loss_curve_steps") if isinstance(entry.get("loss_curve_steps"), list) else None,
            })
    for path in sorted(folder.iterdir()):  # images the provenance does not describe still get shown
        if path.suffix.lower() in IMAGE_SUFFIXES and path.name not in seen:
            renders.append({"objective": path.stem, "kind": path.stem.split("-")[0], "source": path,
                            "value": None, "ratio": None, "curve": None, "curve_steps": None})
    renders.sort(key=lambda r: _objective_order(r["objective"]))
    return renders, provenance
