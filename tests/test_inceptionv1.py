"""Lucid's InceptionV1 (inception5h): same architecture as torch-lucent's port, TensorFlow's LRN, right
receptive fields, strict loading of lucent-keyed weights."""
import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.feature_extraction import get_graph_node_names

from microscope.network.catalogue import catalogue
from microscope.errors import UsageError
from microscope.models import get_spec, inceptionv1
from microscope.network.loaded import load_network

WIDTHS = {"conv2d0": 64, "conv2d1": 64, "conv2d2": 192, "mixed3a": 256, "mixed3b": 480, "mixed4a": 508,
          "mixed4b": 512, "mixed4c": 512, "mixed4d": 528, "mixed4e": 832, "mixed5a": 832, "mixed5b": 1024,
          "logits": 1008}


def lucent_inceptionv1():
    lucent = pytest.importorskip("lucent.modelzoo.inceptionv1.InceptionV1",
                                 reason="torch-lucent is not installed (pip install torch-lucent --no-deps)")
    torch.manual_seed(1)
    model = lucent.InceptionV1(pretrained=False, redirected_ReLU=False).eval()
    # He initialisation keeps activations of order one all the way to the logits, so that a wrong
    # padding or branch order deep in the network shows as a large difference, not a tiny one.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.normal_(module.bias, std=0.1)
    return model



def box(info, y, x):
    """(top, left, bottom, right), inclusive, of the input pixels position (y, x) sees."""
    top, left, side = info.receptive_square(y, x)
    return float(top), float(left), float(top) + side - 1, float(left) + side - 1

@pytest.fixture(scope="module")
def random_network():
    return load_network("inceptionv1", weights="random", seed=0)


def test_activations_equal_torch_lucent_given_its_lrn(tmp_path):
    lucent = lucent_inceptionv1()
    path = tmp_path / "inception5h-random.pth"
    torch.save(lucent.state_dict(), path)
    network = load_network("inceptionv1", weights=str(path))
    # torch-lucent's LRN differs from TensorFlow's (see the module docstring); give ours lucent's values
    # here, so that everything else (padding, pooling, branch order, weights) is compared exactly.
    for lrn in (network.module.localresponsenorm0, network.module.localresponsenorm1):
        lrn.size, lrn.alpha, lrn.beta, lrn.k = 9, 9.99999974738e-05, 0.5, 1.0

    captured = {}

    def keep(name):
        return lambda module, inputs, output: captured.__setitem__(name, output)

    for name in ("conv2d0_pre_relu_conv", "mixed3a", "mixed5b", "softmax2_pre_activation_matmul",
                 "mixed4a_1x1_pre_relu_conv", "mixed4a_3x3_pre_relu_conv", "mixed4a_5x5_pre_relu_conv",
                 "mixed4a_pool_reduce_pre_relu_conv"):
        getattr(lucent, name).register_forward_hook(keep(name))

    rgb = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        lucent(rgb * 255 - 117)
        ours = network.activations(rgb, ["conv2d0_pre_relu", "mixed3a", "mixed4a_pre_relu", "mixed5b", "logits"])
    theirs = {
        "conv2d0_pre_relu": captured["conv2d0_pre_relu_conv"],
        "mixed3a": captured["mixed3a"],
        "mixed4a_pre_relu": torch.cat([captured[f"mixed4a_{b}_pre_relu_conv"]
                                       for b in ("1x1", "3x3", "5x5", "pool_reduce")], 1),
        "mixed5b": captured["mixed5b"],
        "logits": captured["softmax2_pre_activation_matmul"],
    }
    for name, expected in theirs.items():
        scale = expected.abs().max().item()
        assert scale > 0.1, f"{name} is too small to compare meaningfully"
        torch.testing.assert_close(ours[name], expected, rtol=1e-4, atol=1e-4 * scale, msg=name)
    assert ours["mixed4a_pre_relu"].min() < 0  # pre-ReLU twin really is before the ReLU


def test_lrn_is_tensorflows_by_brute_force():
    # TensorFlow's LRN op in the inception5h graph: depth_radius 5, bias 2, alpha 1e-4, beta 0.5.
    x = np.random.default_rng(3).normal(scale=40.0, size=(1, 16, 2, 3)).astype(np.float64)
    expected = np.empty_like(x)
    for c in range(16):
        window = x[:, max(0, c - 5): c + 6]
        expected[:, c] = x[:, c] / (2.0 + 1e-4 * (window ** 2).sum(axis=1)) ** 0.5
    model = inceptionv1.build()
    for lrn in (model.localresponsenorm0, model.localresponsenorm1):
        got = lrn(torch.from_numpy(x).float()).double().numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert np.abs(expected - x / 2 ** 0.5).max() > 1.0  # the squares matter at this scale


def test_catalogue_widths_and_receptive_fields(random_network):
    infos = {info.name: info for info in catalogue(random_network)}
    assert {name: infos[name].channels for name in WIDTHS} == WIDTHS
    assert infos["mixed4a_pre_relu"].channels == 508
    for branch, width in (("1x1", 192), ("3x3_bottleneck", 96), ("3x3", 204), ("5x5_bottleneck", 16),
                          ("5x5", 48), ("pool_reduce", 64)):
        assert infos[f"mixed4a_{branch}"].channels == width
        assert infos[f"mixed4a_{branch}_pre_relu"].channels == width
    # conv2d0: 7x7, stride 2, TF "SAME" pads 2 before: position 0 sees pixels -2..4, centred on 1.
    conv = infos["conv2d0"]
    assert (conv.rf_size, conv.stride, conv.rf_offset, conv.height) == (7, 2, 1.0, 112)
    # By hand: maxpool0 (3/2, pad after) -> -2..8; conv2d2 3x3 at stride 4 -> -6..12; maxpool1 -> -6..20
    # at stride 8; the 5x5 branch of mixed3a -> -22..36: 59 pixels centred on 7.
    mixed = infos["mixed3a"]
    assert (mixed.rf_size, mixed.stride, mixed.rf_offset, mixed.height) == (59, 8, 7.0, 28)
    assert (infos["mixed4a"].rf_size, infos["mixed4a"].stride) == (171, 16)
    assert (infos["mixed5b"].rf_size, infos["mixed5b"].stride, infos["mixed5b"].height) == (715, 32, 7)
    assert infos["logits"].rf_size is None and infos["logits"].kind == "logits"


def test_receptive_field_bounds_the_gradient(random_network):
    infos = {info.name: info for info in catalogue(random_network)}
    for layer, (y, x), size in (("conv2d0_pre_relu", (0, 0), 32), ("mixed3a_pre_relu", (5, 6), 96)):
        rgb = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(4), requires_grad=True)
        activation = random_network.activations(rgb, [layer])[layer]
        activation[0, :, y, x].sum().backward()
        rows = torch.nonzero(rgb.grad.abs().sum(dim=(0, 1)).sum(dim=1)).flatten()
        cols = torch.nonzero(rgb.grad.abs().sum(dim=(0, 1)).sum(dim=0)).flatten()
        top, left, bottom, right = box(infos[layer], y, x)
        assert top <= rows.min() and rows.max() <= bottom and left <= cols.min() and cols.max() <= right
        if layer == "conv2d0_pre_relu":  # linear in the image: the gradient fills the clipped box exactly
            assert (rows.min(), rows.max(), cols.min(), cols.max()) == (0, bottom, 0, right) == (0, 4, 0, 4)
        else:
            assert rows.max() - rows.min() > 40  # not a trivially small support


def test_layer_nodes_exist_and_pre_relu_twins_match():
    spec = get_spec("inceptionv1")
    _, eval_nodes = get_graph_node_names(spec.build())
    names = set(spec.layer_names)
    for layer in spec.layers:
        assert set(layer.nodes) <= set(eval_nodes), layer.name
        if layer.kind in ("conv", "block", "branch"):
            assert layer.pre_relu in names
    assert spec.layer("mixed4a_pre_relu").nodes == tuple(
        f"mixed4a_{b}_pre_relu_conv" for b in ("1x1", "3x3", "5x5", "pool_reduce"))


def test_weights_file_of_another_model_is_one_line_usage_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(UsageError) as error:
        load_network("inceptionv1", weights=str(path))
    assert "inception5h.pth" in str(error.value) and "\n" not in str(error.value)

    model = inceptionv1.build()
    state = model.state_dict()
    state["mixed4a_3x3_pre_relu_conv.weight"] = torch.zeros(208, 96, 3, 3)  # Caffe's width, not 204
    torch.save(state, path)
    with pytest.raises(UsageError, match=r"mixed4a_3x3_pre_relu_conv.weight has shape \(208, 96, 3, 3\)"):
        inceptionv1.load_weights(model, str(path))


def test_categories_from_lucent_labels_file(tmp_path):
    assert inceptionv1.categories(None) == tuple(f"class {i}" for i in range(1008))
    labels = tmp_path / "old_imagenet_labels.txt"
    labels.write_text("n02119789 1 kit fox\nn02100735 2 English setter\nbroken line\nn01440764 449 tench\n")
    names = inceptionv1.categories(labels)
    assert len(names) == 1008
    assert (names[0], names[1], names[2], names[449], names[1007]) == (
        "class 0", "kit fox", "English setter", "tench", "class 1007")
    assert len(get_spec("inceptionv1").categories) == 1008
