"""Rendering units into the store: the objective rises, runs are reproducible and resumable, the
records are right, bad input is one clear line, and pre-ReLU optimisation revives dead units."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from microscope.errors import UsageError
from microscope.run.executors import LocalExecutor
from microscope.featurevis import objectives as obj
from microscope.featurevis.param import FourierImage
from microscope.featurevis.recipe import Recipe
from microscope.featurevis.render import render
from microscope.network.loaded import load_network
from microscope.run.pipeline import run_views
from microscope.selection import Units
from microscope.store import RenderRecord, Store
from microscope.views.featurevis import FeatureVisSettings

LAYER = "inception_3a"  # shallow: cheap on two shared cores
SIZE, STEPS = 48, 12
RECIPE = Recipe(diversity_images=2)


class TwoDiverse(FeatureVisSettings):
    """Lucid's recipe with two diversity images instead of four: half the diversity objective's work."""

    @property
    def chosen_recipe(self) -> Recipe:
        return RECIPE


@pytest.fixture(scope="module")
def network():
    return load_network("inceptionv1-caffe", weights="random", seed=0, progress=False)


@pytest.fixture(scope="module")
def trained(shared_dir):
    return load_network("inceptionv1-caffe", weights=str(shared_dir / "weights" / "bvlc_googlenet.npz"),
                        progress=False)


def featurevis(network, store, units, *, layer=LAYER, objectives=("channel",), steps=STEPS, size=SIZE, seed=3,
               **settings):
    """The featurevis view for `units` ("0-2" or a list); returns {objective: [units written now]} (a batch
    partly stored is rendered whole, its stored units not written again)."""
    rendered = {}

    def seen(job, done):
        if done == 1:
            rendered.setdefault(job.spec["objective"], []).extend(job.spec.get("write", job.spec["units"]))

    units = Units.parse(units) if isinstance(units, str) else Units(tuple((u, u) for u in units))
    run_views(network, ["featurevis"], store=store, layers=[layer], units=units, executor=LocalExecutor(on_progress=seen),
              settings={"featurevis": TwoDiverse(objectives=tuple(objectives), steps=steps, size=size, **settings)},
              seed=seed)
    return rendered


@pytest.fixture(scope="module")
def rendered(trained, tmp_path_factory):
    """Units 0 and 1 of the real network, every objective."""
    store = Store(tmp_path_factory.mktemp("store"))
    made = featurevis(trained, store.root, [0, 1], objectives=("channel", "neuron", "negative", "diversity"))
    return store, made


def record(store, network, unit, objective="channel", layer=LAYER) -> RenderRecord:
    return store.read(store.render_file(network.spec.name, layer, unit, objective), RenderRecord)


def unit_dir(store, network, unit):
    return store.renders_dir(network.spec.name, LAYER, unit)


def test_every_objective_rises_and_is_recorded(trained, rendered):
    store, made = rendered
    assert made == {"channel": [0, 1], "neuron": [0, 1], "negative": [0, 1], "diversity": [0, 1]}
    for unit in (0, 1):
        for objective in ("channel", "neuron", "negative", "diversity"):
            found = record(store, trained, unit, objective)
            assert (found.unit, found.objective, found.config.layer) == (unit, objective, LAYER)
            assert found.config.optimised_layer == "inception_3a_pre_relu"
            assert (found.config.seed, found.config.steps, found.config.size) == (3, STEPS, SIZE)
            assert len(found.config.weights_id) == 64 and found.config.recipe["version"] == RECIPE.version
            assert found.loss_curve_steps == [0, 8, STEPS - 1]
            for image in found.images:
                assert image.loss_curve[-1] == pytest.approx(-image.objective_final)
                assert image.loss_curve[-1] < image.loss_curve[0], (unit, objective)  # the objective rose
                assert image.stamp.problem(unit_dir(store, trained, unit) / image.file) is None
                with Image.open(unit_dir(store, trained, unit) / image.file) as picture:
                    assert picture.size == (SIZE, SIZE) and picture.mode == "RGB"
        assert [i.file for i in record(store, trained, unit, "diversity").images] == ["diversity-0.png", "diversity-1.png"]


def test_activation_is_measured_on_the_saved_image(trained, rendered):
    store, _ = rendered
    for unit in (0, 1):
        with Image.open(unit_dir(store, trained, unit) / "channel.png") as image:
            pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            response = trained.activations(pixels, [LAYER])[LAYER][0, unit]
        image = record(store, trained, unit).images[0]
        assert image.activation_max == pytest.approx(float(response.max()), rel=1e-4)
        assert image.activation_mean == pytest.approx(float(response.mean()), rel=1e-4)


def test_same_command_twice_writes_identical_bytes(trained, rendered, tmp_path):
    store, _ = rendered
    featurevis(trained, tmp_path, [0, 1])
    for unit in (0, 1):
        again = tmp_path / unit_dir(store, trained, unit).relative_to(store.root) / "channel.png"
        assert again.read_bytes() == (unit_dir(store, trained, unit) / "channel.png").read_bytes()


def test_a_unit_does_not_depend_on_its_batch(trained, rendered, tmp_path):
    store, _ = rendered
    featurevis(trained, tmp_path, [1])
    alone = np.asarray(Image.open(tmp_path / unit_dir(store, trained, 1).relative_to(store.root) / "channel.png"))
    batched = np.asarray(Image.open(unit_dir(store, trained, 1) / "channel.png"))
    # Same seeds and transforms; only float rounding of a different batch size may differ.
    assert np.abs(alone.astype(int) - batched.astype(int)).mean() < 1.0


def test_resume_skips_done_units_and_redoes_unfinished_or_damaged_ones(trained, rendered, caplog):
    store, _ = rendered
    done = {u: (unit_dir(store, trained, u) / "channel.png").stat().st_mtime_ns for u in (0, 1)}
    assert featurevis(trained, store.root, "0-2") == {"channel": [2]}
    assert {u: (unit_dir(store, trained, u) / "channel.png").stat().st_mtime_ns for u in (0, 1)} == done
    # A run killed after writing unit 2's image but before its record: unit 2 is redone.
    os.remove(store.render_file(trained.spec.name, LAYER, 2, "channel"))
    assert featurevis(trained, store.root, "0-2") == {"channel": [2]}
    # A damaged image (the record's stamp no longer matches) is redone, and said in one line.
    image = unit_dir(store, trained, 2) / "channel.png"
    image.write_bytes(image.read_bytes()[:-10])
    assert featurevis(trained, store.root, "0-2") == {"channel": [2]}
    # A record of a format this version does not know is not trusted either.
    path = store.render_file(trained.spec.name, LAYER, 2, "channel")
    path.write_text(path.read_text().replace('"format": 1', '"format": 2'))
    assert featurevis(trained, store.root, "0-2") == {"channel": [2]}
    assert any("channel.json" in r.getMessage() and "format 2" in r.getMessage() for r in caplog.records)
    # A different configuration (here fewer steps) is not taken for done.
    assert featurevis(trained, store.root, [2], steps=4) == {"channel": [2]}
    assert record(store, trained, 2).config.steps == 4


def test_lossless_webp_holds_the_png_pixels(network, tmp_path):
    featurevis(network, tmp_path / "png", [5], steps=4, seed=1)
    featurevis(network, tmp_path / "webp", [5], steps=4, seed=1, image_format="webp")
    relative = unit_dir(Store(tmp_path), network, 5).relative_to(tmp_path)
    png = np.asarray(Image.open(tmp_path / "png" / relative / "channel.png"))
    webp = np.asarray(Image.open(tmp_path / "webp" / relative / "channel.webp"))
    assert np.array_equal(png, webp)


def test_logits_have_no_pre_relu_and_are_optimised_directly(trained, tmp_path):
    assert featurevis(trained, tmp_path, [7], layer="logits", steps=8) == {"channel": [7]}
    found = record(Store(tmp_path), trained, 7, layer="logits")
    assert found.config.optimised_layer == "logits"
    assert found.images[0].loss_curve[-1] < found.images[0].loss_curve[0]


@pytest.mark.parametrize("kwargs, message", [
    (dict(layer="inception_9z"), "unknown layer 'inception_9z'"),
    (dict(objectives=("channel", "dream")), "unknown objective 'dream'; choose from: channel, neuron, negative"),
    (dict(units=[0, 256]), "valid units of inception_3a are 0-255"),
    (dict(units="250-300"), "valid units of inception_3a are 0-255"),
    (dict(steps=0), "--steps must be at least 1, got 0"),
    (dict(size=8), "--size must be at least 32, got 8"),
    (dict(recipe="sous-vide"), "--recipe must be one of: lucid, fast; got 'sous-vide'"),
    (dict(image_format="gif"), "--image-format must be one of: png, webp"),
    (dict(precision="fp8"), "unknown precision 'fp8'"),
])
def test_bad_input_is_one_clear_line(network, tmp_path, kwargs, message):
    args = dict(units=[0], steps=2)
    args.update(kwargs)
    with pytest.raises(UsageError) as error:
        featurevis(network, tmp_path, args.pop("units"), **args)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / network.spec.name / LAYER / "featurevis" / "0").exists()


def test_pre_relu_objective_revives_a_unit_that_is_off_everywhere(trained):
    """Real weights: inception_4a unit 2 is zero everywhere on the grey start, so its post-ReLU channel
    has no gradient and the image never moves; its pre-ReLU value does, and the unit comes alive."""
    extractor = trained.extractor(["inception_4a_pre_relu", "inception_4a"])
    results = {}
    for layer in ("inception_4a", "inception_4a_pre_relu"):
        image = FourierImage([11], 48)
        start = image().detach()
        result = render(extractor, obj.channel(layer, 2), image, 6, transform_seed=0)
        with torch.no_grad():
            post = extractor(result.images)["inception_4a"][0, 2]
        results[layer] = (float((result.images - start).abs().max()), float(post.mean()))
    moved, activation = results["inception_4a"]
    assert moved == 0.0 and activation == 0.0  # stuck at its (grey) start
    moved, activation = results["inception_4a_pre_relu"]
    assert moved > 0.1 and activation > 10.0
