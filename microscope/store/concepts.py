"""The store's records of what a layer's units are (microscope/concepts) and how they go together,
written by the examples view's summary step beside summary.npz:

    <root>/<model>/<layer>/examples/concepts.json   LayerConcepts: each unit's scored concept labels
                                                    (only when the dataset has labels)
    <root>/<model>/<layer>/examples/similar.npz     UnitSimilarity: the units' correlation over
                                                    positions, each unit's nearest units, families

No torch here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microscope.store.typed import ArrayRecord, JsonRecord, RecordError


@dataclass(frozen=True)
class ConceptInfo:
    """A concept: a set of the dataset's classes with a name (a WordNet synset, or one class)."""

    id: str  # "wn:n02084071" (a WordNet 3.0 noun synset) or "class:<index>" (a class without a synset)
    name: str  # "dog"
    synonyms: list[str]  # the synset's other lemmas, e.g. ["domestic dog", "Canis familiaris"]
    classes: list[int]  # the dataset's class indices it covers
    images: int  # images of the dataset (the concept sample) it covers
    gloss: str = ""  # WordNet's definition, when it has one


@dataclass(frozen=True)
class ConceptScore:
    """One concept of a unit, chosen on one half of the images and scored on the other (held out)."""

    id: str
    ap: float  # average precision of the unit's ranking of the held-out images, for this concept
    precision_at_k: float  # the concept's share of the unit's top k held-out images
    k: int
    chance: float  # the AP a random ranking of the held-out images gives this concept (its expectation)
    threshold: float  # a label needs a held-out AP above this (see concepts/scoring.py)
    choose_ap: float  # its AP on the half that chose it

    @property
    def passes(self) -> bool:
        """Whether it labels its unit: a unit is `labelled` when its best label passes."""
        return self.ap > self.threshold


@dataclass(frozen=True)
class UnitConcepts:
    unit: int
    labels: list[ConceptScore]  # best first (by lift over chance on the choosing half), at most `keep`
    labelled: bool  # the best one passes (ConceptScore.passes)
    polysemantic: float  # 0: not; else the lower held-out AP over the higher, of the best and an unrelated passing label
    unrelated: list[str]  # the ids of the labels that share no ancestor below a broad root with the best


@dataclass(frozen=True)
class LayerConcepts(JsonRecord):
    """concepts.json: the scored concept labels of every unit of a layer."""

    FORMAT = 1
    layer: str
    source: str  # where the concepts came from: "WordNet 3.0 and the dataset's classes", "the dataset's classes"
    seed: int  # of the split into the choosing and the held-out half
    images: int  # images of the dataset the examples pass read
    sampled: int  # images whose per-image maxima were kept (all, up to the sample's size)
    choose: int  # images of the choosing half
    held_out: int  # images of the held-out half
    min_images: int  # a concept is scored only with at least this many images in each half
    floor: float  # no unit is labelled under this held-out AP, whatever the chance level
    broad: float  # a concept covering more than this share of the classes is too broad to label or relate
    scored: int  # concepts scored (enough images, not too broad)
    concepts: dict[str, ConceptInfo]  # the concepts the units' labels name
    units: list[UnitConcepts]

    def unit(self, unit: int) -> UnitConcepts | None:
        return self.units[unit] if 0 <= unit < len(self.units) and self.units[unit].unit == unit else None


@dataclass(frozen=True)
class UnitSimilarity(ArrayRecord):
    """similar.npz (C units, N neighbours): the units' correlation over sampled positions of every image.

    correlation: (C, C) Pearson correlation over `positions` activation vectors (NaN for a unit
    constant on all of them); neighbours / neighbour_r: each unit's N most correlated other units, highest
    first (-1 / NaN padded); family: each unit's family (average-linkage clusters of 1 - correlation, cut
    at `cut`), -1 for a unit in no family of two or more.
    """

    ARRAYS = {"correlation": ("f", 2), "neighbours": ("i", 2), "neighbour_r": ("f", 2), "family": ("i", 1),
              "positions": ("i", 0), "cut": ("f", 0)}

    correlation: np.ndarray
    neighbours: np.ndarray
    neighbour_r: np.ndarray
    family: np.ndarray
    positions: np.ndarray
    cut: np.ndarray

    def check(self) -> None:
        units = self.correlation.shape[0]
        if self.correlation.shape != (units, units):
            raise RecordError(f"UnitSimilarity.correlation is {self.correlation.shape}, not square")
        if self.neighbours.shape != self.neighbour_r.shape or self.neighbours.shape[0] != units:
            raise RecordError("UnitSimilarity.neighbours and neighbour_r do not match the units")
        if self.family.shape != (units,):
            raise RecordError("UnitSimilarity.family does not match the units")
        if self.neighbours.size and (self.neighbours.max() >= units or self.neighbours.min() < -1):
            raise RecordError("UnitSimilarity.neighbours names a unit the layer does not have")
