"""The concepts view's compute half. Its results are made by the examples view's summaries (no second
pass over the images: microscope/examples/steps.py), so it plans no job of its own; it says, before the
work, what it needs when the dataset has no labels."""
from __future__ import annotations

from microscope.concepts.panel import SHOWN
from microscope.view import Computed, ViewPlan


class ConceptsView(Computed):
    shown = SHOWN
    needs = ("network", "images")

    def plan(self, request, session) -> ViewPlan:
        return ViewPlan(jobs=[], what="layers")


VIEW = ConceptsView()
