"""torchvision's GoogLeNet: the extractor agrees with the module's own forward, pre-ReLU layers really are
before the (in-place) ReLU, and torchvision's weights file (with its aux heads) loads strictly."""
import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import get_graph_node_names

from microscope.network.catalogue import catalogue
from microscope.errors import UsageError
from microscope.models import get_spec
from microscope.network.loaded import load_network

WIDTHS = {"conv1": 64, "conv2": 64, "conv3": 192, "inception3a": 256, "inception3b": 480, "inception4a": 512,
          "inception4b": 512, "inception4c": 512, "inception4d": 528, "inception4e": 832, "inception5a": 832,
          "inception5b": 1024, "logits": 1000}


@pytest.fixture(scope="module")
def random_network():
    return load_network("googlenet", weights="random", seed=0)


def rgb(size=112, seed=0):
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_spec_comes_from_torchvisions_weights_api():
    spec = get_spec("googlenet")
    weights = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1
    assert spec.weights.url == weights.url
    assert (spec.weights.filename, spec.weights.sha256) == ("googlenet-1378be20.pth", "1378be20")
    assert spec.categories == tuple(weights.meta["categories"]) and len(spec.categories) == 1000
    assert spec.preprocessing.mean == (0.485, 0.456, 0.406) and spec.preprocessing.std == (0.229, 0.224, 0.225)
    assert spec.preprocessing.scale == 1.0 and spec.preprocessing.channel_order == "RGB"
    model = spec.build()
    assert model.transform_input and model.aux1 is None and model.aux2 is None


def test_extractor_equals_the_modules_own_forward(random_network):
    images = rgb()
    block = {}
    hook = random_network.module.inception4c.register_forward_hook(lambda m, i, out: block.__setitem__("out", out))
    try:
        with torch.no_grad():
            expected = random_network.module(random_network.spec.preprocessing(images))
    finally:
        hook.remove()
    with torch.no_grad():
        ours = random_network.activations(images, ["inception4c", "logits"])
    assert ours["logits"].shape == (2, 1000)
    torch.testing.assert_close(ours["logits"], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours["inception4c"], block["out"], rtol=1e-5, atol=1e-5)
    assert expected.std() > 1e-3  # a meaningful comparison, not of constants


def test_pre_relu_layers_hold_negatives_and_relu_gives_the_layer(random_network):
    pairs = ["conv1", "conv3", "inception3a", "inception4a", "inception4a_branch2", "inception4a_branch3_reduce",
             "inception5b_branch4"]
    names = pairs + [random_network.layer(name).pre_relu for name in pairs]
    with torch.no_grad():
        acts = random_network.activations(rgb(seed=1), names)
    for name in pairs:
        post, pre = acts[name], acts[f"{name}_pre_relu"]
        assert post.min() >= 0, name
        assert pre.min() < 0, f"{name}_pre_relu has no negatives: an in-place ReLU overwrote it"
        torch.testing.assert_close(torch.relu(pre), post, rtol=0, atol=0, msg=name)


def test_weights_file_with_aux_heads_round_trips(tmp_path):
    torch.manual_seed(5)
    # The published file holds the (untrained) auxiliary classifiers too; we must accept and drop them.
    source = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=True,
                                         init_weights=False).eval()
    path = tmp_path / "googlenet-random.pth"
    torch.save(source.state_dict(), path)
    assert any(key.startswith("aux1.") for key in source.state_dict())
    network = load_network("googlenet", weights=str(path))
    ours = network.module.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith(("aux1.", "aux2.")):
            assert torch.equal(ours[key], value), key
    images = rgb(size=96, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(network.activations(images, ["logits"])["logits"],
                                   source(network.spec.preprocessing(images)), rtol=1e-5, atol=1e-5)


def test_weights_file_of_another_model_is_one_line_usage_error(tmp_path):
    path = tmp_path / "inception5h.pth"
    torch.save(get_spec("inceptionv1").build().state_dict(), path)
    with pytest.raises(UsageError) as error:
        load_network("googlenet", weights=str(path))
    assert "googlenet-1378be20.pth" in str(error.value) and "\n" not in str(error.value)


def test_catalogue_widths_nodes_and_receptive_fields(random_network):
    _, eval_nodes = get_graph_node_names(random_network.spec.build())
    for layer in random_network.spec.layers:
        assert set(layer.nodes) <= set(eval_nodes), layer.name
    infos = {info.name: info for info in catalogue(random_network)}
    assert {name: infos[name].channels for name in WIDTHS} == WIDTHS
    assert infos["inception4a_pre_relu"].channels == 512
    # conv1: 7x7, stride 2, padding 3 on both sides: position 0 sees -3..3.
    assert (infos["conv1"].rf_size, infos["conv1"].stride, infos["conv1"].rf_offset) == (7, 2, 0.0)
    # branch3 is 3x3 in torchvision, so inception3a's widest field comes from its 3x3 branches:
    # conv3 sees 19 px at stride 4, maxpool2 (3/2) makes it 27 at stride 8, a 3x3 conv 43.
    assert (infos["inception3a"].rf_size, infos["inception3a"].stride) == (43, 8)
    assert infos["logits"].rf_size is None
