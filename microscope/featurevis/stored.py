"""Stored renders read back (no torch): a layer's render records whose images check out, and whether
one unit's render of one objective is in the store, intact, made with a given configuration."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from microscope.featurevis.recipe import Recipe
from microscope.featurevis.registry import UNIT_OBJECTIVES
from microscope.store import LayerInfo, ModelRecord, RenderConfig, RenderRecord, Store


@dataclass
class LayerRenders:
    """A layer's stored renders: unit -> objective -> record (only records whose files check out)."""

    folder: Path
    units: dict[int, dict[str, RenderRecord]]


def read_renders(store: Store, model: ModelRecord, layer: LayerInfo) -> LayerRenders | None:
    """The layer's renders whose images are intact (the others are reported damaged), or None."""
    folder = store.featurevis_dir(model.name, layer.name)
    if not folder.is_dir():
        return None
    units: dict[int, dict[str, RenderRecord]] = {}
    for unit, path in store.render_files(model.name, layer.name):
        record = store.read(path, RenderRecord)
        if record is None or record.unit != unit:
            continue
        if all(image.stamp.problem(path.parent / image.file) is None for image in record.images):
            units.setdefault(record.unit, {})[record.objective] = record
        else:
            store.damaged(path.parent, f"a render of {record.objective} is missing or changed")
    return LayerRenders(folder, units) if units else None


def is_rendered(store: Store, config: RenderConfig, unit: int, objective: str) -> bool:
    """Whether the store holds this unit's render of `objective` made with `config`, intact."""
    path = store.render_file(config.model, config.layer, unit, objective)
    record = store.read(path, RenderRecord)
    if record is None or record.config != config:
        return False
    expected = UNIT_OBJECTIVES[objective].files(Recipe.from_dict(config.recipe), config.image_format)
    if [image.file for image in record.images] != expected:
        return False
    for image in record.images:
        problem = image.stamp.problem(path.parent / image.file)
        if problem:
            store.damaged(path.parent / image.file, problem)
            return False
    return True
