"""The concepts a unit can be labelled with: each of the dataset's classes, and - where a class is an
ImageNet synset - every WordNet ancestor of it, so a unit firing on forty dog breeds can be called "dog".

The WordNet part is packaged data (wordnet_imagenet.json.gz, written by scripts/wordnet_imagenet.py from
WordNet 3.0: the 1000 ILSVRC-2012 classes and their ancestors), so nothing needs WordNet at run time.
Torch-free.
"""
from __future__ import annotations

import functools
import gzip
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

PACKAGED = Path(__file__).parent / "wordnet_imagenet.json.gz"
WNID = re.compile(r"^n\d{8}")  # a folder named "n02102040" or "n02102040_springer"


@dataclass(frozen=True)
class Concept:
    id: str                     # "wn:n02084071" or "class:<dataset class index>"
    name: str                   # first lemma ("dog"); for a class without a synset: the class name
    synonyms: tuple[str, ...]   # the other lemmas
    classes: tuple[int, ...]    # the dataset's class indices it covers, sorted
    gloss: str = ""


@dataclass(frozen=True)
class Vocabulary:
    concepts: tuple[Concept, ...]   # every concept: each class's own, then ancestors; ids unique
    source: str                     # "WordNet 3.0 and the dataset's classes" / "the dataset's classes"
    n_classes: int


@functools.cache
def packaged() -> dict:
    """{"source", "license", "classes": the 1000 ImageNet wnids by class index, "synsets": {wnid: {"lemmas", "gloss",
    "parents"}}}: read once per process."""
    return json.loads(gzip.decompress(PACKAGED.read_bytes()))


def of_labels(class_names: list[str] | None, labels) -> Vocabulary:
    """The concepts of a labelled dataset: its classes are its class names (folders), else every index up
    to the largest label (a CSV's)."""
    n_classes = len(class_names) if class_names is not None else max(labels, default=-1) + 1
    return vocabulary(class_names, n_classes)


def vocabulary(class_names: list[str] | None, n_classes: int) -> Vocabulary:
    """The concepts of a dataset. `class_names` None: labels from a `file,class_index` CSV, whose indices are
    ImageNet-1k's (microscope/network/evaluate.py) when there are at most 1000 classes. Given: the folder
    names of an ImageFolder tree by class index; a name that starts with a known wnid is that synset."""
    if class_names is not None and len(class_names) != n_classes:
        raise ValueError(f"{len(class_names)} class names for {n_classes} classes")
    wordnet = packaged()
    own = class_synsets(class_names, n_classes, wordnet)
    by_class = [Concept(f"class:{i}", class_name(class_names, i), (), (i,))
                if own[i] is None else None for i in range(n_classes)]
    covered, depth = coverage(own, wordnet["synsets"])
    kept = most_specific(covered, depth, wordnet["synsets"])
    synset_concepts = {wnid: synset_concept(wnid, covered[wnid], wordnet["synsets"]) for wnid in kept}

    ordered, seen = [], set()
    for i in range(n_classes):  # each class's own concept, by class index
        concept = by_class[i] or synset_concepts[own[i]]
        if concept.id not in seen:
            seen.add(concept.id)
            ordered.append(concept)
    ancestors = sorted((c for c in synset_concepts.values() if c.id not in seen),
                       key=lambda c: (len(c.classes), c.id))
    source = "WordNet 3.0 and the dataset's classes" if synset_concepts else "the dataset's classes"
    return Vocabulary(tuple(ordered + ancestors), source, n_classes)


def class_synsets(class_names: list[str] | None, n_classes: int, wordnet: dict) -> list[str | None]:
    """Each class's own wnid, or None for a class WordNet does not know."""
    if class_names is None:
        return list(wordnet["classes"][:n_classes]) if n_classes <= len(wordnet["classes"]) \
            else [None] * n_classes
    found = [WNID.match(name) for name in class_names]
    return [m.group(0) if m and m.group(0) in wordnet["synsets"] else None for m in found]


def class_name(class_names: list[str] | None, i: int) -> str:
    return f"class {i}" if class_names is None else class_names[i]


def coverage(own: list[str | None], synsets: dict) -> tuple[dict[str, set[int]], dict[str, int]]:
    """Every synset at or above a class's own: the classes under it, and how far it lies above them (the
    most hops from one of its classes by that class's shortest path), which tells specific from general."""
    covered: dict[str, set[int]] = defaultdict(set)
    depth: dict[str, int] = defaultdict(int)
    for i, wnid in enumerate(own):
        if wnid is None:
            continue
        hops, frontier, step = {wnid: 0}, [wnid], 0
        while frontier:  # breadth first: each synset's first visit is its shortest path from this class
            step += 1
            frontier = [p for w in frontier for p in synsets[w]["parents"] if p not in hops]
            hops.update((p, step) for p in frontier)
        for up, distance in hops.items():
            covered[up].add(i)
            depth[up] = max(depth[up], distance)
    return dict(covered), dict(depth)


def most_specific(covered: dict[str, set[int]], depth: dict[str, int], synsets: dict) -> list[str]:
    """Of the synsets that cover the identical classes (dog, canine, carnivore... over only dog breeds), the
    one closest to the classes: not an ancestor of another in the group, then the least depth, then id."""
    groups: dict[frozenset[int], list[str]] = defaultdict(list)
    for wnid, classes in covered.items():
        groups[frozenset(classes)].append(wnid)
    kept = []
    for group in groups.values():
        above = set().union(*(strict_ancestors(w, synsets) for w in group))
        lowest = [w for w in group if w not in above] or group  # WordNet has no cycles; `or` is a guard
        kept.append(min(lowest, key=lambda w: (depth[w], w)))
    return kept


def strict_ancestors(wnid: str, synsets: dict) -> set[str]:
    found, todo = set(), list(synsets[wnid]["parents"])
    while todo:
        up = todo.pop()
        if up not in found:
            found.add(up)
            todo.extend(synsets[up]["parents"])
    return found


def synset_concept(wnid: str, classes: set[int], synsets: dict) -> Concept:
    lemmas = synsets[wnid]["lemmas"]
    return Concept(f"wn:{wnid}", lemmas[0], tuple(lemmas[1:]), tuple(sorted(classes)), synsets[wnid]["gloss"])
