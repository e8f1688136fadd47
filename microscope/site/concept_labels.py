"""Which units each concept labels, across a model's layers (SAE features included: their layers are the
model's `<layer>_sae`): gathered once from the layers' concept records (store/concepts.py) for the model's
concepts page (site/concepts_page.py) and the search index (site/search.py).

A label passes where the records say it does: a unit's best label when the unit is `labelled`, a
runner-up when its own held-out AP is above its threshold (as concepts/labels.py decides `labelled`).
The concepts page and search list every passing label (a polysemantic unit is found under both of its
concepts); unit pages link exactly the passing ones to the concepts page.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from microscope.concepts.vocabulary import of_labels
from microscope.store import ConceptInfo, DatasetIndex, ExamplesResult, LayerConcepts, ModelRecord, Store


@dataclass(frozen=True)
class Detector:
    """A unit one of whose passing labels is the concept."""

    layer: str
    unit: int
    ap: float  # the label's held-out AP


@dataclass
class Labelled:
    """A concept and the units it labels, best held-out AP first (ties: the model's layer order, then unit)."""

    info: ConceptInfo
    classes: list[str]  # the names of the dataset classes it covers ("class <i>" where the dataset is unknown)
    detectors: list[Detector] = field(default_factory=list)


def model_concepts(store: Store, model: ModelRecord, has_page: Callable[[str, int], bool]) -> dict[str, Labelled]:
    """concept id -> the concept and the units with a page in the site (`has_page(layer, unit)`) that it
    labels, over every layer of the model with concept records; empty for a model without any."""
    order = {info.name: position for position, info in enumerate(model.layers)}
    found: dict[str, Labelled] = {}
    for info in model.layers:
        record = store.read(store.concepts_file(model.name, info.name), LayerConcepts)
        if record is None:
            continue
        names = None  # the dataset's class names, read only when a concept is first met in this layer
        for entry in record.units:
            if not has_page(info.name, entry.unit):
                continue
            for score in entry.labels:  # the best one passes exactly when the unit is labelled
                concept = record.concepts.get(score.id)
                if not score.passes or concept is None or not math.isfinite(score.ap):  # a record naming no concept: nothing to show
                    continue
                if score.id not in found:
                    names = dataset_classes(store, model.name, info.name) if names is None else names
                    found[score.id] = Labelled(concept, [names[c] if 0 <= c < len(names) else f"class {c}"
                                                         for c in concept.classes])
                found[score.id].detectors.append(Detector(info.name, entry.unit, score.ap))
    for labelled in found.values():
        labelled.detectors.sort(key=lambda d: (-d.ap, order[d.layer], d.unit))
    return found


def dataset_classes(store: Store, model: str, layer: str) -> list[str]:
    """The class names of the dataset the layer's examples (and so its concepts) were computed on; [] if unknown."""
    result = store.read(store.examples_result_file(model, layer), ExamplesResult)
    dataset = result and store.read(store.dataset_file(model, result.dataset.fingerprint), DatasetIndex)
    if not dataset or not dataset.labels:
        return []
    if dataset.classes is not None:
        return list(dataset.classes)
    # A CSV's class indices: named as the concepts name each class (ImageNet's by WordNet, else "class i").
    concepts = of_labels(None, dataset.labels)
    own = {}
    for concept in concepts.concepts:
        if len(concept.classes) == 1:
            own.setdefault(concept.classes[0], concept.name)
    return [own.get(i, f"class {i}") for i in range(concepts.n_classes)]


def first_layers(concepts: dict[str, Labelled], model: ModelRecord) -> dict[str, str]:
    """concept id -> the earliest layer, in the model's layer order, with a unit it labels."""
    order = {info.name: position for position, info in enumerate(model.layers)}
    return {cid: min((d.layer for d in labelled.detectors), key=order.__getitem__)
            for cid, labelled in concepts.items() if labelled.detectors}
