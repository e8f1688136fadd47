"""torchvision's GoogLeNet with its IMAGENET1K_V1 weights (ImageNet top-1 69.8 %).

Everything about the weights comes from torchvision's own weights API (`GoogLeNet_Weights`): the url,
the checksum prefix in the file name, the class names and the normalisation. Like torchvision's builder
for those weights we set `transform_input=True`: the network re-normalises ImageNet-normalised input
itself, as the ported weights expect.

Differences from the paper's and Caffe's InceptionV1 that show in the catalogue: every convolution is
followed by batch norm (the pre-ReLU value of a unit is its batch-norm output), there is no LRN, and the
"5x5" branch is a 3x3 convolution (a known torchvision quirk, pytorch/vision#906). Branch names follow
torchvision: branch1 = 1x1, branch2 = 1x1 reduce then 3x3, branch3 = 1x1 reduce then "5x5" (3x3),
branch4 = 3x3 max pool then 1x1 projection.

torchvision's ReLUs are in-place functional calls; `Network.extractor` turns in-place off so the batch
norm nodes returned as pre-ReLU layers keep their negative values.
"""
from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import urlparse

import torchvision
from torch import nn

from microscope.models.state_dict import load_state_dict
from microscope.models.spec import LayerSpec, ModelSpec, Preprocessing, WeightsSpec, relu_and_twin

TORCHVISION_WEIGHTS = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1
BLOCKS = ("inception3a", "inception3b", "inception4a", "inception4b", "inception4c",
          "inception4d", "inception4e", "inception5a", "inception5b")
# The training-only auxiliary classifiers: in the published file, not in the network we build.
AUX_PREFIXES = ("aux1.", "aux2.")


def build() -> nn.Module:
    return torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=True, init_weights=False)


def load_weights(module: nn.Module, path: str) -> None:
    """Fill the network from torchvision's googlenet-1378be20.pth (its aux1/aux2 entries are dropped)."""
    load_state_dict(module, path, "googlenet", drop=AUX_PREFIXES, wanted=_weights().filename)


def _weights() -> WeightsSpec:
    filename = PurePosixPath(urlparse(TORCHVISION_WEIGHTS.url).path).name  # googlenet-1378be20.pth
    # torchvision's convention: the name ends in the first 8 hex digits of the file's sha256.
    digest_prefix = filename.rsplit(".", 1)[0].rsplit("-", 1)[-1]
    return WeightsSpec(
        url=TORCHVISION_WEIGHTS.url,
        filename=filename,
        sha256=digest_prefix,
        licence="torchvision (BSD-3-Clause); weights ported from the GoogLeNet paper, trained on ImageNet",
        notes="torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1",
    )


def _preprocessing() -> Preprocessing:
    transforms = TORCHVISION_WEIGHTS.transforms()
    return Preprocessing(channel_order="RGB", scale=1.0, mean=tuple(transforms.mean), std=tuple(transforms.std),
                         resize=transforms.resize_size[0], crop=transforms.crop_size[0])


def _layers() -> tuple[LayerSpec, ...]:
    layers = []

    def add(name, kind, conv_block, description):
        # A torchvision BasicConv2d `x` has fx nodes x.conv, x.bn and x.relu (the unit's value after ReLU).
        layers.extend(relu_and_twin(name, kind, [f"{conv_block}.relu"], [f"{conv_block}.bn"], description))

    add("conv1", "conv", "conv1", "7x7 convolution, stride 2, on the image")
    add("conv2", "conv", "conv2", "1x1 convolution")
    add("conv3", "conv", "conv3", "3x3 convolution")
    for block in BLOCKS:
        ends = (f"{block}.branch1", f"{block}.branch2.1", f"{block}.branch3.1", f"{block}.branch4.1")
        layers.append(LayerSpec(block, (f"{block}.cat",), "block", f"{block}_pre_relu",
                                f"inception block {block[9:]}: concatenation of branches 1-4"))
        layers.append(LayerSpec(f"{block}_pre_relu", tuple(f"{end}.bn" for end in ends), "pre_relu", None,
                                f"inception block {block[9:]}, before ReLU"))
        add(f"{block}_branch1", "branch", f"{block}.branch1", f"1x1 convolution branch of {block}")
        add(f"{block}_branch2_reduce", "branch", f"{block}.branch2.0", f"1x1 reduction before {block}'s 3x3 branch")
        add(f"{block}_branch2", "branch", f"{block}.branch2.1", f"3x3 convolution branch of {block}")
        add(f"{block}_branch3_reduce", "branch", f"{block}.branch3.0", f"1x1 reduction before {block}'s branch3")
        add(f"{block}_branch3", "branch", f"{block}.branch3.1",
            f"branch3 of {block}: a 3x3 convolution where the paper has 5x5")
        add(f"{block}_branch4", "branch", f"{block}.branch4.1", f"1x1 projection of {block}'s max-pool branch")
    layers.append(LayerSpec("logits", ("fc",), "logits", None, "fc: 1000 class scores before softmax"))
    return tuple(layers)


SPEC = ModelSpec(
    name="googlenet",
    title="GoogLeNet (torchvision)",
    description="torchvision's GoogLeNet with batch norm, IMAGENET1K_V1 weights.",
    build=build,
    load_weights=load_weights,
    weights=_weights(),
    preprocessing=_preprocessing(),
    categories=tuple(TORCHVISION_WEIGHTS.meta["categories"]),
    layers=_layers(),
    input_size=224,
)
