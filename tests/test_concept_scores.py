"""Concept scores against brute force: AP against scikit-learn's average_precision_score (ties
included), precision among the top k, the chance level against random rankings, the held-out split;
and a layer's labels chosen on one half and scored on the other."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from microscope.concepts import scoring
from microscope.concepts.labels import label_layer
from microscope.concepts.vocabulary import Concept, Vocabulary


def brute_top(scores, positives, k):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))  # ties: lower image first
    return sum(positives[i] for i in order[:k]) / k


@pytest.mark.parametrize("tied", [False, True])
def test_average_precision_and_top_k_equal_brute_force(tied):
    rng = np.random.default_rng(0)
    units, m, n_classes = 7, 60, 9
    scores = rng.normal(size=(units, m)).astype(np.float32)
    if tied:  # a ReLU unit: silent on many images; and rounded values tie too
        scores = np.round(np.maximum(scores, 0), 1)
        scores[0] = 0  # silent everywhere
    image_classes = rng.integers(0, n_classes, m)
    image_classes[:3] = -1  # images of no class belong to no concept
    concept_classes = [np.array([0]), np.array([1, 2]), np.array([3, 4, 5, 6]), np.arange(n_classes), np.array([8])]
    members = scoring.Members.of(image_classes, concept_classes, n_classes)
    k = 10
    ap, top = scoring.average_precision(scores, members, k, block=3)  # blocks that do not divide the units
    for unit in range(units):
        for c, classes in enumerate(concept_classes):
            positives = np.isin(image_classes, classes)
            assert members.sizes[c] == positives.sum()
            assert ap[unit, c] == pytest.approx(average_precision_score(positives, scores[unit]), abs=1e-12)
            assert top[unit, c] == pytest.approx(brute_top(scores[unit], positives, k))


def random_aps(positives: np.ndarray, rng, trials: int) -> np.ndarray:
    """AP of `trials` random orders of the images, by its definition: precision at each positive, averaged."""
    ordered = positives[np.argsort(rng.random((trials, len(positives))), axis=1)]
    precision = np.cumsum(ordered, axis=1) / np.arange(1, len(positives) + 1)
    return (precision * ordered).sum(1) / positives.sum()


def test_random_aps_is_scikit_learns_ap():
    rng = np.random.default_rng(5)
    positives = rng.random(30) < 0.3
    scores = rng.permutation(30)
    order = np.argsort(-scores)
    ordered = positives[order]
    mine = (np.cumsum(ordered) / np.arange(1, 31) * ordered).sum() / positives.sum()
    assert mine == pytest.approx(average_precision_score(positives, scores))


def test_chance_is_the_mean_ap_of_random_rankings_and_the_threshold_its_tail():
    rng = np.random.default_rng(1)
    m = 80
    for n in (1, 8, 30, 47):
        positives = np.zeros(m, bool)
        positives[:n] = True
        aps = random_aps(positives, rng, 4000)
        assert scoring.chance(np.array([n]), m)[0] == pytest.approx(np.mean(aps), abs=0.01)
        threshold = scoring.random_threshold(np.array([n]), m, seed=0)[0]
        beyond = np.mean(np.array(aps) > threshold)  # a label needs more than the threshold
        assert beyond <= 1 - scoring.LEVEL + 0.004 and (n == 1 or beyond >= (1 - scoring.LEVEL) / 3)


def test_the_split_is_seeded_and_halves_the_images():
    a, b = scoring.split(101, seed=3), scoring.split(101, seed=3)
    assert np.array_equal(a, b) and a.sum() == 50
    assert not np.array_equal(a, scoring.split(101, seed=4))


def vocabulary():
    """Twelve classes: two breeds of 'dog' under 'animal' with 'cat' (3 of 12 classes: not broad); 'car' and
    eight others alone."""
    concepts = (Concept("class:0", "beagle", (), (0,)), Concept("class:1", "pug", (), (1,)),
                Concept("class:2", "cat", (), (2,)), Concept("class:3", "car", (), (3,)),
                *(Concept(f"class:{i}", f"thing {i}", (), (i,)) for i in range(4, 12)),
                Concept("wn:dog", "dog", ("domestic dog",), (0, 1)), Concept("wn:animal", "animal", (), (0, 1, 2)))
    return Vocabulary(concepts, "test", 12)


def test_a_layer_is_labelled_on_held_out_images_and_polysemantic_units_are_found():
    rng = np.random.default_rng(2)
    m = 800
    classes = rng.integers(0, 12, m)
    noise = rng.normal(0, 0.3, size=(4, m))
    maxima = np.stack([
        (classes <= 1) * 2.0 + noise[0],  # a dog unit (both breeds)
        (classes == 2) * 2.0 + (classes == 3) * 1.9 + noise[1],  # cat and car: unrelated, comparable
        noise[2],  # nothing
        (classes == 2) * 2.0 + (classes == 0) * 1.9 + noise[3],  # cat and beagle: related under "animal"
    ]).astype(np.float32)
    record = label_layer("mixed", maxima, classes, vocabulary(), images=m, min_images=8, k=20, seed=0)
    names = {cid: info.name for cid, info in record.concepts.items()}
    dog, poly, silent, related = record.units
    assert names[dog.labels[0].id] == "dog" and dog.labelled and dog.labels[0].ap > 0.9
    assert all(names[label.id] not in ("beagle", "pug", "animal") for label in dog.labels[1:])  # nested: left out
    assert {names[label.id] for label in poly.labels[:2]} == {"cat", "car"} and 0.8 < poly.polysemantic <= 1
    a, b = poly.labels[0].ap, poly.labels[1].ap
    assert poly.polysemantic == pytest.approx(min(a, b) / max(a, b), abs=1e-3)
    assert not silent.labelled and silent.polysemantic == 0
    assert related.labelled and related.polysemantic == 0  # cat and beagle share "animal" (3 of 12 classes)
    # Scored on the held-out half: recompute the dog unit's AP there by brute force.
    held = scoring.split(m, 0)
    truth = average_precision_score(classes[held] <= 1, maxima[0, held])
    assert dog.labels[0].ap == pytest.approx(truth, abs=1e-4)
    assert record.held_out == held.sum() and record.choose == m - held.sum()


def test_a_label_needs_twice_the_chance_level_the_floor_and_the_permutation_test():
    m = 600
    sizes = np.array([10, 60, 250])
    found = scoring.thresholds(sizes, m, seed=0)
    for n, threshold in zip(sizes, found):
        assert threshold >= scoring.FLOOR and threshold >= scoring.LIFT * scoring.chance(np.array([n]), m)[0]
        assert threshold >= scoring.random_threshold(np.array([n]), m, seed=0)[0]
    assert found[2] == pytest.approx(scoring.LIFT * scoring.chance(np.array([250]), m)[0])  # a broad concept
