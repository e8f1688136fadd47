"""Fast renders: the fast recipe reaches Lucid's activation at a quarter of its steps, a preview builds a
first site that the full build refines in place, a sample of the photos, and the plan told before the work."""
import re
import shlex

import numpy as np
import pytest

from generated import cli
from microscope.run.estimate import duration
from microscope.featurevis.batch import relative_pixels
from microscope.featurevis.recipe import RECIPES, Recipe
from microscope.featurevis.transform import output_size
from microscope.data.images import ImageDataset
from microscope.network.loaded import load_network
from microscope.run.pipeline import run_views
from microscope.selection import Units
from microscope.store import DatasetIndex, RenderRecord, Store
from microscope.views.featurevis import FeatureVisSettings
from test_custom_model import model_and_photos
from test_images import make_tree
from test_site import parse


def channel_activations(network, store, layer: str, units: list[int]) -> np.ndarray:
    """Each unit's channel render's mean activation on its own channel, measured on the saved image."""
    return np.array([store.read(store.render_file(network.spec.name, layer, unit, "channel"),
                                RenderRecord).images[0].activation_mean for unit in units])


def test_fast_recipe_reaches_lucids_activation_with_a_quarter_of_the_steps(shared_dir, tmp_path):
    network = load_network("inceptionv1-caffe", weights=str(shared_dir / "weights" / "bvlc_googlenet.npz"),
                           progress=False)
    layer, units = "inception_3a", [0, 1, 2, 3]
    found = {}
    for name, steps in (("lucid", 128), ("fast", 32)):  # the bench compares 512 with 128 at 224 px
        store = Store(tmp_path / name)
        run_views(network, ["featurevis"], store=store.root, layers=[layer], units=Units(((0, 3),)),
                  settings={"featurevis": FeatureVisSettings(objectives=("channel",), steps=steps, size=40,
                                                             recipe=name)})
        found[name] = channel_activations(network, store, layer, units)
        record = store.read(store.render_file(network.spec.name, layer, 0, "channel"), RenderRecord)
        assert record.config.recipe["version"] == RECIPES[name].version and record.config.steps == steps
        assert len(record.images[0].loss_curve) == len(record.loss_curve_steps) and record.loss_curve_steps[-1] == steps - 1
    ratio = found["fast"] / found["lucid"]
    assert np.median(ratio) >= 1.0 and ratio.min() >= 0.9, ratio


def test_lucids_recipe_is_stored_as_before_and_the_fast_one_says_what_it_is():
    # Lucid's record is the one stores made before the fast recipe hold: their renders stay current.
    assert set(Recipe().as_dict()) == {"version", "learning_rate", "optimizer", "init_sd", "decay_power", "decorrelate",
                                       "parameterization", "sigmoid", "transforms", "diversity_images",
                                       "diversity_weight", "curve_every"}
    fast = RECIPES["fast"]
    assert fast.as_dict()["name"] == "fast" and fast.as_dict()["polish_share"] == 0.25
    assert Recipe.from_dict(fast.as_dict()) == fast and Recipe.from_dict(Recipe().as_dict()) == Recipe()
    assert fast.polish_steps(128) == 32 and fast.polish_steps(1) == 0 and Recipe().polish_steps(512) == 0


def test_compute_is_counted_in_pixels_the_network_sees():
    lucid, fast = RECIPES["lucid"], RECIPES["fast"]
    transformed = np.mean([output_size(lucid.transforms, 224, s) ** 2 for s in lucid.transforms.scales])
    assert transformed == pytest.approx((np.mean([np.floor(240 * s + 1e-6) for s in lucid.transforms.scales]) - 4) ** 2,
                                        rel=0.01)  # padded by 12, cropped by 8 and 4: a little more than 224 px
    assert relative_pixels(lucid, 224, 512) == pytest.approx(transformed / 224 ** 2)
    assert relative_pixels(fast, 224, 128) == pytest.approx((96 * transformed + 32 * 224 ** 2) / (128 * 224 ** 2))
    # The recipes' own step counts: the fast one is under a quarter of Lucid's compute.
    assert 128 * relative_pixels(fast, 224, 128) / (512 * relative_pixels(lucid, 224, 512)) < 0.25


def test_an_image_sample_is_fixed_spread_and_keeps_its_labels(tmp_path):
    names = [f"{cls}/{i}.png" for cls in ("ant", "bee", "cat") for i in range(6)]
    make_tree(tmp_path, names)
    whole = ImageDataset(tmp_path, labels="folders")
    sample = ImageDataset(tmp_path, labels="folders", sample=7)
    assert len(sample) == 7 and sample.files == sorted(sample.files) and set(sample.files) <= set(whole.files)
    assert sample.labels == [whole.labels[whole.files.index(name)] for name in sample.files]
    assert len(set(sample.labels)) == 3  # spread over the folder, not its first seven files
    assert ImageDataset(tmp_path, labels="folders", sample=7).files == sample.files  # the same every time
    assert sample.fingerprint() != whole.fingerprint()
    assert ImageDataset(tmp_path, sample=18).files == whole.files == ImageDataset(tmp_path, sample=500).files


@pytest.mark.parametrize("seconds, text", [(0.2, "1 s"), (42.4, "42 s"), (89, "89 s"), (95, "2 min"),
                                           (3000, "50 min"), (7500, "2 h 05 min")])
def test_durations_read_as_an_estimate_should(seconds, text):
    assert duration(seconds) == text


def test_preview_then_the_full_build_refines_the_site_in_place(tmp_path):
    root = model_and_photos(tmp_path, seed=5)
    model = f"{root / 'tiny.py'}:tiny"
    common = ["--model", model, "--weights", root / "tiny.pth", "--images", root / "photos",
              "--store", tmp_path / "store", "--out", tmp_path / "site"]
    result = cli("build", "--preview", *common, "--image-sample", "6", "--try-page", "auto")  # the default
    lines = result.stdout.splitlines()
    # The plan and its estimate come first, before the work: the renders are worth timing, 6 photos are not.
    assert re.fullmatch(r"plan: dataset examples 1 layers \(not timed\), feature visualization 8 renders "
                        r"\((\d+ s|\d+ min)\), circuit \d layer pairs \(not timed\), caricatures and deepdreams 1 layers "
                        r"\((not timed|\d+ s)\), try an image 1 models \(not timed\); about (\d+ s|\d+ min) on this "
                        r"machine \(cpu, \d+ threads\)", lines[0]), lines[0]
    assert "build: 1 layer(s): features_4" in lines  # the middle of the tiny model's layers, as none was given
    store = Store(tmp_path / "store")
    renders = sorted(int(p.parent.name) for p in store.featurevis_dir("tiny-tiny", "features_4").glob("*/channel.json"))
    assert renders == list(range(8))  # units 0-7, the channel objective only
    record = store.read(store.render_file("tiny-tiny", "features_4", 0, "channel"), RenderRecord)
    assert (record.config.recipe["name"], record.config.steps, record.config.size) == ("fast", 128, 128)
    index = [store.read(path, DatasetIndex) for path in store.root.rglob("images.json")]
    assert [len(found.files) for found in index] == [6]  # --image-sample, given, wins over the preview's 300
    page = tmp_path / "site" / "models" / "tiny-tiny" / "features_4" / "0" / "index.html"
    assert "recipe fast" in " ".join(parse(page).text)

    # The full build of the same layer, as the preview says to run it (with small renders, to stay quick).
    hint = next(line for line in lines if line.startswith("next, the whole layer refined in place: "))
    words = shlex.split(hint.split(": ", 1)[1])
    assert words[0] == "python" and words[1].endswith("build.py")
    assert "--preview" not in words and words[-2:] == ["--layers", "features_4"]
    full = cli(*words[2:], "--steps", "3", "--size", "48", "--objectives", "channel", "--top-k", "3").stdout
    assert "circuit: 0 layer pairs computed, 2 reused" in full  # kept: they depend on neither photos nor renders
    assert "feature visualization: 32 renders computed, 0 reused" in full  # every unit, now with Lucid's recipe
    record = store.read(store.render_file("tiny-tiny", "features_4", 0, "channel"), RenderRecord)
    assert (record.config.recipe.get("name", "lucid"), record.config.size) == ("lucid", 48)
    assert "recipe lucid" in " ".join(parse(page).text)  # the same page, refined
