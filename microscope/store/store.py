"""The artifact store: every path, and typed reads and writes of the records at them.

    <root>/<model>/model.json                                  ModelRecord: layer catalogue, weights id, classes
    <root>/<model>/datasets/<fingerprint>/images.json          DatasetIndex: the dataset's files in index order
    <root>/<model>/datasets/<fingerprint>/thumbs/<i>.jpg       the model's view of example image i, small
    <root>/<model>/datasets/<fingerprint>/thumbs/<first>-<last>.json  ThumbStamps of images [first, last)
    <root>/<model>/passes/<pass>/<first>-<last>.npz            PassShard: accumulators of one shard of images
    <root>/<model>/<layer>/examples/summary.npz                ExamplesSummary: top/bottom examples, bands, histogram
    <root>/<model>/<layer>/examples/patches/<chunk>.idx.npz    PatchIndex of the pack <chunk>.bin (microscope/data/packs.py)
    <root>/<model>/<layer>/examples/atlas_vectors.npz          AtlasVectors: the atlas's sample of activations
    <root>/<model>/<layer>/examples/concepts.json              LayerConcepts: the units' scored concept labels (with labels)
    <root>/<model>/<layer>/examples/similar.npz                UnitSimilarity: correlation, nearest units, families
    <root>/<model>/<layer>/examples/pending.json               only while a pass computes the layer: its key
    <root>/<model>/<layer>/examples/result.json                ExamplesResult, written last: the layer is complete
    <root>/<model>/<layer>/featurevis/<unit>/<objective>.json  RenderRecord, written after its images
    <root>/<model>/<layer>/circuits/weights.npz                CircuitArrays: expanded weights from the previous layer
    <root>/<model>/<layer>/circuits/result.json                CircuitResult, written last
    <root>/<model>/<layer>/circuits/refused.json               CircuitRefusal: why there are no expanded weights
    <root>/<model>/<layer>/atlas/layout.npz                    AtlasLayout: the sample laid out and gridded
    <root>/<model>/<layer>/atlas/result.json                   AtlasResult, written last by the layout stage
    <root>/<model>/<layer>/atlas/cells_<level>.npz             AtlasCells of the coarse and the fine grid
    <root>/<model>/<layer>/atlas/patches/000000.idx.npz        PatchIndex of the cells' one patch pack
    <root>/<model>/<layer>/atlas/cells.json                    AtlasStage, written last by the cells stage
    <root>/<model>/<layer>/atlas/icons/<level>-<first>.npz     AtlasIcons: a batch of cell icons
    <root>/<model>/<layer>/atlas/icons.json                    AtlasStage, written last by the icons stage
    <root>/<model>/<layer>/caricature/<photo>-<image>.png      a photo, its caricature and its DeepDream at the layer
    <root>/<model>/<layer>/caricature/result.json              CaricatureResult, written last
    <root>/<model>/<layer>/sae/<weights>/vectors/<key>/<first>-<last>.train.npy, .held.npy  vector shards
    <root>/<model>/<layer>/sae/<weights>/vectors/<key>/vectors.json  SaeVectors, after its shards
    <root>/<model>/<layer>/sae/<weights>/checkpoint.npz        trainer state while training
    <root>/<model>/<layer>/sae/<weights>/weights.npz           SaeWeights
    <root>/<model>/<layer>/sae/<weights>/result.json           SaeResult, written last
    <root>/<model>/inbrowser/model.onnx                         the network exported for the "Try an image" page
    <root>/<model>/inbrowser/record.json                        ExportedModel, written last

The records are in schema.py, atlas.py, caricature.py, circuits.py, concepts.py, inbrowser.py and sae.py. Model and layer folders are
`names.segment(name)`: the name itself when it is a safe folder name; every other part a caller
chooses goes through `segment` too, so no name leads outside the root. A record's `files` name the
data files it stamps by their path relative to the record's folder (`Store.file_key`).

`Store.read` returns None for a record that is missing, and also - after one warning line naming the
file and the problem - for one that is damaged or of another format, so that the caller recomputes
it instead of trusting or crashing on it. No torch here: the site and the notebook API read the store too.
"""
from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

from microscope.names import segment
from microscope.store.atlas import AtlasResult, AtlasStage
from microscope.store.caricature import CaricatureResult
from microscope.store.circuits import CircuitRefusal, CircuitResult
from microscope.store.concepts import LayerConcepts
from microscope.store.files import FileStamp, atomic_save_npz, atomic_write_json, load_npz
from microscope.store.inbrowser import ExportedModel
from microscope.store.sae import SaeResult, SaeVectors
from microscope.store.schema import DatasetIndex, ExamplesResult, ModelRecord, RenderRecord, ThumbStamps
from microscope.store.typed import JsonRecord

log = logging.getLogger("microscope.store")

PATCHES = "patches"  # the subfolder of patch packs, in a layer's examples folder and in its atlas folder
PATCH_INDEX, PATCH_PACK = ".idx.npz", ".bin"  # a pack's two files (microscope/data/packs.py writes them)
THUMB_SUFFIX = ".jpg"  # a dataset's thumbnails are <index>.jpg
ATLAS_PATCH_CHUNK = 0  # an atlas's cells have few patches: one pack
ATLAS_STAGES = ("cells", "icons")  # the atlas stages whose record is <stage>.json (the layout's is result.json)

# Where each kind of record lives, relative to the root: what `verify` decodes, in this order.
RECORD_FILES = (
    ("*/model.json", ModelRecord),
    ("*/datasets/*/images.json", DatasetIndex),
    ("*/datasets/*/thumbs/*-*.json", ThumbStamps),
    ("*/*/examples/result.json", ExamplesResult),
    ("*/*/examples/concepts.json", LayerConcepts),
    ("*/*/featurevis/*/*.json", RenderRecord),
    ("*/*/circuits/result.json", CircuitResult),
    ("*/*/circuits/refused.json", CircuitRefusal),
    ("*/*/atlas/result.json", AtlasResult),
    ("*/*/atlas/cells.json", AtlasStage),
    ("*/*/atlas/icons.json", AtlasStage),
    ("*/*/caricature/result.json", CaricatureResult),
    ("*/*/sae/*/result.json", SaeResult),
    ("*/*/sae/*/vectors/*/vectors.json", SaeVectors),
    ("*/inbrowser/record.json", ExportedModel),
)
PASS_SHARD_FILES = "*/passes/*/*.npz"  # an unfinished examples pass's checkpoints


class Store:
    """Paths and typed reads and writes of the artifact store. Knows nothing of torch or HTML."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._reported: set[Path] = set()

    # Models and datasets -------------------------------------------------------------------------

    def model_dir(self, model: str) -> Path:
        return self.root / segment(model)

    def model_file(self, model: str) -> Path:
        return self.model_dir(model) / "model.json"

    def dataset_dir(self, model: str, fingerprint: str) -> Path:
        return self.model_dir(model) / "datasets" / segment(fingerprint)

    def dataset_file(self, model: str, fingerprint: str) -> Path:
        return self.dataset_dir(model, fingerprint) / "images.json"

    def thumbs_dir(self, model: str, fingerprint: str) -> Path:
        return self.dataset_dir(model, fingerprint) / "thumbs"

    def thumb_file(self, model: str, fingerprint: str, index: int) -> Path:
        return self.thumbs_dir(model, fingerprint) / _thumb_name(index)

    def has_thumbs(self, model: str, fingerprint: str) -> bool:
        """Whether any thumbnail of the dataset is stored (whatever its index)."""
        return any(self.thumbs_dir(model, fingerprint).glob(f"*{THUMB_SUFFIX}"))

    def thumb_stamps_file(self, model: str, fingerprint: str, first: int, last: int) -> Path:
        return self.thumbs_dir(model, fingerprint) / f"{first:09d}-{last:09d}.json"

    def thumb_stamps(self, model: str, fingerprint: str) -> dict[int, FileStamp]:
        """Every recorded thumbnail stamp of the dataset (a damaged record is said and left out)."""
        found: dict[int, FileStamp] = {}
        for path in sorted(self.thumbs_dir(model, fingerprint).glob("*-*.json")):
            record = self.read(path, ThumbStamps)
            found.update({} if record is None else {int(index): stamp for index, stamp in record.stamps.items()})
        return found

    def thumb_problem(self, path: Path, stamp: FileStamp | None) -> str | None:
        """None if the thumbnail at `path` is what was recorded; else what is wrong (said once if damaged)."""
        problem = "no recorded checksum" if stamp is None else stamp.problem(path)
        if stamp is not None and problem and problem != "missing":
            self.damaged(path, problem)
        return problem

    def pass_dir(self, model: str, key: str) -> Path:
        return self.model_dir(model) / "passes" / segment(key)

    def shard_file(self, model: str, key: str, first: int, last: int) -> Path:
        """The state of images [first, last) of pass `key`."""
        return self.pass_dir(model, key) / f"{first:09d}-{last:09d}.npz"

    # A layer's dataset examples and feature visualizations ----------------------------------------

    def layer_dir(self, model: str, layer: str) -> Path:
        return self.model_dir(model) / segment(layer)

    def examples_dir(self, model: str, layer: str) -> Path:
        return self.layer_dir(model, layer) / "examples"

    def examples_summary_file(self, model: str, layer: str) -> Path:
        return self.examples_dir(model, layer) / "summary.npz"

    def atlas_vectors_file(self, model: str, layer: str) -> Path:
        """The activation vectors the examples pass sampled for the layer's atlas (store/atlas.py)."""
        return self.examples_dir(model, layer) / "atlas_vectors.npz"

    def concepts_file(self, model: str, layer: str) -> Path:
        """The units' scored concept labels (store/concepts.py), when the dataset has labels."""
        return self.examples_dir(model, layer) / "concepts.json"

    def similar_file(self, model: str, layer: str) -> Path:
        """The units' correlation, nearest units and families (store/concepts.py)."""
        return self.examples_dir(model, layer) / "similar.npz"

    def examples_result_file(self, model: str, layer: str) -> Path:
        return self.examples_dir(model, layer) / "result.json"

    def pending_file(self, model: str, layer: str) -> Path:
        """Only while a pass computes the layer: that pass's key (its patches may be kept)."""
        return self.examples_dir(model, layer) / "pending.json"

    def patches_dir(self, model: str, layer: str) -> Path:
        return self.examples_dir(model, layer) / PATCHES

    def featurevis_dir(self, model: str, layer: str) -> Path:
        return self.layer_dir(model, layer) / "featurevis"

    def renders_dir(self, model: str, layer: str, unit: int) -> Path:
        return self.featurevis_dir(model, layer) / str(int(unit))

    def render_file(self, model: str, layer: str, unit: int, objective: str) -> Path:
        return self.renders_dir(model, layer, unit) / f"{segment(objective)}.json"

    def render_files(self, model: str, layer: str) -> list[tuple[int, Path]]:
        """(unit, path) of every render record of the layer, sorted by path. Only folders a unit's
        `renders_dir` could be count: anything else in the featurevis folder is not a render."""
        found = []
        for path in sorted(self.featurevis_dir(model, layer).glob("*/*.json")):
            folder = path.parent.name
            if folder.isascii() and folder.isdigit():
                found.append((int(folder), path))
        return found

    # Patch packs (microscope/data/packs.py): <chunk>.bin and its index <chunk>.idx.npz ------------------

    @staticmethod
    def patch_index_file(patches_dir: Path, chunk: int) -> Path:
        return patches_dir / f"{int(chunk):06d}{PATCH_INDEX}"

    @staticmethod
    def is_patch_index(path: Path) -> bool:
        return path.name.endswith(PATCH_INDEX)

    @staticmethod
    def patch_pack_file(index_file: Path) -> Path:
        """The pack whose size and sha256 the index `index_file` holds."""
        return index_file.with_name(index_file.name.removesuffix(PATCH_INDEX) + PATCH_PACK)

    # A name, not a path: a name read from a record that holds a folder too is no pack's name.

    @staticmethod
    def patch_index_chunk(name: str) -> int | None:
        """The chunk whose index is named `name` in a patches folder; None for any other name."""
        return _patch_chunk(name, PATCH_INDEX)

    @staticmethod
    def patch_pack_chunk(name: str) -> int | None:
        """The chunk whose pack is named `name` in a patches folder; None for any other name (an index, a temp file)."""
        return _patch_chunk(name, PATCH_PACK)

    # Circuits ------------------------------------------------------------------------------------

    def circuits_dir(self, model: str, layer: str) -> Path:
        """The expanded weights into `layer` from the layer before it (records in store/circuits.py)."""
        return self.layer_dir(model, layer) / "circuits"

    def circuit_weights_file(self, model: str, layer: str) -> Path:
        return self.circuits_dir(model, layer) / "weights.npz"

    def circuit_result_file(self, model: str, layer: str) -> Path:
        return self.circuits_dir(model, layer) / "result.json"

    def circuit_refusal_file(self, model: str, layer: str) -> Path:
        return self.circuits_dir(model, layer) / "refused.json"

    # Atlas ---------------------------------------------------------------------------------------

    def atlas_dir(self, model: str, layer: str) -> Path:
        """The layer's activation atlas (records in store/atlas.py; its sample is `atlas_vectors_file`)."""
        return self.layer_dir(model, layer) / "atlas"

    def atlas_layout_file(self, model: str, layer: str) -> Path:
        return self.atlas_dir(model, layer) / "layout.npz"

    def atlas_result_file(self, model: str, layer: str) -> Path:
        """The layout stage's record: the atlas's first stage is complete."""
        return self.atlas_dir(model, layer) / "result.json"

    def atlas_cells_file(self, model: str, layer: str, level: str) -> Path:
        return self.atlas_dir(model, layer) / f"cells_{segment(level)}.npz"

    def atlas_patch_index_file(self, model: str, layer: str) -> Path:
        """The index of the pack of the atlas cells' patches."""
        return self.patch_index_file(self.atlas_dir(model, layer) / PATCHES, ATLAS_PATCH_CHUNK)

    def atlas_icons_file(self, model: str, layer: str, level: str, first: int) -> Path:
        """The icons of a batch of a level's cells, from cell `first` on (atlas/icons.py)."""
        return self.atlas_dir(model, layer) / "icons" / f"{segment(level)}-{int(first):05d}.npz"

    def atlas_stage_file(self, model: str, layer: str, stage: str) -> Path:
        """The record a later stage (cells, icons) writes last."""
        if stage not in ATLAS_STAGES:
            raise ValueError(f"an atlas has no stage {stage!r}; its stages with a record are {ATLAS_STAGES}")
        return self.atlas_dir(model, layer) / f"{stage}.json"

    # Caricatures and DeepDreams ------------------------------------------------------------------

    def caricature_dir(self, model: str, layer: str) -> Path:
        """A layer's caricatures and DeepDreams of a set of photos (record in store/caricature.py)."""
        return self.layer_dir(model, layer) / "caricature"

    def caricature_image_file(self, model: str, layer: str, photo: str, image: str) -> Path:
        """`image` ("photo", "caricature" or "deepdream") of the photo whose key is `photo`."""
        return self.caricature_dir(model, layer) / f"{segment(photo)}-{segment(image)}.png"

    def caricature_result_file(self, model: str, layer: str) -> Path:
        return self.caricature_dir(model, layer) / "result.json"

    # Sparse autoencoders -------------------------------------------------------------------------

    def sae_layer_dir(self, model: str, layer: str) -> Path:
        """Every SAE of `layer`, whatever weights it was trained for."""
        return self.layer_dir(model, layer) / "sae"

    def sae_dir(self, model: str, layer: str, weights_id: str) -> Path:
        """The SAE of `layer` for these weights (records in store/sae.py)."""
        return self.sae_layer_dir(model, layer) / segment(weights_id[:16])

    def sae_checkpoint_file(self, model: str, layer: str, weights_id: str) -> Path:
        """The trainer's state while it trains; removed when the result is written."""
        return self.sae_dir(model, layer, weights_id) / "checkpoint.npz"

    def sae_weights_file(self, model: str, layer: str, weights_id: str) -> Path:
        return self.sae_dir(model, layer, weights_id) / "weights.npz"

    def sae_result_file(self, model: str, layer: str, weights_id: str) -> Path:
        return self.sae_dir(model, layer, weights_id) / "result.json"

    def sae_result_files(self, model: str, layer: str) -> list[Path]:
        """The results of every SAE of `layer`, whatever weights it was trained for."""
        return sorted(self.sae_layer_dir(model, layer).glob("*/result.json"))

    def sae_vectors_dir(self, model: str, layer: str, weights_id: str, key: str) -> Path:
        return self.sae_dir(model, layer, weights_id) / "vectors" / segment(key[:16])

    # The SAE's vectors pass hands its folder around, so its files are named from the folder.

    @staticmethod
    def sae_vectors_file(vectors_dir: Path) -> Path:
        """The index of a `sae_vectors_dir`'s shards (SaeVectors), written after them."""
        return vectors_dir / "vectors.json"

    @staticmethod
    def vector_shard_file(vectors_dir: Path, first: int, last: int, part: str) -> Path:
        """The `part` ("train" or "held") vectors of images [first, last) in a `sae_vectors_dir`."""
        return vectors_dir / f"{int(first):09d}-{int(last):09d}.{segment(part)}.npy"

    # The network exported for the browser -------------------------------------------------------

    def inbrowser_dir(self, model: str) -> Path:
        """The model exported to ONNX for the "Try an image" page (record in store/inbrowser.py)."""
        return self.model_dir(model) / "inbrowser"

    def inbrowser_onnx_file(self, model: str) -> Path:
        return self.inbrowser_dir(model) / "model.onnx"

    def inbrowser_record_file(self, model: str) -> Path:
        return self.inbrowser_dir(model) / "record.json"

    def remove_export(self, model: str) -> bool:
        """Delete the model's export (`--try-page off`), the record first so that no record outlives its file;
        True if there was one."""
        found = False
        for path in (self.inbrowser_record_file(model), self.inbrowser_onnx_file(model)):
            if path.is_file():
                path.unlink()
                found = True
        return found

    # What the records vouch for, for a check of the whole store (microscope/run/verify.py) ------------

    @staticmethod
    def file_key(path: Path, folder: Path) -> str:
        """How the record in `folder` names the data file `path` in its `files`."""
        return path.relative_to(folder).as_posix()

    def record_files(self) -> list[tuple[Path, type]]:
        """Every record the store holds, with its kind."""
        return [(path, kind) for pattern, kind in RECORD_FILES for path in sorted(self.root.glob(pattern))]

    def pass_shard_files(self) -> list[Path]:
        return sorted(self.root.glob(PASS_SHARD_FILES))

    @staticmethod
    def stamped_files(record, folder: Path) -> dict[Path, FileStamp]:
        """The data files the record in `folder` vouches for, with what they held when it was written."""
        files = getattr(record, "files", None)  # (a DatasetIndex's files are image names, not stamps)
        found = {folder / name: stamp for name, stamp in files.items()} if isinstance(files, dict) else {}
        if isinstance(record, RenderRecord):
            found.update({folder / image.file: image.stamp for image in record.images})
        elif isinstance(record, ThumbStamps):
            found.update({folder / _thumb_name(index): stamp for index, stamp in record.stamps.items()})
        elif isinstance(record, SaeVectors):
            for shard in record.shards:
                found.update({Store.vector_shard_file(folder, shard.first, shard.last, "train"): shard.train,
                              Store.vector_shard_file(folder, shard.first, shard.last, "held"): shard.held})
        return found

    # Typed reads and writes ----------------------------------------------------------------------

    @staticmethod
    def write(path: Path, record, sync: bool = True) -> FileStamp:
        """Write a record atomically; returns the stamp of the file it became."""
        if isinstance(record, JsonRecord):
            return atomic_write_json(path, record.to_json())
        return atomic_save_npz(path, record.to_arrays(), sync=sync, compress=record.COMPRESS)

    def read(self, path: Path, kind: type, stamp: FileStamp | None = None):
        """The record at `path`, or None if it is missing, damaged or of another format (said once)."""
        if stamp is not None:
            problem = stamp.problem(path)
            if problem == "missing":
                return None
            if problem:
                return self.damaged(path, problem)
        try:
            if issubclass(kind, JsonRecord):
                return kind.from_json(json.loads(path.read_text(encoding="utf-8")))
            return kind.from_arrays(load_npz(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as error:
            return self.damaged(path, str(error).splitlines()[0] if str(error) else type(error).__name__)

    def damaged(self, path: Path, problem: str) -> None:
        """Say once, in one line, that a stored file cannot be trusted; returns None for the caller."""
        if path not in self._reported:
            self._reported.add(path)
            log.warning("store: %s is damaged or of another version (%s); the next build recomputes it", path, problem)
        return None

    def read_model(self, model: str) -> ModelRecord | None:
        return self.read(self.model_file(model), ModelRecord)

    def models(self) -> list[str]:
        """Names of the models the store holds, sorted."""
        if not self.root.is_dir():
            return []
        found = []
        for path in sorted(self.root.glob("*/model.json")):
            record = self.read(path, ModelRecord)
            if record is not None and segment(record.name) == path.parent.name:
                found.append(record.name)
        return sorted(found)


def _thumb_name(index: int) -> str:
    return f"{int(index)}{THUMB_SUFFIX}"


def _patch_chunk(name: str, suffix: str) -> int | None:
    """The chunk of a pack file name `<chunk><suffix>` (`patch_index_file`), None for any other name."""
    stem = name.removesuffix(suffix)
    return int(stem) if stem != name and stem.isascii() and stem.isdigit() else None
