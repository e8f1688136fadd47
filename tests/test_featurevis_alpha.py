"""Transparent feature visualizations (the channel-alpha objective): the alpha is learned and penalised,
the render is composited over seeded random backgrounds, stored as RGBA, measured over random backgrounds,
and shown on the unit page over a checkerboard."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import microscope
from microscope.cli import main
from microscope.featurevis.alpha import background, composite, measurement_backgrounds
from microscope.featurevis.batch import UnitBatch, element_seed, featurevis_extractor, render_batch
from microscope.featurevis.recipe import RECIPES, Recipe
from microscope.featurevis.registry import DEFAULT_OBJECTIVES, UNIT_OBJECTIVES
from microscope.network.loaded import load_network
from microscope.run.pipeline import run_views
from microscope.selection import Units
from microscope.site.builder import build_site
from microscope.store import RenderImage, RenderRecord, Store, atomic_write_bytes
from microscope.store.files import image_bytes
from microscope.views.featurevis import FeatureVisSettings
from site_fixtures import make_store

LAYER, TARGET = "inception_3a", "inception_3a_pre_relu"
SIZE, STEPS = 48, 24
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(shared_dir):
    return load_network("inceptionv1-caffe", weights=str(shared_dir / "weights" / "bvlc_googlenet.npz"),
                        progress=False)


@pytest.fixture(scope="module")
def extractor(trained):
    return featurevis_extractor(trained, [TARGET, LAYER])


def alpha_batch(units, recipe: Recipe = RECIPES["lucid"], steps: int = STEPS, seed: int = 3) -> UnitBatch:
    return UnitBatch(LAYER, TARGET, UNIT_OBJECTIVES["channel-alpha"], tuple(units), steps, SIZE, seed, recipe)


def with_penalty(penalty: float, penalty_from: float = 0.0, recipe: Recipe = RECIPES["lucid"]) -> Recipe:
    return replace(recipe, transparency=replace(recipe.transparency, penalty=penalty, penalty_from=penalty_from))


@pytest.fixture(scope="module")
def rendered(trained, extractor):
    return render_batch(trained, extractor, alpha_batch([0, 1]))


def test_the_alpha_is_partly_opaque_after_a_short_render(rendered):
    assert rendered.pixels.shape == (2, SIZE, SIZE, 4) and rendered.pixels.dtype == np.uint8
    alpha = rendered.pixels[..., 3] / 255
    for element in alpha:
        assert 0 < element.mean() < 1 and element.std() > 0
    assert np.isfinite(rendered.activation_mean).all() and (rendered.activation_max >= rendered.activation_mean).all()


def test_the_opacity_penalty_lowers_mean_alpha(trained, extractor):
    """Same seed, same steps: with the penalty the render is clearer, for both recipes."""
    for recipe in (RECIPES["lucid"], RECIPES["fast"]):
        free = render_batch(trained, extractor, alpha_batch([0, 1], with_penalty(0.0, recipe=recipe)))
        paid = render_batch(trained, extractor, alpha_batch([0, 1], with_penalty(2.0, recipe=recipe)))
        free_alpha, paid_alpha = (r.pixels[..., 3].mean(axis=(1, 2)) for r in (free, paid))
        assert (paid_alpha < free_alpha).all(), (recipe.name, free_alpha, paid_alpha)


def test_backgrounds_are_seeded_and_a_unit_does_not_depend_on_its_batch(trained, extractor, rendered):
    one = background(7, 3, (SIZE, SIZE), 0.5)
    assert torch.equal(one, background(7, 3, (SIZE, SIZE), 0.5)) and one.shape == (1, 3, SIZE, SIZE)
    assert not torch.equal(one, background(7, 4, (SIZE, SIZE), 0.5))
    assert not torch.equal(one, background(8, 3, (SIZE, SIZE), 0.5))
    assert 0.05 < float(one.std()) and 0 < float(one.min()) and float(one.max()) < 1  # a colour field, not grey
    again = render_batch(trained, extractor, alpha_batch([0, 1]))
    assert np.array_equal(again.pixels, rendered.pixels)
    alone = render_batch(trained, extractor, alpha_batch([1]))
    # Same seeds, transforms and backgrounds; only float rounding of another batch size may differ.
    assert np.abs(alone.pixels[0].astype(int) - rendered.pixels[1].astype(int)).mean() < 1.0


def test_compositing_mixes_by_alpha():
    rgba = torch.rand(2, 4, 6, 6)
    under = torch.rand(1, 3, 6, 6)
    rgba[0, 3], rgba[1, 3] = 1.0, 0.0
    out = composite(rgba, under)
    assert torch.allclose(out[0], rgba[0, :3]) and torch.allclose(out[1], under[0])


def featurevis(network, store, units, objectives, **settings):
    run_views(network, ["featurevis"], store=store, layers=[LAYER], units=Units(tuple((u, u) for u in units)),
              settings={"featurevis": FeatureVisSettings(objectives=tuple(objectives), steps=STEPS, size=SIZE,
                                                         **settings)}, seed=3)


def test_stored_render_is_rgba_as_rendered_and_measured_over_random_backgrounds(trained, extractor, rendered, tmp_path):
    store = Store(tmp_path)
    featurevis(trained, tmp_path, [0, 1], ["channel", "channel-alpha"])
    for i, unit in enumerate((0, 1)):
        folder = store.renders_dir(trained.spec.name, LAYER, unit)
        with Image.open(folder / "channel-alpha.png") as image:
            assert image.mode == "RGBA"
            pixels = np.array(image)
        assert np.array_equal(pixels, rendered.pixels[i])  # the view's batch is the fixture's: the same pixels
        with Image.open(folder / "channel.png") as image:
            assert image.mode == "RGB"  # the opaque objectives stay opaque
        record = store.read(store.render_file(trained.spec.name, LAYER, unit, "channel-alpha"), RenderRecord)
        transparency = record.config.recipe["transparency"]
        assert transparency["penalty"] == RECIPES["lucid"].transparency.penalty and transparency["version"]
        opaque = store.read(store.render_file(trained.spec.name, LAYER, unit, "channel"), RenderRecord)
        assert "transparency" not in opaque.config.recipe  # the other objectives' records are as before
        # Measured on the saved pixels over the seeded measurement backgrounds, not over one grey.
        rgba = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
        means, maxima = [], []
        for under in measurement_backgrounds(RECIPES["lucid"].transparency, element_seed(3, "backgrounds"),
                                             (SIZE, SIZE)):
            with torch.no_grad():
                response = trained.activations(composite(rgba, under), [LAYER])[LAYER][0, unit]
            means.append(float(response.mean()))
            maxima.append(float(response.max()))
        assert len(means) == 8 and np.std(means) > 0
        assert record.images[0].activation_mean == pytest.approx(np.mean(means), rel=1e-3)
        assert record.images[0].activation_max == pytest.approx(np.mean(maxima), rel=1e-3)


def test_lossless_webp_keeps_the_alpha(trained, tmp_path):
    featurevis(trained, tmp_path / "webp", [0], ["channel-alpha"], image_format="webp")
    featurevis(trained, tmp_path / "png", [0], ["channel-alpha"])
    folders = [Store(tmp_path / kind).renders_dir(trained.spec.name, LAYER, 0) for kind in ("webp", "png")]
    with Image.open(folders[0] / "channel-alpha.webp") as webp, Image.open(folders[1] / "channel-alpha.png") as png:
        assert webp.mode == "RGBA" and np.array_equal(np.array(webp), np.array(png))


def test_channel_alpha_is_asked_for_by_name_and_older_keys_stay():
    assert FeatureVisSettings().objectives == DEFAULT_OBJECTIVES == ("channel", "neuron", "negative", "diversity")
    assert FeatureVisSettings(objectives=("channel", "channel-alpha")).objectives == ("channel", "channel-alpha")
    # The lucid recipe's dict is what stores made before it hold; only a transparent objective's adds its numbers.
    assert "transparency" not in RECIPES["lucid"].as_dict()
    with_numbers = RECIPES["fast"].as_dict(transparent=True)
    assert Recipe.from_dict(with_numbers) == RECIPES["fast"]
    assert {k: v for k, v in with_numbers.items() if k != "transparency"} == RECIPES["fast"].as_dict()


# ------------------------------------------------------------------------------------------------
# The site


def write_transparent(store: Store, unit: int, alpha: np.ndarray) -> None:
    """A channel-alpha render of conv1 `unit` in the site fixtures' store, as the view writes it."""
    opaque = store.read(store.render_file("tiny", "conv1", unit, "channel"), RenderRecord)
    config = replace(opaque.config, recipe={**opaque.config.recipe,
                                            "transparency": RECIPES["lucid"].transparency.as_dict()})
    pixels = np.dstack([np.full(alpha.shape + (3,), (200, 40, 90), np.uint8), alpha])
    folder = store.renders_dir("tiny", "conv1", unit)
    stamp = atomic_write_bytes(folder / "channel-alpha.png", image_bytes(Image.fromarray(pixels, "RGBA"), ".png"))
    image = RenderImage(file="channel-alpha.png", stamp=stamp, objective_final=2.0, loss_curve=[0.0, -1.0, -2.0],
                        activation_mean=0.5, activation_max=6.0)
    store.write(store.render_file("tiny", "conv1", unit, "channel-alpha"), RenderRecord(
        unit=unit, objective="channel-alpha", config=config, loss_curve_steps=[0, 8, 16], images=[image]))


def test_the_unit_page_shows_the_transparent_render_over_a_checkerboard(tmp_path):
    store = make_store(tmp_path / "store")
    alpha = np.zeros((40, 40), np.uint8)
    alpha[10:30, 5:25] = 255  # a quarter of the image opaque
    write_transparent(store, 1, alpha)
    build_site(store, tmp_path / "site", progress=False)
    folder = tmp_path / "site" / "models" / "tiny" / "conv1" / "1"
    text = (folder / "index.html").read_text()
    figures = re.findall(r'<figure class="([^"]*)">\s*<a href="([^"]+)"><img[^>]* src="([^"]+)"', text)
    classes = {src: cls for cls, _, src in figures}
    assert classes["channel-alpha.webp"] == "hero checker" and classes["channel.webp"] == "hero"
    pair = re.search(r'<div class="pair">(.*?)</div>', text, re.S).group(1)
    assert "channel.webp" in pair and "channel-alpha.webp" in pair  # side by side
    caption = re.search(r'<figure class="hero checker">.*?<figcaption>(.*?)</figcaption>', text, re.S).group(1)
    assert "mean alpha 0.25" in caption and "transparent" in caption
    css = (REPO / "static" / "microscope.css").read_text()
    assert re.search(r"\.checker img \{[^}]*background:[^}]*conic-gradient", css)
    with Image.open(folder / "channel-alpha.webp") as webp:
        assert webp.mode == "RGBA"
        assert np.array_equal(np.array(webp.getchannel("A")), alpha)  # WebP's alpha is lossless
    with Image.open(folder / "thumb.webp") as thumb:
        assert thumb.mode == "RGB"  # the grid thumbnail stays the opaque render
    data = json.loads((folder / "unit.json").read_text())["featurevis"]
    assert data["renders"]["channel-alpha"] == "channel-alpha.webp" and data["mean_alpha"]["channel-alpha"] == 0.25
    assert data["renders"]["channel"] == "channel.webp"
    assert "Transparent render (alpha-fourier-background" in text and "8 seeded random backgrounds" in text
    picture = microscope.open_store(store.root).model("tiny").layer("conv1").unit(1).render("channel-alpha")
    assert picture.mode == "RGBA" and np.array_equal(np.array(picture.getchannel("A")), alpha)  # the library's too
    # A unit without a transparent render has no pair and no checkerboard.
    other = (tmp_path / "site" / "models" / "tiny" / "conv1" / "0" / "index.html").read_text()
    assert 'class="pair"' not in other and "checker" not in other


# ------------------------------------------------------------------------------------------------
# The command line


def test_objectives_channel_alpha_through_the_cli(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "build.py"), "featurevis", "--model", "inceptionv1-caffe",
                             "--weights", "random", "--layers", "conv1", "--units", "0", "--steps", "2", "--size", "48",
                             "--objectives", "channel-alpha", "--store", str(tmp_path), "--quiet"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = Store(tmp_path).renders_dir("inceptionv1-caffe", "conv1", 0)
    assert sorted(p.name for p in folder.iterdir()) == ["channel-alpha.json", "channel-alpha.png"]
    with Image.open(folder / "channel-alpha.png") as image:
        assert image.mode == "RGBA"


def test_an_unknown_objective_is_one_line_and_exit_code_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["featurevis", "--model", "inceptionv1-caffe", "--weights", "random",
                                       "--layers", "conv1", "--objectives", "channel,channel-alfa", "--quiet"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "unknown objective 'channel-alfa'" in lines[0]
    assert "channel-alpha" in lines[0]  # the choices name it
    assert list(tmp_path.iterdir()) == []
