"""The concept vocabulary on the real packaged WordNet 3.0 data: classes roll up to their ancestors, identical
class sets keep the most specific concept, folder names that are not wnids stay per-class concepts."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from microscope.concepts.vocabulary import PACKAGED, Concept, packaged, vocabulary

ROOT = Path(__file__).resolve().parents[1]
DATA_NOUN = Path("/usr/share/wordnet/data.noun")
AFGHAN_HOUND, DOG, CANINE, HOUND = "n02088094", "n02084071", "n02083346", "n02087551"
IMAGENETTE = ["n01440764", "n02102040_springer", "n02979186", "n03000684", "n03028079", "n03394916",
              "n03417042", "n03425413", "n03445777", "n03888257"]


def by_id(vocab) -> dict[str, Concept]:
    return {concept.id: concept for concept in vocab.concepts}


def ancestors_or_self(wnid: str) -> set[str]:
    """Brute force over the packaged parents, independent of the module's own walk."""
    synsets = packaged()["synsets"]
    found, todo = set(), [wnid]
    while todo:
        here = todo.pop()
        found.add(here)
        todo.extend(p for p in synsets[here]["parents"] if p not in found)
    return found


def brute_force_classes(own: list[str | None]) -> dict[str, tuple[int, ...]]:
    covered: dict[str, list[int]] = {}
    for i, wnid in enumerate(own):
        for up in ancestors_or_self(wnid) if wnid else ():
            covered.setdefault(up, []).append(i)
    return {wnid: tuple(classes) for wnid, classes in covered.items()}


def check_rolled_up(vocab, own: list[str | None]) -> None:
    """Every concept's classes are exactly those under it; no two concepts share a class set; every synset
    over the classes is kept, or dropped for a kept descendant with the same classes."""
    expected = brute_force_classes(own)
    concepts = by_id(vocab)
    assert len(concepts) == len(vocab.concepts)
    assert max(Counter(c.classes for c in vocab.concepts).values()) == 1
    for concept in vocab.concepts:
        if concept.id.startswith("wn:"):
            assert concept.classes == expected[concept.id[3:]]
    for wnid, classes in expected.items():
        if f"wn:{wnid}" not in concepts:
            keeper = next(c for c in vocab.concepts if c.classes == classes)
            assert wnid in ancestors_or_self(keeper.id[3:]) - {keeper.id[3:]}


def test_imagenet_csv_rolls_breeds_up_to_dog_and_dog_to_canine():
    vocab = vocabulary(None, 1000)
    concepts = by_id(vocab)
    assert vocab.source == "WordNet 3.0 and the dataset's classes" and vocab.n_classes == 1000
    afghan = vocab.concepts[160]
    assert (afghan.id, afghan.name, afghan.synonyms, afghan.classes) == (
        f"wn:{AFGHAN_HOUND}", "Afghan hound", ("Afghan",), (160,))
    assert "hound" in afghan.gloss
    dog = concepts[f"wn:{DOG}"]
    assert (dog.name, dog.synonyms) == ("dog", ("domestic dog", "Canis familiaris"))
    assert dog.classes == tuple(range(151, 269))
    canine = concepts[f"wn:{CANINE}"]
    assert canine.name == "canine" and set(dog.classes) < set(canine.classes)
    assert concepts["wn:n00001740"].classes == tuple(range(1000))  # entity
    assert [c.id for c in vocab.concepts[:1000]] == [f"wn:{w}" for w in packaged()["classes"]]
    rest = [(len(c.classes), c.id) for c in vocab.concepts[1000:]]
    assert rest == sorted(rest) and all(n > 1 for n, _ in rest)
    check_rolled_up(vocab, list(packaged()["classes"]))


def test_fewer_csv_classes_are_the_first_imagenet_ones_and_more_are_plain_classes():
    vocab = vocabulary(None, 10)
    assert [c.id for c in vocab.concepts[:10]] == [f"wn:{w}" for w in packaged()["classes"][:10]]
    check_rolled_up(vocab, list(packaged()["classes"][:10]))
    plain = vocabulary(None, 1001)
    assert plain.source == "the dataset's classes"
    assert [(c.id, c.name, c.classes) for c in plain.concepts] == [
        (f"class:{i}", f"class {i}", (i,)) for i in range(1001)]


def test_folders_named_by_wnid_imagenette_like():
    vocab = vocabulary(IMAGENETTE, 10)
    own = [name[:9] for name in IMAGENETTE]
    assert vocab.concepts[1] == Concept("wn:n02102040", "English springer", ("English springer spaniel",),
                                        (1,), packaged()["synsets"]["n02102040"]["gloss"])
    assert [c.id for c in vocab.concepts[:10]] == [f"wn:{w}" for w in own]
    # entity, physical entity and object cover all ten too: only the closest of them stays
    everything = [c for c in vocab.concepts if c.classes == tuple(range(10))]
    assert len(everything) == 1 and "n00001740" in ancestors_or_self(everything[0].id[3:])
    assert "wn:n00001740" not in by_id(vocab)
    check_rolled_up(vocab, own)


def test_folders_not_named_by_wnid_are_per_class_concepts_kept_as_text():
    names = ["cat", "<script>alert(1)</script>", "n99999999", "n1234", "n02084071", "x_n02084071"]
    vocab = vocabulary(names, len(names))
    concepts = by_id(vocab)
    for i in (0, 1, 2, 3, 5):
        assert concepts[f"class:{i}"] == Concept(f"class:{i}", names[i], (), (i,))
    assert "class:4" not in concepts and concepts[f"wn:{DOG}"].classes == (4,)
    assert [c.id for c in vocab.concepts[:6]] == ["class:0", "class:1", "class:2", "class:3", f"wn:{DOG}",
                                                  "class:5"]
    assert vocab.source == "WordNet 3.0 and the dataset's classes"
    only_text = vocabulary(names[:4], 4)
    assert only_text.source == "the dataset's classes" and len(only_text.concepts) == 4


def test_identical_class_sets_keep_the_most_specific_concept():
    breeds = ["n02088094", "n02088238", "n02108915_french_bulldog", "n02106662"]  # 2 hounds, 2 others
    vocab = vocabulary(breeds, 4)
    concepts = by_id(vocab)
    assert concepts[f"wn:{DOG}"].classes == (0, 1, 2, 3)
    assert concepts[f"wn:{HOUND}"].classes == (0, 1)
    # canine, carnivore, ... up to entity cover the same four breeds: only dog, the closest, stays
    assert f"wn:{CANINE}" not in concepts and "wn:n00001740" not in concepts
    check_rolled_up(vocab, [b[:9] for b in breeds])
    hounds = by_id(vocabulary(breeds[:2], 2))
    assert f"wn:{HOUND}" in hounds and f"wn:{DOG}" not in hounds
    one = vocabulary([AFGHAN_HOUND], 1)  # one class: its own synset covers it, every ancestor is dropped
    assert [c.id for c in one.concepts] == [f"wn:{AFGHAN_HOUND}"]


def test_a_synset_named_twice_is_one_concept_over_both_classes():
    vocab = vocabulary(["n02102040", "n02102040_springer", "n02088094"], 3)
    assert [c.id for c in vocab.concepts[:2]] == ["wn:n02102040", f"wn:{AFGHAN_HOUND}"]
    assert vocab.concepts[0].classes == (0, 1)
    with pytest.raises(ValueError):
        vocabulary(["n02102040"], 2)


def test_packaged_classes_are_the_sorted_ilsvrc_wnids(shared_dir):
    lines = (shared_dir / "data" / "imagenet-labels" / "synset_words.txt").read_text().splitlines()
    wnids = [line.split()[0] for line in lines if line.strip()]
    assert packaged()["classes"] == sorted(wnids) and len(set(wnids)) == 1000
    assert packaged()["source"].startswith("WordNet 3.0 (Princeton)")


def test_the_data_and_its_licence_travel_in_the_wheel():
    import fnmatch
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for path in (PACKAGED, PACKAGED.parent / "WORDNET-LICENSE"):
        assert path.is_file() and any(fnmatch.fnmatch(path.name, p) for p in patterns["microscope.concepts"])
    notice = "WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved."
    assert notice in (PACKAGED.parent / "WORDNET-LICENSE").read_text()
    assert packaged()["license"].startswith(notice)


def test_the_script_refuses_wnids_out_of_class_index_order(shared_dir, tmp_path):
    lines = (shared_dir / "data" / "imagenet-labels" / "synset_words.txt").read_text().splitlines()
    shuffled = tmp_path / "synset_words.txt"
    shuffled.write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "wordnet_imagenet.py"), "--synset-words",
                           str(shuffled), "--out", str(tmp_path / "out.json.gz")], capture_output=True, text=True)
    assert done.returncode != 0 and "sorted (class index) order" in done.stderr
    assert not (tmp_path / "out.json.gz").exists()


def test_the_script_regenerates_the_packaged_bytes(shared_dir, tmp_path):
    if not DATA_NOUN.is_file():
        pytest.skip(f"{DATA_NOUN} not found (apt-get install wordnet-base)")
    out = tmp_path / "wordnet_imagenet.json.gz"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "wordnet_imagenet.py"), "--data-noun", str(DATA_NOUN),
                    "--synset-words", str(shared_dir / "data" / "imagenet-labels" / "synset_words.txt"),
                    "--out", str(out)], check=True, capture_output=True)
    assert out.read_bytes() == PACKAGED.read_bytes()
