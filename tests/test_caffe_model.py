"""The BVLC Caffe GoogLeNet: graph, layers, weight loading, and accuracy on real ImageNet photos."""
import csv

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.models.feature_extraction import get_graph_node_names

from microscope.network.catalogue import catalogue
from microscope.errors import UsageError
from microscope.models import get_spec
from microscope.models.inceptionv1_caffe import PARAMETER_LAYERS, SPEC, build, load_weights
from microscope.network.loaded import load_network


def test_registered():
    assert get_spec("inceptionv1-caffe") is SPEC


def test_every_layer_names_real_graph_nodes():
    _, eval_nodes = get_graph_node_names(build().eval())
    nodes = set(eval_nodes)
    names = SPEC.layer_names
    assert len(names) == len(set(names))
    for layer in SPEC.layers:
        assert "/" not in layer.name and "." not in layer.name  # names become URLs and file names
        assert set(layer.nodes) <= nodes, layer.name
        if layer.pre_relu:
            assert SPEC.layer(layer.pre_relu).kind == "pre_relu"
    assert names[:2] == ["conv1", "conv1_pre_relu"] and names[-1] == "logits"
    blocks = [layer.name for layer in SPEC.layers if layer.kind == "block"]
    assert blocks == [f"inception_{b}" for b in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")]


@pytest.fixture(scope="module")
def random_network():
    return load_network("inceptionv1-caffe", weights="random", seed=0, progress=False)


def test_catalogue_shapes(random_network):
    infos = {info.name: info for info in catalogue(random_network)}
    # Channel counts and grid sizes of the GoogLeNet paper's table 1, at 224 px.
    expected = {
        "conv1": (64, 112), "conv2_reduce": (64, 56), "conv2": (192, 56),
        "inception_3a": (256, 28), "inception_3b": (480, 28),
        "inception_4a": (512, 14), "inception_4b": (512, 14), "inception_4c": (512, 14),
        "inception_4d": (528, 14), "inception_4e": (832, 14),
        "inception_5a": (832, 7), "inception_5b": (1024, 7),
        "inception_4a_3x3_reduce": (96, 14), "inception_4a_5x5": (48, 14), "inception_4a_pool_proj": (64, 14),
    }
    for name, (channels, size) in expected.items():
        assert (infos[name].channels, infos[name].height, infos[name].width) == (channels, size, size), name
        twin = infos[infos[name].pre_relu]
        assert (twin.channels, twin.height) == (channels, size)
    assert infos["logits"].channels == 1000 and infos["logits"].rf_size is None


def test_pre_relu_twins_are_the_values_before_relu(random_network):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    names = [name for layer in SPEC.layers if layer.pre_relu for name in (layer.name, layer.pre_relu)]
    with torch.inference_mode():
        acts = random_network.activations(x, names)
    for layer in SPEC.layers:
        if layer.pre_relu:
            before, after = acts[layer.pre_relu], acts[layer.name]
            assert (before < 0).any(), layer.name  # the twin really is before the ReLU...
            assert torch.equal(torch.relu(before), after), layer.name  # ...and in the same channel order


def test_categories_follow_synset_words(shared_dir):
    lines = (shared_dir / "data" / "imagenet-labels" / "synset_words.txt").read_text().splitlines()
    assert len(SPEC.categories) == len(lines) == 1000
    assert len(set(SPEC.categories)) == 1000
    for category, line in zip(SPEC.categories, lines):
        first = line.split(" ", 1)[1].split(",")[0].strip()
        # torchvision tells the two "crane"s and "maillot"s apart by adding a word.
        assert category == first or category.startswith(first + " "), (category, line)


def test_wrong_weights_files_are_usage_errors(tmp_path):
    module = build()
    shapes = {f"{caffe}/{role}": tuple(getattr(module.get_submodule(path), role).shape)
              for path, caffe in PARAMETER_LAYERS
              for role in ("weight", "bias")}
    arrays = {key: np.zeros(shape, np.float32) for key, shape in shapes.items()}

    arrays["inception_4c/5x5/weight"] = np.zeros((64, 24, 3, 3), np.float32)
    np.savez(tmp_path / "bad_shape.npz", **arrays)
    with pytest.raises(UsageError, match=r"inception_4c/5x5/weight has shape \(64, 24, 3, 3\), expected "
                                         r"\(64, 24, 5, 5\); pass .* --weights"):
        load_weights(module, str(tmp_path / "bad_shape.npz"))

    del arrays["inception_4c/5x5/weight"]
    np.savez(tmp_path / "missing.npz", **arrays)
    with pytest.raises(UsageError, match="has no inception_4c/5x5/weight"):
        load_weights(module, str(tmp_path / "missing.npz"))

    (tmp_path / "weights.pth").write_bytes(b"")
    with pytest.raises(UsageError, match="neither .caffemodel nor .npz"):
        load_weights(module, str(tmp_path / "weights.pth"))


def test_real_weights_classify_imagenet_photos(shared_dir):
    network = load_network("inceptionv1-caffe", weights=str(shared_dir / "weights" / "bvlc_googlenet.npz"),
                           progress=False)
    root = shared_dir / "data" / "imagenet-val-1300"
    rows = list(csv.DictReader(open(root / "labels.csv")))[:64]
    # The photos are 227 px; Caffe evaluated the centre 224.
    images = torch.stack([TF.to_tensor(TF.center_crop(Image.open(root / r["file"]).convert("RGB"), 224))
                          for r in rows])
    labels = torch.tensor([int(r["class_index"]) for r in rows])
    with torch.inference_mode():
        logits = network.activations(images, ["logits"])["logits"]
    top1 = (logits.argmax(1) == labels).float().mean().item()
    top5 = (logits.topk(5, 1).indices == labels[:, None]).any(1).float().mean().item()
    # 79.8 % / 94.3 % on all 1300; a broken layer order, colour order or mean gives a few percent.
    assert top1 >= 0.7 and top5 >= 0.88, (top1, top5)
