"""torchvision's AlexNet, VGG19, ResNet-50 and Inception v3 in the zoo (seeded random weights: no download
here): layers found in the graph, receptive fields against hand computation, checked pre-ReLU twins, a
tiny build of each into a browsable site, and weights files that do not fit."""
import pytest
import torch
import torchvision

from generated import blob_photos, cli, QUICK_CARICATURES
from microscope.network.catalogue import catalogue
from microscope.network.loaded import load_network
from test_site import parse

# By hand, (channels, receptive field size, stride) of two layers per model:
#   alexnet conv1: 11x11 / 4 -> 11, 4; conv2: max pool 3/2 (11 + 2*4 = 19, 8), 5x5 (19 + 4*8 = 51, 8)
#   vgg19 conv1_1: 3x3 -> 3, 1; conv2_1: conv1_2 (5), max pool 2/2 (6, 2), 3x3 (6 + 2*2 = 10, 2)
#   resnet50 conv1: 7x7 / 2 -> 7, 2; layer1_0: max pool 3/2 (11, 4), bottleneck 1x1, 3x3 (11 + 2*4), 1x1
#   inception_v3 conv2d_1a_3x3: 3x3 / 2 -> 3, 2; conv2d_2a_3x3: 3x3 on it (3 + 2*2 = 7, 2)
HAND = {
    "alexnet": {"conv1": (64, 11, 4), "conv2": (192, 51, 8)},
    "vgg19": {"conv1_1": (64, 3, 1), "conv2_1": (128, 10, 2)},
    "resnet50": {"conv1": (64, 7, 2), "layer1_0": (256, 19, 4)},
    "inception_v3": {"conv2d_1a_3x3": (32, 3, 2), "conv2d_2a_3x3": (32, 7, 2)},
}
MAIN = {  # the layers `--layers all` shows, found in the graph
    "alexnet": [f"conv{i}" for i in range(1, 6)],
    "vgg19": [f"conv{b}_{i}" for b, n in zip(range(1, 6), (2, 2, 4, 4, 4)) for i in range(1, n + 1)],
    "resnet50": ["conv1"] + [f"layer{s}_{b}" for s, n in zip(range(1, 5), (3, 4, 6, 3)) for b in range(n)],
    "inception_v3": ["conv2d_1a_3x3", "conv2d_2a_3x3", "conv2d_2b_3x3", "conv2d_3b_1x1", "conv2d_4a_3x3"]
    + [f"mixed_{name}" for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c")],
}
NO_TWIN = {"inception_v3": {"mixed_6a", "mixed_7a"}}  # a max-pool branch: no ReLU to undo


@pytest.mark.parametrize("model", list(HAND))
def test_layers_fields_and_twins_come_from_the_graph(model):
    network = load_network(model, weights="random", seed=0, progress=False)
    infos = {info.name: info for info in catalogue(network)}
    assert [name for name, info in infos.items() if info.kind in ("conv", "block")] == MAIN[model]
    assert infos["logits"].channels == 1000 and infos["logits"].rf_size is None
    for name, (channels, size, stride) in HAND[model].items():
        assert (infos[name].channels, infos[name].rf_size, infos[name].stride) == (channels, size, stride), name
    without = {name for name in MAIN[model] if network.layer(name).pre_relu is None}
    assert without == NO_TWIN.get(model, set())
    assert network.broken_twins() == []  # ReLU(twin) is the layer, exactly, on a random input


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return blob_photos(tmp_path_factory.mktemp("photos"), 6, seed=5)


@pytest.mark.parametrize("model", list(HAND))
def test_a_tiny_build_of_each_model_is_a_browsable_site(tmp_path, photos, model):
    first, second = list(HAND[model])
    site = tmp_path / "site"
    result = cli("build", *QUICK_CARICATURES, "--model", model, "--weights", "random", "--layers", f"{first},{second}", "--units", "0-3",
                 "--steps", "2", "--size", "48", "--objectives", "channel", "--batch-size", "2", "--top-k", "3",
                 "--images", photos, "--store", tmp_path / "store", "--out", site, "--quiet")
    assert "dataset examples: 2 layers computed" in result.stdout and "circuit: " in result.stdout
    assert "failed" not in result.stdout
    assert ("a", f"models/{model}/index.html") in parse(site / "index.html").links  # the home page lists it
    unit = site / "models" / model / first / "0" / "index.html"
    page = parse(unit)
    assert any(image["src"].endswith("channel.webp") for image in page.images)  # its feature visualization
    for _, link in page.links:  # every relative link of the unit page leads to a file of the site
        if not link.startswith(("http", "#", "mailto")):
            target = (unit.parent / link.split("#")[0]).resolve()
            assert target.exists() and site.resolve() in target.parents, link


def test_weights_that_do_not_fit_are_one_line(tmp_path):
    smaller = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), smaller)
    not_a_dict = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), not_a_dict)
    cases = [
        (["--weights", smaller], "layer1.0.conv1.weight has shape (64, 64, 3, 3), expected (64, 64, 1, 1)"),
        (["--weights", not_a_dict], "holds no state_dict"),
        (["--weights", "random", "--layers", "layer5_0"], "unknown layer 'layer5_0' for model resnet50"),
    ]
    for extra, expected in cases:
        result = cli("featurevis", "--model", "resnet50", "--units", "0", "--store", tmp_path / "store", *extra,
                     code=2)
        assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_layer_without_a_twin_is_optimised_itself_and_the_page_says_so(tmp_path):
    store, site = tmp_path / "store", tmp_path / "site"
    cli("featurevis", "--model", "inception_v3", "--weights", "random", "--layers", "mixed_6a", "--units", "0",
        "--steps", "2", "--size", "96", "--objectives", "channel", "--store", store, "--quiet")
    cli("site", "--store", store, "--out", site, "--quiet")
    text = (site / "models" / "inception_v3" / "mixed_6a" / "0" / "index.html").read_text(encoding="utf-8")
    assert "optimising mixed_6a itself: the graph has no pre-ReLU value of this layer" in text


def test_every_node_of_the_graph_can_be_picked_with_all(tmp_path):
    """`layers --all` lists every node that gives a spatial map, with its field; any of them can be built."""
    listed = cli("layers", "--model", "resnet50", "--all").stdout
    rows = {line.split()[0]: line.split() for line in listed.splitlines()[2:]}
    # layer1.0's bottleneck: 1x1 after the stem's max pool (11 px, stride 4), then its 3x3 (11 + 2 * 4 = 19 px).
    assert rows["layer1_0_conv1"][1:6] == ["branch", "64", "56x56", "4", "11"]
    assert rows["layer1_0_conv2"][1:6] == ["branch", "64", "56x56", "4", "19"]
    assert "layer1_0_conv2" not in cli("layers", "--model", "resnet50").stdout  # not in the default list
    result = cli("featurevis", "--model", "resnet50", "--weights", "random", "--layers", "layer1_0_conv2",
                 "--units", "0-1", "--steps", "2", "--size", "48", "--objectives", "channel", "--store",
                 tmp_path / "store", "--quiet")
    assert "feature visualization: 2 renders computed" in result.stdout
