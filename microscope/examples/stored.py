"""Stored dataset examples read back (no torch): a layer's result.json, its summary.npz, its patch packs
and the dataset index beside them; and whether a layer's stored examples are current for a key."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from microscope.data.packs import PatchRef, read_patch_index
from microscope.store import PATCHES, DatasetIndex, ExamplesResult, ExamplesSummary, Store


@dataclass
class ExamplesData:
    store: Store
    result: ExamplesResult
    summary: ExamplesSummary
    dataset: DatasetIndex | None
    thumbs: Path | None  # the dataset's thumbnails folder in the store
    patches: Path
    _refs: dict | None = field(default=None, repr=False)

    def patch_refs(self, unit: int) -> dict[tuple[str, int], PatchRef]:
        """(kind, rank) -> where the unit's patch is, e.g. ("top", 0), ("bottom", 3), ("band1", 0)."""
        if self._refs is None:
            self._refs = read_patch_index(self.store, self.patches, pack_stamps(self.result)) or {}
        return self._refs.get(unit, {})


def pack_stamps(result: ExamplesResult) -> dict:
    """The stamps result.json holds of the layer's patch packs, by file name in the patches folder."""
    return {name.split("/", 1)[1]: stamp for name, stamp in result.files.items() if name.startswith(f"{PATCHES}/")}


def read_examples(store: Store, model, layer) -> ExamplesData | None:
    result_path = store.examples_result_file(model.name, layer.name)
    result = store.read(result_path, ExamplesResult)
    if result is None:
        return None
    summary_path = store.examples_summary_file(model.name, layer.name)
    summary = store.read(summary_path, ExamplesSummary, result.files.get(summary_path.name))
    if summary is None:
        return None
    dataset = store.read(store.dataset_file(model.name, result.dataset.fingerprint), DatasetIndex)
    thumbs = store.thumbs_dir(model.name, result.dataset.fingerprint)
    return ExamplesData(store, result, summary, dataset, thumbs if thumbs.is_dir() else None,
                        store.patches_dir(model.name, layer.name))


def is_current(store: Store, model: str, layer: str, key: str) -> bool:
    """Whether the layer's stored examples were made from these inputs (`key`) and are intact."""
    path = store.examples_result_file(model, layer)
    result = store.read(path, ExamplesResult)
    if result is None or result.key != key:
        return False
    damaged = False
    for name, stamp in result.files.items():  # every damaged file said, though one is enough to recompute
        problem = stamp.problem(path.parent / name)
        if problem:
            store.damaged(path.parent / name, problem)
            damaged = True
    packed = read_patch_index(store, store.patches_dir(model, layer), pack_stamps(result)) is not None  # each pack
    return packed and not damaged
