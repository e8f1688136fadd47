"""The concepts view's compute half. Its results are made by the examples view's summaries (no second
pass over the images: microscope/examples/steps.py writes concepts.json and similar.npz), so it plans
no job of its own; before the work it says, in one line, what it cannot do with the images given:
label units without labels, or score concepts with too few images each."""
from __future__ import annotations

import numpy as np

from microscope.concepts.panel import SHOWN
from microscope.concepts.scoring import MAX_SHARE
from microscope.concepts.vocabulary import of_labels
from microscope.view import Computed, ViewPlan
from microscope.views.examples import request_images, settings_of


class ConceptsView(Computed):
    shown = SHOWN
    needs = ("network", "images")

    def plan(self, request, session) -> ViewPlan:
        """No jobs. With labels: the layers whose labels this run's examples pass makes (todo) and those already
        stored (done), for the build's summary; without, one line of what the concepts need."""
        plan = ViewPlan(jobs=[], what="")
        if request.images is None:
            return plan
        dataset = request_images(request, session)
        if dataset.labels is not None:
            store, model = session.store, session.network().spec.name
            stored = sum(store.concepts_file(model, layer).is_file() for layer in request.layers)
            plan.what, plan.todo, plan.done = "layers labelled", len(request.layers) - stored, stored
        if dataset.labels is None:  # a choice the user made, not a problem: said with the plan, not as a warning
            plan.notes.append(f"concepts: the images in {request.images.folder} have no labels, so no unit gets a "
                                 "concept label; pass --labels folders (one folder per class) or --labels FILE.csv")
            return plan
        if dataset.unlisted:
            plan.notes.append(f"concepts: {request.images.labels} labels {len(dataset)} of the "
                              f"{len(dataset) + dataset.unlisted} images in {request.images.folder}; the examples and "
                              "concepts use those it labels (label the others to use them too)")
        enough = 2 * settings_of(request).concept_min_images
        largest = largest_concept(dataset)
        if largest < enough:
            plan.warnings.append(f"concepts: no concept has {enough} labelled images (the largest has {largest}), so "
                                 "no unit gets a concept label; label more images per class or lower "
                                 "--concept-min-images")
        return plan


def largest_concept(dataset) -> int:
    """Images of the dataset's largest concept that could label a unit (at most MAX_SHARE of the classes)."""
    labels = np.asarray(dataset.labels, dtype=np.int64)
    concepts = of_labels(dataset.classes, dataset.labels)
    counts = np.bincount(labels, minlength=concepts.n_classes)
    found = [int(counts[list(c.classes)].sum()) for c in concepts.concepts
             if len(c.classes) <= MAX_SHARE * concepts.n_classes]
    return max(found, default=0)


VIEW = ConceptsView()
