"""torchvision's classifiers as models of the zoo: AlexNet, VGG19, ResNet-50 and Inception v3.

Everything about the weights comes from torchvision's weights API (url, the sha256 prefix in the file
name, class names, the evaluation transform). The layers are found in the traced graph, not typed in:
AlexNet and VGG show every ReLU of their convolutional stages, ResNet every block's output, Inception
v3 its stem convolutions and every Mixed block. A layer's pre-ReLU twin is found in the graph too: the
input of the ReLU that makes it, or for a concatenation of ReLUs the concatenation of their inputs
(tests/test_receptive_field.py checks on a random input that ReLU(twin) is the layer, exactly).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import PurePosixPath
from typing import Callable
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from microscope.models.graph import Graph, layer_specs
from microscope.models.spec import ModelSpec, Preprocessing, WeightsSpec
from microscope.models.state_dict import load_state_dict


@dataclass(frozen=True)
class Entry:
    name: str
    title: str
    builder: str  # the function of torchvision.models
    weights: str  # its weights enum member, e.g. "AlexNet_Weights.IMAGENET1K_V1"
    layers: Callable  # (Graph) -> [(name, output qualname, kind, description)]
    options: dict = field(default_factory=dict)  # builder arguments the published weights expect
    drop: tuple[str, ...] = ()  # prefixes of published keys the network we build does not have

    def weights_enum(self):
        enum, member = self.weights.split(".")
        return getattr(getattr(torchvision.models, enum), member)

    def build(self) -> nn.Module:
        return getattr(torchvision.models, self.builder)(weights=None, **self.options)


def conv_stages(graph: Graph, by_block: bool) -> list[tuple]:
    """AlexNet, VGG: every ReLU of `features`, named convN, or convB_I by blocks between max pools (VGG)."""
    stages, block, index = [], 1, 0
    for node in (node for node in graph.nodes if graph.names[node].startswith("features.")):
        kind = graph.kind_of(node)
        if kind is nn.MaxPool2d:
            block, index = block + 1, 0
        elif kind is nn.ReLU:
            index += 1
            name = f"conv{block}_{index}" if by_block else f"conv{len(stages) + 1}"
            stages.append((name, graph.names[node], "conv", f"ReLU of {graph.names[node.args[0]]}, a convolution"))
    return stages + [("logits", graph.names[graph.nodes[-1]], "logits", "class scores before softmax")]


def resnet_blocks(graph: Graph) -> list[tuple]:
    """ResNet: the stem's ReLU, then every residual block's output (after its last ReLU)."""
    found = [("conv1", "relu", "conv", "7x7 convolution, stride 2, batch norm, ReLU")]
    for stage in range(1, 5):
        blocks = getattr(graph.module, f"layer{stage}")
        for index in range(len(blocks)):
            found.append((f"layer{stage}_{index}", graph.output_of(f"layer{stage}.{index}"), "block",
                          f"residual block {index} of stage {stage}: ReLU of its convolutions plus the shortcut"))
    return found + [("logits", "fc", "logits", "fc: class scores before softmax")]


def inception_blocks(graph: Graph) -> list[tuple]:
    """Inception v3: the stem's convolutions (each with batch norm and ReLU), then every Mixed block."""
    found = []
    for name, module in graph.module.named_children():
        if name.startswith("Conv2d_"):
            found.append((name.lower(), graph.output_of(name), "conv", f"{name}: convolution, batch norm, ReLU"))
        elif name.startswith("Mixed_"):
            found.append((name.lower(), graph.output_of(name), "block",
                          f"inception block {name[6:]}: concatenation of its branches"))
    return found + [("logits", "fc", "logits", "fc: class scores before softmax")]


ENTRIES = (
    Entry("alexnet", "AlexNet (torchvision)", "alexnet", "AlexNet_Weights.IMAGENET1K_V1",
          partial(conv_stages, by_block=False)),
    Entry("vgg19", "VGG19 (torchvision)", "vgg19", "VGG19_Weights.IMAGENET1K_V1", partial(conv_stages, by_block=True)),
    Entry("resnet50", "ResNet-50 (torchvision)", "resnet50", "ResNet50_Weights.IMAGENET1K_V1", resnet_blocks),
    Entry("inception_v3", "Inception v3 (torchvision)", "inception_v3", "Inception_V3_Weights.IMAGENET1K_V1",
          inception_blocks, {"aux_logits": False, "transform_input": True, "init_weights": False}, ("AuxLogits.",)),
)


@lru_cache(maxsize=None)
def spec_of(name: str) -> ModelSpec:
    entry = next(entry for entry in ENTRIES if entry.name == name)
    weights = entry.weights_enum()
    filename = PurePosixPath(urlparse(weights.url).path).name  # e.g. alexnet-owt-7be5be79.pth
    transforms = weights.transforms()
    torch.manual_seed(0)
    graph = Graph.of(entry.build())
    return ModelSpec(
        name=entry.name, title=entry.title,
        description=f"torchvision's {entry.builder} with its {entry.weights} weights; layers found in its graph.",
        build=entry.build,
        load_weights=lambda module, path: load_state_dict(module, path, entry.name, entry.drop),
        # torchvision's convention: the file name ends in the first 8 hex digits of its sha256.
        weights=WeightsSpec(url=weights.url, filename=filename, sha256=filename.rsplit(".", 1)[0].rsplit("-", 1)[-1],
                            licence="torchvision (BSD-3-Clause); trained on ImageNet", notes=entry.weights),
        preprocessing=Preprocessing(channel_order="RGB", scale=1.0, mean=tuple(transforms.mean),
                                    std=tuple(transforms.std), resize=transforms.resize_size[0],
                                    crop=transforms.crop_size[0]),
        categories=tuple(weights.meta["categories"]),
        layers=layer_specs(entry.layers(graph), graph, graph.shapes(transforms.crop_size[0])),
        input_size=transforms.crop_size[0],
    )

