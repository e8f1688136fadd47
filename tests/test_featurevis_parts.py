"""Feature visualization parts, each against a hand computation: parameterization, colour, transforms,
objectives, and the parsing of units and objective names."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from microscope.errors import UsageError
from microscope.featurevis import objectives as obj
from microscope.featurevis.color import COLOR_CORRELATION_NORMALIZED, decorrelated_to_rgb
from microscope.featurevis.param import FourierImage, rfft2_frequencies, spectrum_scale
from microscope.featurevis.recipe import Recipe, TransformRecipe
from microscope.featurevis.registry import UNIT_OBJECTIVES
from microscope.featurevis.transform import TransformDraw, draw_transforms, output_size, transform_images
from microscope.selection import Units, parse_objectives

# --- parameterization --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, (24, 33)])
def test_fourier_image_shape_range_and_seeding(size):
    image = FourierImage([1, 2, 3], size)
    h, w = (size, size) if isinstance(size, int) else size
    rgb = image().detach()
    assert rgb.shape == (3, 3, h, w)
    assert float(rgb.min()) > 0 and float(rgb.max()) < 1  # a sigmoid never clips
    # Starts near grey: the spectrum's spread (0.01) is small.
    assert abs(float(rgb.mean()) - 0.5) < 0.05
    assert torch.equal(FourierImage([1, 2, 3], size)().detach(), rgb)
    # Each element's start depends on its own seed only, not on its batch.
    assert torch.equal(FourierImage([7, 2], size)().detach()[1], rgb[1])
    assert not torch.equal(rgb[0], rgb[1])


def test_spectrum_scale_values():
    h, w = 16, 20
    scale = spectrum_scale(h, w)
    root = math.sqrt(h * w)
    # Frequency of coefficient (ky, kx): sqrt((ky/h)^2 + (kx/w)^2), ky wrapping to negative above h/2.
    assert scale[0, 3].item() == pytest.approx(root / (3 / w), rel=1e-6)
    assert scale[5, 0].item() == pytest.approx(root / (5 / h), rel=1e-6)
    assert scale[h - 2, 4].item() == pytest.approx(root / math.hypot(2 / h, 4 / w), rel=1e-6)
    # The DC term is floored at the lowest frequency 1/max(h, w), not infinite.
    assert scale[0, 0].item() == pytest.approx(root * max(h, w), rel=1e-6)
    assert rfft2_frequencies(h, w).shape == scale.shape == (h, w // 2 + 1)


def test_fourier_image_has_the_scaled_spectrum():
    """The image's own FFT is exactly the parameter spectrum times 1/f: what the parameterization claims."""
    h, w = 24, 32
    image = FourierImage([0], (h, w), decorrelate=False)
    spectrum = torch.view_as_complex(image.spectrum.detach())[0]
    t = image.decorrelated().detach()[0] * 4  # undo Lucid's /4
    measured = torch.fft.rfft2(t)
    expected = spectrum * spectrum_scale(h, w)
    # Columns 1..w/2-1 are free; the DC and Nyquist columns are forced Hermitian by a real image.
    assert torch.allclose(measured[:, :, 1:-1], expected[:, :, 1:-1], rtol=1e-4, atol=1e-4)
    # So the amplitude falls as 1/f: doubling the frequency halves the expected amplitude.
    amplitude = measured.abs()[:, 1:, 1:-1].mean(dim=0)
    freqs = rfft2_frequencies(h, w)[1:, 1:-1]
    ratio = (amplitude * freqs).mean() / (image.spectrum.detach().norm(dim=-1).mean() * math.sqrt(h * w))
    assert 0.8 < float(ratio) < 1.25


def test_sigmoid_of_decorrelated_colour():
    image = FourierImage([4], 16)
    t = image.decorrelated().detach()
    assert torch.allclose(image().detach(), torch.sigmoid(decorrelated_to_rgb(t)))


# --- colour ------------------------------------------------------------------------------------


def test_colour_matrix_is_lucids_normalised_by_largest_column():
    lucid = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
    norms = np.linalg.norm(lucid, axis=0)
    np.testing.assert_allclose(COLOR_CORRELATION_NORMALIZED, lucid / norms.max(), rtol=1e-6)
    assert np.linalg.norm(COLOR_CORRELATION_NORMALIZED, axis=0).max() == pytest.approx(1.0, rel=1e-6)


def test_decorrelated_to_rgb_is_lucids_matrix_product():
    t = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    # Lucid: flatten to (pixels, 3) and multiply by the transposed matrix.
    pixels = t.permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    expected = (pixels @ COLOR_CORRELATION_NORMALIZED.T).reshape(2, 5, 7, 3).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(decorrelated_to_rgb(t).numpy(), expected, rtol=1e-5, atol=1e-6)


# --- transforms --------------------------------------------------------------------------------


def test_transform_draws_are_seeded_and_in_lucids_ranges():
    recipe = TransformRecipe()
    draws = draw_transforms(recipe, seed=3, steps=400)
    assert draws == draw_transforms(recipe, seed=3, steps=400)
    assert draws != draw_transforms(recipe, seed=4, steps=400)
    assert sorted({round(d.scale, 6) for d in draws}) == [0.9, 0.92, 0.94, 0.96, 0.98, 1.0, 1.02, 1.04, 1.06,
                                                          1.08, 1.1]
    assert {d.angle for d in draws} <= set(range(-10, 11))
    assert all(0 <= o <= 8 for d in draws for o in d.first_offset)
    assert all(0 <= o <= 4 for d in draws for o in d.last_offset)
    # Angle 0 is drawn 6 times in 26, as in Lucid's list(range(-10, 11)) + 5 * [0].
    assert 0.12 < sum(d.angle == 0 for d in draws) / len(draws) < 0.35


def test_transform_without_scale_or_rotation_is_pad_and_two_crops():
    x = torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    draw = TransformDraw(first_offset=(3, 7), scale=1.0, angle=0.0, last_offset=(4, 1))
    out = transform_images(x, draw)
    padded = F.pad(x, (12, 12, 12, 12), value=0.5)
    first = padded[:, :, 3:3 + 36, 7:7 + 36]  # 44 - 8
    expected = first[:, :, 4:4 + 32, 1:1 + 32]  # 36 - 4
    assert out.shape == (2, 3, 32, 32)
    assert torch.allclose(out, expected, atol=1e-6)


def test_transform_rotation_and_scale():
    x = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(2))
    recipe = TransformRecipe(pad=12, jitter_first=8, jitter_last=4)
    # A quarter turn (not in Lucid's list, but exact on the pixel grid) must be a pure rotation.
    quarter = transform_images(x, TransformDraw((4, 4), 1.0, 90.0, (2, 2)), recipe)
    centre = transform_images(x, TransformDraw((4, 4), 1.0, 0.0, (2, 2)), recipe)
    assert any(torch.allclose(quarter, torch.rot90(centre, k, dims=(2, 3)), atol=1e-5) for k in (1, -1))
    # Scaling changes the output size as Lucid's resize does (truncating), and keeps the batch.
    batch = torch.rand(5, 3, 224, 224)
    for scale in (0.9, 1.0, 1.1):
        out = transform_images(batch, TransformDraw((0, 0), scale, -7.0, (0, 0)))
        side = output_size(TransformRecipe(), 224, scale)
        assert out.shape == (5, 3, side, side)
        assert side == math.floor(240 * scale + 1e-6) - 4
    # Every element gets the same transform: transforming a batch = transforming each element.
    draw = TransformDraw((1, 6), 1.06, 9.0, (3, 0))
    together = transform_images(batch[:3], draw)
    apart = torch.cat([transform_images(batch[i:i + 1], draw) for i in range(3)])
    assert torch.allclose(together, apart, atol=1e-6)
    # Corners brought in from outside by the rotation are the pad grey.
    grey = transform_images(torch.zeros(1, 3, 32, 32), TransformDraw((0, 0), 0.9, 10.0, (0, 0)))
    assert grey[0, :, 0, 0].tolist() == pytest.approx([0.5, 0.5, 0.5])


# --- objectives --------------------------------------------------------------------------------


@pytest.fixture()
def acts():
    g = torch.Generator().manual_seed(5)
    return {"a": torch.randn(4, 6, 5, 7, generator=g), "b": torch.randn(4, 3, 4, 4, generator=g),
            "logits": torch.randn(4, 10, generator=g)}


def test_channel_and_neuron_by_hand(acts):
    a = acts["a"]
    assert torch.allclose(obj.channel("a", 2)(acts), a[:, 2].mean(dim=(1, 2)))
    # One unit per element: element i maximises units[i].
    units = [0, 5, 2, 2]
    expected = torch.stack([a[i, u].mean() for i, u in enumerate(units)])
    assert torch.allclose(obj.channel("a", units)(acts), expected)
    # Neuron: the centre position (5x7 -> row 2, column 3).
    assert torch.allclose(obj.neuron("a", units)(acts), torch.stack([a[i, u, 2, 3] for i, u in enumerate(units)]))
    assert torch.allclose(obj.class_logit(7)(acts), acts["logits"][:, 7])


def test_objectives_compose(acts):
    a, b = obj.channel("a", 1), obj.neuron("b", [0, 1, 2, 0])
    va, vb = a(acts), b(acts)
    assert torch.allclose((a + 2 * b)(acts), va + 2 * vb)
    assert torch.allclose((a - b / 4)(acts), va - vb / 4)
    assert torch.allclose((-a + 3)(acts), 3 - va)
    assert torch.allclose((1 - a)(acts), 1 - va)
    assert torch.allclose((a * b)(acts), va * vb)
    assert (a + 2 * b).layers == ("a", "b")


def test_direction_by_hand(acts):
    vec = torch.randn(6, generator=torch.Generator().manual_seed(9))
    a = acts["a"]
    dots = torch.einsum("nchw,c->nhw", a, vec)
    assert torch.allclose(obj.direction("a", vec)(acts), dots.mean(dim=(1, 2)), atol=1e-5)
    # Per-element directions (N, C), e.g. one dictionary feature per element.
    vecs = torch.randn(4, 6, generator=torch.Generator().manual_seed(10))
    assert torch.allclose(obj.direction("a", vecs)(acts), torch.einsum("nchw,nc->nhw", a, vecs).mean(dim=(1, 2)),
                          atol=1e-5)
    # cossim_pow weights each position by its (floored) cosine similarity to the direction.
    cos = dots / ((a.norm(dim=1) + 1e-4) * (vec.norm() + 1e-4))
    expected = (dots * cos.clamp(min=0.1) ** 2).mean(dim=(1, 2))
    assert torch.allclose(obj.direction("a", vec, cossim_pow=2)(acts), expected, atol=1e-5)
    # A channel is the direction of a one-hot vector.
    assert torch.allclose(obj.direction("a", torch.eye(6)[4])(acts), obj.channel("a", 4)(acts), atol=1e-6)


def _lucid_diversity(layer_t):
    """Lucid's formula with loops, on (N, C, H, W): mean over i of sum over j != i of Gram cosines."""
    n, c = layer_t.shape[:2]
    grams = [(f @ f.T).flatten() for f in layer_t.reshape(n, c, -1)]
    grams = [g / g.norm() for g in grams]
    return sum(float(grams[i] @ grams[j]) for i in range(n) for j in range(n) if j != i) / n


def test_diversity_matches_lucid_per_group():
    g = torch.Generator().manual_seed(3)
    layer_t = torch.relu(torch.randn(6, 4, 3, 3, generator=g))
    per_element = obj.diversity("x", group_size=3)({"x": layer_t})
    assert per_element.shape == (6,)
    for group in (slice(0, 3), slice(3, 6)):
        # Summed over a group it is group_size times Lucid's diversity of that group alone.
        assert float(per_element[group].sum()) == pytest.approx(3 * _lucid_diversity(layer_t[group]), rel=1e-5)


def test_diversity_penalty_is_highest_for_identical_images_and_pushes_them_apart():
    same = torch.rand(1, 4, 5, 5).expand(3, -1, -1, -1)
    assert obj.gram_similarity(same, 3).tolist() == pytest.approx([2.0, 2.0, 2.0])  # cosine 1 with both others
    # Disjoint channels give orthogonal Grams: no penalty.
    disjoint = torch.zeros(2, 2, 3, 3)
    disjoint[0, 0], disjoint[1, 1] = 1.0, 1.0
    assert obj.gram_similarity(disjoint, 2).tolist() == [0.0, 0.0]
    # Gradient ascent on -diversity makes two similar activations less alike.
    x = (torch.rand(2, 4, 5, 5, generator=torch.Generator().manual_seed(0)) + 1).requires_grad_(True)
    before = float(obj.gram_similarity(x.detach(), 2).sum())
    (-obj.diversity("x", 2)({"x": x})).sum().backward()
    with torch.no_grad():
        after = float(obj.gram_similarity(x + 0.5 * x.grad / x.grad.norm(), 2).sum())
    assert after < before


# --- parsing -----------------------------------------------------------------------------------


def test_parse_units():
    assert Units.parse("0-3").resolve(64, "conv1") == [0, 1, 2, 3]
    assert Units.parse("3,5,9-12").resolve(64, "conv1") == [3, 5, 9, 10, 11, 12]
    assert Units.parse(" 7 ").resolve(8, "conv1") == [7]
    assert Units.parse("all").resolve(5, "conv1") == [0, 1, 2, 3, 4]
    assert Units.parse("2,1-3").resolve(8, "conv1") == [1, 2, 3]


@pytest.mark.parametrize("text", ["0-64", "64"])
def test_units_out_of_range_name_the_valid_range(text):
    with pytest.raises(UsageError) as error:
        Units.parse(text).resolve(64, "conv1")
    assert "valid units of conv1 are 0-63" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("text, message", [("5-2", "runs backwards"), ("abc", "cannot read units"),
                                           ("-1", "cannot read units"), ("1,,2", "cannot read units"),
                                           ("1.5", "cannot read units")])
def test_unreadable_units_say_how_to_write_them(text, message):
    with pytest.raises(UsageError) as error:
        Units.parse(text)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_parse_objectives():
    assert parse_objectives("channel,neuron,negative,diversity", UNIT_OBJECTIVES) == (
        "channel", "neuron", "negative", "diversity")
    assert parse_objectives("neuron, neuron", UNIT_OBJECTIVES) == ("neuron",)
    with pytest.raises(UsageError, match="choose from: channel, neuron, negative, diversity"):
        parse_objectives("channel,dreams", UNIT_OBJECTIVES)
    with pytest.raises(UsageError):
        parse_objectives("", UNIT_OBJECTIVES)


def test_registry_says_how_many_images_each_objective_makes():
    recipe = Recipe(diversity_images=3)
    assert [UNIT_OBJECTIVES[name].files(recipe, "png") for name in ("channel", "diversity")] == [
        ["channel.png"], ["diversity-0.png", "diversity-1.png", "diversity-2.png"]]
    assert Recipe.from_dict(recipe.as_dict()) == recipe  # a job's spec carries its recipe as data


# --- local response normalisation ----------------------------------------------------------------


@pytest.mark.parametrize("size, alpha, beta, k", [(5, 1e-4, 0.75, 1.0), (11, 1.1e-3, 0.5, 2.0), (4, 1e-2, 0.75, 1.0)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_fast_lrn_equals_torchs_in_value_and_gradient(size, alpha, beta, k, channels_last):
    from microscope.featurevis.lrn import FastLocalResponseNorm

    x = torch.randn(2, 13, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(size)) * 20
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn_like(x)
    mine, theirs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y_mine = FastLocalResponseNorm(size, alpha, beta, k)(mine)
    y_theirs = torch.nn.LocalResponseNorm(size, alpha, beta, k)(theirs)
    y_mine.backward(grad)
    y_theirs.backward(grad)
    assert torch.allclose(y_mine, y_theirs, rtol=1e-12, atol=1e-12)
    assert torch.allclose(mine.grad, theirs.grad, rtol=1e-10, atol=1e-12)


def test_fast_lrn_goes_into_the_featurevis_extractor_only():
    from microscope.featurevis.lrn import FastLocalResponseNorm
    from microscope.featurevis.batch import featurevis_extractor
    from microscope.network.loaded import load_network

    network = load_network("inceptionv1-caffe", weights="random", seed=0, progress=False)
    extractor = featurevis_extractor(network, ["conv2_pre_relu", "conv2"])
    swapped = [m for m in extractor.modules() if isinstance(m, FastLocalResponseNorm)]
    assert len(swapped) == 1  # norm1 (norm2 comes after conv2, past the truncation)
    assert not any(isinstance(m, FastLocalResponseNorm) for m in network.module.modules())
    assert not any(p.requires_grad for p in extractor.parameters())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ours, plain = extractor(x), network.activations(x, ["conv2_pre_relu", "conv2"])
    for name in plain:
        assert torch.allclose(ours[name], plain[name], rtol=1e-5, atol=1e-5 * float(plain[name].abs().max()))
