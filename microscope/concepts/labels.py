"""A layer's concept labels: every unit's concepts chosen on one half of the sampled images, scored on
the other (scoring.py), with its polysemanticity, as the LayerConcepts record (store/concepts.py)."""
from __future__ import annotations

import numpy as np

from microscope.concepts import scoring
from microscope.concepts.vocabulary import Vocabulary
from microscope.store import ConceptInfo, ConceptScore, LayerConcepts, UnitConcepts


def label_layer(layer: str, maxima: np.ndarray, image_classes: np.ndarray, vocabulary: Vocabulary, *,
                images: int, min_images: int, k: int, seed: int) -> LayerConcepts:
    """maxima: (C, M) each unit's maximum in each sampled image; image_classes: (M,) their classes."""
    concepts = vocabulary.concepts
    n_classes = max(1, vocabulary.n_classes)
    classes = [np.asarray(c.classes, dtype=np.int64) for c in concepts]
    member = np.zeros((len(concepts), n_classes), dtype=np.float32)
    for row, found in enumerate(classes):
        member[row, found] = 1
    held = scoring.split(maxima.shape[1], seed)
    halves = {name: (maxima[:, mask], scoring.Members.of(image_classes[mask], classes, n_classes))
              for name, mask in (("choose", ~held), ("held", held))}
    eligible = np.nonzero((halves["choose"][1].sizes >= min_images) & (halves["held"][1].sizes >= min_images)
                          & (member.sum(1) <= scoring.MAX_SHARE * n_classes))[0]
    base = dict(layer=layer, source=vocabulary.source, seed=seed, images=images, sampled=int(maxima.shape[1]),
                choose=int((~held).sum()), held_out=int(held.sum()), min_images=min_images, floor=scoring.FLOOR,
                broad=scoring.BROAD, scored=int(eligible.size))
    if eligible.size == 0:
        return LayerConcepts(**base, concepts={}, units=[UnitConcepts(u, [], False, 0.0, []) for u in range(len(maxima))])
    scores = {}
    for name, (values, members) in halves.items():
        kept = scoring.Members.of(image_classes[held if name == "held" else ~held], [classes[i] for i in eligible],
                                  n_classes)
        ap, top = scoring.average_precision(values, kept, k)
        scores[name] = (ap, top, scoring.chance(kept.sizes, values.shape[1]), kept.sizes, values.shape[1])
    ap_c, _, chance_c, _, _ = scores["choose"]
    ap_h, top_h, chance_h, sizes_h, m_h = scores["held"]
    threshold = scoring.thresholds(sizes_h, m_h, seed)
    lift = (ap_c - chance_c) / np.maximum(1e-9, 1 - chance_c)
    sub = member[eligible]
    overlap = sub @ sub.T
    nested = (overlap >= sub.sum(1)[:, None]) | (overlap >= sub.sum(1)[None, :])  # one's classes within the other's
    contains = (sub @ member.T) >= sub.sum(1)[:, None]  # (eligible, all): the concepts holding each one's classes
    sizes_all = member.sum(1)
    units, used = [], set()
    for unit in range(maxima.shape[0]):
        chosen = []
        for j in np.argsort(-lift[unit], kind="stable"):
            if len(chosen) == scoring.KEEP:
                break
            if not any(nested[j, c] for c in chosen):
                chosen.append(int(j))
        labels = [ConceptScore(concepts[eligible[j]].id, round(float(ap_h[unit, j]), 4),
                               round(float(top_h[unit, j]), 4), min(k, m_h), round(float(chance_h[j]), 4),
                               round(float(threshold[j]), 4), round(float(ap_c[unit, j]), 4)) for j in chosen]
        labelled = bool(labels) and labels[0].passes
        unrelated = [labels[i].id for i, j in enumerate(chosen[1:], 1)
                     if _nearest_common(contains[chosen[0]] & contains[j], sizes_all) > scoring.BROAD * n_classes]
        # Comparable scores: the lower held-out AP over the higher (the best was chosen on the other half,
        # so a runner-up may score higher here).
        poly = [min(label.ap, labels[0].ap) / max(label.ap, labels[0].ap) for label in labels[1:]
                if label.id in unrelated and label.passes and labels[0].ap > 0]
        units.append(UnitConcepts(unit, labels, labelled, round(max(poly), 4) if labelled and poly else 0.0, unrelated))
        used.update(eligible[j] for j in chosen)
    counts = np.bincount(image_classes[image_classes >= 0], minlength=n_classes)
    infos = {concepts[i].id: ConceptInfo(concepts[i].id, concepts[i].name, list(concepts[i].synonyms),
                                         [int(c) for c in concepts[i].classes], int(counts[classes[i]].sum()),
                                         concepts[i].gloss) for i in sorted(used)}
    return LayerConcepts(**base, concepts=infos, units=units)


def _nearest_common(common: np.ndarray, sizes: np.ndarray) -> float:
    """Classes of the smallest concept holding both labels' classes; infinite when none does."""
    return float(sizes[common].min()) if common.any() else float("inf")
