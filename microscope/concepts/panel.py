"""The concepts view's show half: a unit's scored concept labels, polysemanticity, its most correlated
units and its family; the layer's families and best concepts. Reads store/concepts.py's records; no torch."""
from __future__ import annotations

from dataclasses import dataclass

from microscope.store import LayerConcepts, Store, UnitSimilarity
from microscope.view import Shown


@dataclass
class ConceptsData:
    """A layer's stored concepts (None without labels) and similarity (None before issue 28's pass)."""

    concepts: LayerConcepts | None
    similar: UnitSimilarity | None


class ConceptsShown(Shown):
    name = "concepts"
    title = "What is this unit?"
    missing = ("Concept labels come with the dataset examples of a labelled dataset: build with "
               "--labels folders or --labels FILE.csv")

    def read(self, store: Store, model, layer) -> ConceptsData | None:
        concepts = store.read(store.concepts_file(model.name, layer.name), LayerConcepts)
        similar = store.read(store.similar_file(model.name, layer.name), UnitSimilarity)
        return None if concepts is None and similar is None else ConceptsData(concepts, similar)

    def units(self, data: ConceptsData) -> set[int]:
        if data.concepts is not None:
            return {entry.unit for entry in data.concepts.units}
        return set(range(data.similar.correlation.shape[0]))


SHOWN = ConceptsShown()
