"""Lucid's InceptionV1: TensorFlow's "inception5h" GoogLeNet, the network of OpenAI Microscope and the
Distill Circuits articles (conv2d0 … mixed5b; mixed4a has 508 channels, the logits 1008).

Weights are ProGamerGov's PyTorch conversion of the TensorFlow graph, `inception5h.pth`. Its state_dict
keys are those of torch-lucent's `InceptionV1` (`mixed3a_1x1_pre_relu_conv.weight`, ...), so every
convolution here is a top-level attribute of that name and the file loads strictly, unchanged. The
ReLU after a convolution is a module named after the TensorFlow op it replaces (`mixed3a_1x1`), and a
block's concatenation a module named after the block (its torch.fx node is `mixed3a.cat`): the graph's
nodes are then named as Lucid and Microscope name the layers.

Faithful to the TensorFlow graph rather than to earlier PyTorch ports:
- TensorFlow "SAME" padding at 224 px: the 7x7 stride-2 convolution pads 2 before and 3 after, and the
  stride-2 max pools pad 1 after with -inf. These are explicit `F.pad` calls, which the receptive-field
  walker understands; symmetric pads are ordinary `padding=` arguments. (At odd input sizes TensorFlow
  would pad differently; 224 px is what the network was trained and is shown at.)
- Local response normalisation: the graph's LRN ops have depth_radius 5, bias 2, alpha 1e-4, beta 0.5,
  i.e. x / (2 + 1e-4 * sum of squares over 11 channels) ** 0.5. torch's LocalResponseNorm divides alpha
  by the window size, hence alpha 11e-4 here. torch-lucent 0.1.8 uses (size 9, alpha 1e-4, k 1), a
  known mistake (greentfrapp/lucent pull request #51); captum.optim's port uses the values here.

Categories: the 1008 logits follow Lucid's inception5h label list (index 0 and 1001-1007 unused, 1-1000
in the ILSVRC2012 devkit's order, not torchvision's). We do not ship that list. If the installed
`lucent` package carries it (`lucent/modelzoo/misc/old_imagenet_labels.txt`, in lucent's repository
but not in the 0.1.8 wheel), we read it; otherwise the classes are named "class 0" … "class 1007".
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from microscope.models.state_dict import load_state_dict
from microscope.models.spec import LayerSpec, ModelSpec, Preprocessing, WeightsSpec, relu_and_twin

NUM_CLASSES = 1008

# (name, in, 1x1, 3x3 bottleneck, 3x3, 5x5 bottleneck, 5x5, pool reduce), as in the TensorFlow graph.
BLOCKS = (
    ("mixed3a", 192, 64, 96, 128, 16, 32, 32),
    ("mixed3b", 256, 128, 128, 192, 32, 96, 64),
    ("mixed4a", 480, 192, 96, 204, 16, 48, 64),
    ("mixed4b", 508, 160, 112, 224, 24, 64, 64),
    ("mixed4c", 512, 128, 128, 256, 24, 64, 64),
    ("mixed4d", 512, 112, 144, 288, 32, 64, 64),
    ("mixed4e", 528, 256, 160, 320, 32, 128, 128),
    ("mixed5a", 832, 256, 160, 320, 48, 128, 128),
    ("mixed5b", 832, 384, 192, 384, 48, 128, 128),
)
# The stride-2 max pools between stages, by the block they feed (TensorFlow op names).
POOL_BEFORE = {"mixed4a": "maxpool4", "mixed5a": "maxpool10"}
# A block's branch convolutions; the 1st, 3rd, 5th and 6th are concatenated, in this order.
BRANCHES = ("1x1", "3x3_bottleneck", "3x3", "5x5_bottleneck", "5x5", "pool_reduce")
CONCATENATED = ("1x1", "3x3", "5x5", "pool_reduce")

LRN_SIZE = 11  # TensorFlow depth_radius 5: the channel itself and 5 on either side
LRN_ALPHA = 9.999999747378752e-05 * LRN_SIZE  # the graph's float32 alpha, times the window (see above)


class Concat(nn.Module):
    """Channel concatenation as a module, so that the block's output node bears the block's name."""

    def forward(self, *branches: torch.Tensor) -> torch.Tensor:
        return torch.cat(branches, 1)


def _pad_after(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow "SAME" for a 3x3 stride-2 max pool on an even size: one row and column of -inf after.
    return F.pad(x, (0, 1, 0, 1), value=float("-inf"))


class InceptionV1(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self._conv("conv2d0", 3, 64, 7, stride=2)  # padded by hand in forward: 2 before, 3 after
        self.maxpool0 = nn.MaxPool2d(3, stride=2)
        self.localresponsenorm0 = nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA, beta=0.5, k=2.0)
        self._conv("conv2d1", 64, 64, 1)
        self._conv("conv2d2", 64, 192, 3)
        self.localresponsenorm1 = nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA, beta=0.5, k=2.0)
        self.maxpool1 = nn.MaxPool2d(3, stride=2)
        for name, cin, c1x1, c3x3_bottleneck, c3x3, c5x5_bottleneck, c5x5, pool_reduce in BLOCKS:
            if name in POOL_BEFORE:
                self.add_module(POOL_BEFORE[name], nn.MaxPool2d(3, stride=2))
            self._conv(f"{name}_1x1", cin, c1x1, 1)
            self._conv(f"{name}_3x3_bottleneck", cin, c3x3_bottleneck, 1)
            self._conv(f"{name}_3x3", c3x3_bottleneck, c3x3, 3)
            self._conv(f"{name}_5x5_bottleneck", cin, c5x5_bottleneck, 1)
            self._conv(f"{name}_5x5", c5x5_bottleneck, c5x5, 5)
            self.add_module(f"{name}_pool", nn.MaxPool2d(3, stride=1, padding=1))  # pads with -inf, as SAME does
            self._conv(f"{name}_pool_reduce", cin, pool_reduce, 1)
            self.add_module(name, Concat())
        self.softmax2_pre_activation_matmul = nn.Linear(1024, num_classes)

    def _conv(self, name: str, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        padding = 0 if stride > 1 else kernel // 2  # stride 1, odd kernel: SAME is symmetric
        self.add_module(f"{name}_pre_relu_conv", nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding))
        self.add_module(name, nn.ReLU())

    def _relu_conv(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, name)(getattr(self, f"{name}_pre_relu_conv")(x))

    def _mixed(self, name: str, x: torch.Tensor) -> torch.Tensor:
        def branch(conv: str, x: torch.Tensor) -> torch.Tensor:
            return self._relu_conv(f"{name}_{conv}", x)

        return getattr(self, name)(
            branch("1x1", x),
            branch("3x3", branch("3x3_bottleneck", x)),
            branch("5x5", branch("5x5_bottleneck", x)),
            branch("pool_reduce", getattr(self, f"{name}_pool")(x)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._relu_conv("conv2d0", F.pad(x, (2, 3, 2, 3)))
        x = self.localresponsenorm0(self.maxpool0(_pad_after(x)))
        x = self._relu_conv("conv2d2", self._relu_conv("conv2d1", x))
        x = self.maxpool1(_pad_after(self.localresponsenorm1(x)))
        for name, *_ in BLOCKS:
            if name in POOL_BEFORE:
                x = getattr(self, POOL_BEFORE[name])(_pad_after(x))
            x = self._mixed(name, x)
        # TensorFlow pools 7x7 (the whole map at 224 px); adaptive pooling is the same there and runs at any size.
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.softmax2_pre_activation_matmul(x)


def build() -> nn.Module:
    return InceptionV1()


def load_weights(module: nn.Module, path: str) -> None:
    """Fill the network from `inception5h.pth` (a state_dict with torch-lucent's key names)."""
    load_state_dict(module, path, "inceptionv1", wanted="inception5h.pth")


def lucent_labels_file() -> Path | None:
    """Lucid's inception5h labels as the installed `lucent` package may carry them (found without importing it)."""
    found = importlib.util.find_spec("lucent")
    if found is None or not found.submodule_search_locations:
        return None
    for location in found.submodule_search_locations:
        candidate = Path(location) / "modelzoo" / "misc" / "old_imagenet_labels.txt"
        if candidate.is_file():
            return candidate
    return None


def categories(labels_file: Path | None) -> tuple[str, ...]:
    """Class names by logit index, from a lucent labels file, else (and where it says nothing) "class <index>"."""
    names = [f"class {index}" for index in range(NUM_CLASSES)]
    if labels_file is None:
        return tuple(names)
    # Lines are "<wnid> <index 1..1000> <name>"; an unreadable line leaves that index generic.
    for line in labels_file.read_text(encoding="utf-8").splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) == 3 and parts[1].isdigit() and 0 < int(parts[1]) < NUM_CLASSES:
            names[int(parts[1])] = parts[2].strip()
    return tuple(names)


def _layers() -> tuple[LayerSpec, ...]:
    layers = []

    def add(name, kind, nodes, pre_nodes, description):
        layers.extend(relu_and_twin(name, kind, nodes, pre_nodes, description))

    add("conv2d0", "conv", ["conv2d0"], ["conv2d0_pre_relu_conv"], "7x7 convolution, stride 2, on the image")
    add("conv2d1", "conv", ["conv2d1"], ["conv2d1_pre_relu_conv"], "1x1 convolution")
    add("conv2d2", "conv", ["conv2d2"], ["conv2d2_pre_relu_conv"], "3x3 convolution")
    for block, *_ in BLOCKS:
        add(block, "block", [f"{block}.cat"], [f"{block}_{conv}_pre_relu_conv" for conv in CONCATENATED],
            f"inception block {block[5:]}: concatenation of the 1x1, 3x3, 5x5 and pool-reduce branches")
        for conv in BRANCHES:
            add(f"{block}_{conv}", "branch", [f"{block}_{conv}"], [f"{block}_{conv}_pre_relu_conv"],
                f"{conv.replace('_', ' ')} convolution of {block}")
    layers.append(LayerSpec("logits", ("softmax2_pre_activation_matmul",), "logits", None,
                            "softmax2_pre_activation: 1008 class scores before softmax"))
    return tuple(layers)


SPEC = ModelSpec(
    name="inceptionv1",
    title="InceptionV1 (GoogLeNet, Lucid / OpenAI Microscope)",
    description="TensorFlow's inception5h GoogLeNet as Lucid, OpenAI Microscope and the Distill Circuits "
                "articles use it; its unit numbers are the ones those publications cite.",
    build=build,
    load_weights=load_weights,
    weights=WeightsSpec(
        url="https://github.com/ProGamerGov/pytorch-old-tensorflow-models/raw/master/inception5h.pth",
        filename="inception5h.pth",
        # The upstream repository publishes no checksum; it records the file as this git blob (master).
        git_blob="119f77db85c8352960933e025312b507d9a96ed7",
        licence="Apache-2.0 (TensorFlow's inception5h model, as Lucid publishes it); PyTorch conversion by ProGamerGov",
        notes="a state_dict with torch-lucent's InceptionV1 key names",
    ),
    # Lucid feeds RGB in [0, 255] minus 117 (image_value_range (-117, 138)).
    preprocessing=Preprocessing(channel_order="RGB", scale=255.0, mean=(117.0, 117.0, 117.0),
                                std=(1.0, 1.0, 1.0), resize=256, crop=224),
    categories=categories(lucent_labels_file()),
    layers=_layers(),
    input_size=224,
)
