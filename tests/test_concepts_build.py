"""`build` with labels labels units from the examples pass (no second pass) and shows them; without labels,
with too few, or with labels for some images only, it says so in one line and builds the rest."""
import json

import numpy as np
import pytest
from PIL import Image

from generated import cli, QUICK_CARICATURES
from microscope.store import LayerConcepts, Store, UnitSimilarity

BUILD = ["build", *QUICK_CARICATURES, "--model", "inceptionv1-caffe", "--weights", "random", "--layers", "conv1", "--units", "0-2",
         "--steps", "2", "--size", "48", "--objectives", "channel", "--top-k", "6", "--image-batch-size", "8"]
# Imagenette-like folders: two dog breeds (so "dog" is a concept over both), a cat, a car.
CLASSES = ["n02085620_chihuahua", "n02088094_afghan", "n02123045_tabby", "n04285008_sportscar"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir()
        for i in range(10):  # a colour per class, so conv1's colour units tell them apart
            pixels = rng.integers(0, 60, (40, 40, 3)) + np.array([60 * c, 200 - 50 * c, 40 * (c % 2)])
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def test_a_labelled_build_labels_units_and_shows_them(photos, tmp_path):
    store, site = tmp_path / "store", tmp_path / "site"
    first = cli(*BUILD, "--images", photos, "--labels", "folders", "--concept-min-images", "3", "--store", store,
                "--out", site)
    assert "what is this unit?: 1 layers labelled computed, 0 reused" in first.stdout
    record = Store(store).read(Store(store).concepts_file("inceptionv1-caffe", "conv1"), LayerConcepts)
    similar = Store(store).read(Store(store).similar_file("inceptionv1-caffe", "conv1"), UnitSimilarity)
    assert record is not None and similar is not None
    assert record.images == 40 and record.choose + record.held_out == 40 and len(record.units) == 64
    names = {info.name for info in record.concepts.values()}
    assert "dog" in names  # the two breeds rolled up (WordNet)
    assert similar.correlation.shape == (64, 64)
    unit = json.loads((site / "models" / "inceptionv1-caffe" / "conv1" / "0" / "unit.json").read_text())
    assert [label["id"] for label in unit["concepts"]["labels"]] == [s.id for s in record.units[0].labels]
    layer = json.loads((site / "models" / "inceptionv1-caffe" / "conv1" / "layer.json").read_text())
    assert "concepts" in json.dumps(layer)
    passing = any(entry.labelled or any(s.ap > s.threshold for s in entry.labels[1:]) for entry in record.units[:3])
    assert (site / "models" / "inceptionv1-caffe" / "concepts.html").is_file() == passing  # units 0-2 have pages


def test_without_labels_the_build_says_what_concepts_need(photos, tmp_path):
    result = cli(*BUILD, "--images", photos, "--store", tmp_path / "store", "--out", tmp_path / "site")
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("concepts:")]
    assert len(lines) == 1 and "no labels" in lines[0] and "--labels folders" in lines[0]
    assert "what is this unit?" not in result.stdout  # no count in the summary: the note said why
    assert not Store(tmp_path / "store").concepts_file("inceptionv1-caffe", "conv1").exists()
    assert (tmp_path / "site" / "models" / "inceptionv1-caffe" / "conv1" / "0" / "index.html").is_file()


def test_too_few_images_per_concept_and_labels_for_some_images_only(photos, tmp_path):
    csv = tmp_path / "labels.csv"  # 12 of the 40 photos, ImageNet class indices (151: Chihuahua)
    files = sorted(str(p.relative_to(photos)) for p in photos.rglob("*.png"))[:12]
    csv.write_text("file,class_index\n" + "".join(f"{name},151\n" for name in files))
    result = cli(*BUILD, "--images", photos, "--labels", csv, "--store", tmp_path / "store", "--out", tmp_path / "site")
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("concepts:")]
    assert any("labels 12 of the 40 images" in line for line in lines), lines
    assert any("no concept has 16 labelled images" in line and "--concept-min-images" in line for line in lines), lines
    record = Store(tmp_path / "store").read(Store(tmp_path / "store").concepts_file("inceptionv1-caffe", "conv1"),
                                            LayerConcepts)
    assert record.images == 12 and record.scored == 0 and not any(entry.labelled for entry in record.units)
    assert (tmp_path / "site" / "models" / "inceptionv1-caffe" / "conv1" / "0" / "index.html").is_file()

