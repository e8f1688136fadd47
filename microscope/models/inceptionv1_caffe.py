"""InceptionV1 as BVLC trained it in Caffe ("bvlc_googlenet"; Lucid calls it InceptionV1_caffe).

The architecture follows Caffe's deploy.prototxt of bvlc_googlenet layer for layer. Every ReLU is its
own non-inplace module, so that in the torch.fx graph a convolution's output node *is* the pre-ReLU
value that feature visualization optimises. The auxiliary classifiers (loss1, loss2) are training-only
and left out.

Weights come as the official `.caffemodel` (downloaded and checked) or as an `.npz` with one array per
Caffe blob (`<caffe layer>/weight`, `<caffe layer>/bias`), the format of ../shared/weights.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models._meta import _IMAGENET_CATEGORIES

from microscope.errors import UsageError
from microscope.models.caffemodel import read_caffemodel
from microscope.models.spec import LayerSpec, ModelSpec, Preprocessing, WeightsSpec, relu_and_twin

# (name, in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj), as in the paper's table 1.
BLOCKS = (
    ("inception_3a", 192, 64, 96, 128, 16, 32, 32),
    ("inception_3b", 256, 128, 128, 192, 32, 96, 64),
    ("inception_4a", 480, 192, 96, 208, 16, 48, 64),
    ("inception_4b", 512, 160, 112, 224, 24, 64, 64),
    ("inception_4c", 512, 128, 128, 256, 24, 64, 64),
    ("inception_4d", 512, 112, 144, 288, 32, 64, 64),
    ("inception_4e", 528, 256, 160, 320, 32, 128, 128),
    ("inception_5a", 832, 256, 160, 320, 32, 128, 128),
    ("inception_5b", 832, 384, 192, 384, 48, 128, 128),
)
# A block's convolutions in Caffe's names; the first, third, fifth and sixth are concatenated, in this order.
BRANCH_CONVS = ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj")
CONCAT_CONVS = ("1x1", "3x3", "5x5", "pool_proj")


class Inception(nn.Module):
    def __init__(self, in_channels, c1x1, c3x3_reduce, c3x3, c5x5_reduce, c5x5, pool_proj):
        super().__init__()
        self.conv_1x1 = nn.Conv2d(in_channels, c1x1, 1)
        self.relu_1x1 = nn.ReLU()
        self.conv_3x3_reduce = nn.Conv2d(in_channels, c3x3_reduce, 1)
        self.relu_3x3_reduce = nn.ReLU()
        self.conv_3x3 = nn.Conv2d(c3x3_reduce, c3x3, 3, padding=1)
        self.relu_3x3 = nn.ReLU()
        self.conv_5x5_reduce = nn.Conv2d(in_channels, c5x5_reduce, 1)
        self.relu_5x5_reduce = nn.ReLU()
        self.conv_5x5 = nn.Conv2d(c5x5_reduce, c5x5, 5, padding=2)
        self.relu_5x5 = nn.ReLU()
        self.pool = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        self.conv_pool_proj = nn.Conv2d(in_channels, pool_proj, 1)
        self.relu_pool_proj = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch_1x1 = self.relu_1x1(self.conv_1x1(x))
        branch_3x3 = self.relu_3x3(self.conv_3x3(self.relu_3x3_reduce(self.conv_3x3_reduce(x))))
        branch_5x5 = self.relu_5x5(self.conv_5x5(self.relu_5x5_reduce(self.conv_5x5_reduce(x))))
        branch_pool = self.relu_pool_proj(self.conv_pool_proj(self.pool(x)))
        return torch.cat([branch_1x1, branch_3x3, branch_5x5, branch_pool], 1)


class InceptionV1Caffe(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # Caffe rounds pooled sizes up
        self.norm1 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.conv2_reduce = nn.Conv2d(64, 64, 1)
        self.relu2_reduce = nn.ReLU()
        self.conv2 = nn.Conv2d(64, 192, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.norm2 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.pool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        blocks = {name: Inception(*sizes) for name, *sizes in BLOCKS}
        self.inception_3a, self.inception_3b = blocks["inception_3a"], blocks["inception_3b"]
        self.pool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception_4a, self.inception_4b = blocks["inception_4a"], blocks["inception_4b"]
        self.inception_4c, self.inception_4d = blocks["inception_4c"], blocks["inception_4d"]
        self.inception_4e = blocks["inception_4e"]
        self.pool4 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception_5a, self.inception_5b = blocks["inception_5a"], blocks["inception_5b"]
        # Caffe pools 7x7 at 224 px; adaptive pooling gives the same there and also runs at other sizes.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.4)
        self.classifier = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.relu2_reduce(self.conv2_reduce(self.norm1(x)))
        x = self.pool2(self.norm2(self.relu2(self.conv2(x))))
        x = self.pool3(self.inception_3b(self.inception_3a(x)))
        x = self.inception_4c(self.inception_4b(self.inception_4a(x)))
        x = self.pool4(self.inception_4e(self.inception_4d(x)))
        x = self.avgpool(self.inception_5b(self.inception_5a(x)))
        return self.classifier(self.dropout(torch.flatten(x, 1)))


def build() -> nn.Module:
    return InceptionV1Caffe()


# Which Caffe layer fills which module: (module path, Caffe layer name).
STEM_CONVS = (("conv1", "conv1/7x7_s2"), ("conv2_reduce", "conv2/3x3_reduce"), ("conv2", "conv2/3x3"))
PARAMETER_LAYERS = (
    STEM_CONVS
    + tuple((f"{block}.conv_{conv}", f"{block}/{conv}") for block, *_ in BLOCKS for conv in BRANCH_CONVS)
    + (("classifier", "loss3/classifier"),)
)


def _read_blobs(path: Path) -> dict[str, np.ndarray]:
    """`<caffe layer>/weight|bias` -> array, from an .npz or a .caffemodel."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    if path.suffix == ".caffemodel":
        arrays = {}
        for layer, blobs in read_caffemodel(path).items():
            for role, blob in zip(("weight", "bias"), blobs):
                arrays[f"{layer}/{role}"] = blob
        return arrays
    raise UsageError(
        f"weights file {path} is neither .caffemodel nor .npz; pass bvlc_googlenet weights with --weights"
    )


def _squeeze_leading(shape: tuple[int, ...]) -> tuple[int, ...]:
    # Legacy Caffe blobs are always 4-d (num, channels, height, width): a bias of 64 is (1, 1, 1, 64).
    shape = tuple(shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def load_weights(module: nn.Module, path: str) -> None:
    path = Path(path)
    arrays = _read_blobs(path)
    state = {}
    for module_path, caffe_name in PARAMETER_LAYERS:
        layer = module.get_submodule(module_path)
        for role, parameter in (("weight", layer.weight), ("bias", layer.bias)):
            key = f"{caffe_name}/{role}"
            if key not in arrays:
                raise UsageError(f"weights file {path} has no {key}; pass bvlc_googlenet weights with --weights")
            array = arrays[key]
            if _squeeze_leading(array.shape) != _squeeze_leading(parameter.shape):
                raise UsageError(
                    f"weights file {path}: {key} has shape {tuple(array.shape)}, expected "
                    f"{tuple(parameter.shape)}; pass bvlc_googlenet weights with --weights"
                )
            array = np.asarray(array, dtype=np.float32).reshape(parameter.shape)
            state[f"{module_path}.{role}"] = torch.from_numpy(array)
    module.load_state_dict(state)


def _layers() -> tuple[LayerSpec, ...]:
    layers = []

    def add(name, kind, nodes, pre_nodes, description):
        layers.extend(relu_and_twin(name, kind, nodes, pre_nodes, description))

    add("conv1", "conv", ["relu1"], ["conv1"], "Caffe conv1/7x7_s2: 7x7 convolution, stride 2")
    add("conv2_reduce", "conv", ["relu2_reduce"], ["conv2_reduce"], "Caffe conv2/3x3_reduce: 1x1 convolution")
    add("conv2", "conv", ["relu2"], ["conv2"], "Caffe conv2/3x3: 3x3 convolution")
    for block, *_ in BLOCKS:
        add(block, "block", [f"{block}.cat"], [f"{block}.conv_{conv}" for conv in CONCAT_CONVS],
            f"Caffe {block}/output: concatenation of the 1x1, 3x3, 5x5 and pool-projection branches")
        for conv in BRANCH_CONVS:
            add(f"{block}_{conv}", "branch", [f"{block}.relu_{conv}"], [f"{block}.conv_{conv}"],
                f"Caffe {block}/{conv}: a branch convolution of {block}")
    layers.append(LayerSpec("logits", ("classifier",), "logits", None,
                            "Caffe loss3/classifier: class scores before softmax"))
    return tuple(layers)


SPEC = ModelSpec(
    name="inceptionv1-caffe",
    title="InceptionV1 (GoogLeNet, BVLC Caffe)",
    description="GoogLeNet as trained by BVLC in Caffe (bvlc_googlenet), the network Lucid calls InceptionV1_caffe.",
    build=build,
    load_weights=load_weights,
    weights=WeightsSpec(
        url="http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel",
        filename="bvlc_googlenet.caffemodel",
        sha1="405fc5acd08a3bb12de8ee5e23a96bec22f08204",
        licence="BVLC model zoo: released for unrestricted use",
        notes="also accepts an .npz with one array per Caffe blob (<caffe layer>/weight, <caffe layer>/bias)",
    ),
    preprocessing=Preprocessing(channel_order="BGR", scale=255.0, mean=(104.0, 117.0, 123.0),
                                std=(1.0, 1.0, 1.0), resize=256, crop=224),
    categories=tuple(_IMAGENET_CATEGORIES),
    layers=_layers(),
    input_size=224,
)
