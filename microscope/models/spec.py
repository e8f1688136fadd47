"""Models described as data: where the weights come from, how inputs are prepared, which layers exist.

A `ModelSpec` is everything the pipeline needs to know about an architecture without running it.
Channel counts, strides and receptive fields are *not* typed in here: `microscope.network.catalogue` computes
them from the built network.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Preprocessing:
    """Turns RGB images in [0, 1] (N, 3, H, W) into what the network was trained on."""

    channel_order: str = "RGB"  # "RGB" or "BGR": order the network expects
    scale: float = 1.0  # pixel range after scaling is [0, scale]
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # in channel_order, in scaled units
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: int = 256  # evaluation view: shorter side resized to `resize`, centre crop `crop`
    crop: int = 224

    def __call__(self, rgb01: torch.Tensor, constants: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """`constants`: `self.constants()` already on the images' device (a module keeps them as buffers:
        made here from the tuples, they would be a host-to-device copy at every call, on a GPU)."""
        x = rgb01
        if self.channel_order == "BGR":
            x = x.flip(1)
        mean, std = constants if constants is not None else self.constants()
        return (x * self.scale - mean.to(x.device, x.dtype)) / std.to(x.device, x.dtype)

    def constants(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and the std as (1, 3, 1, 1) float32 tensors on the CPU."""
        return (torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1),
                torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1))


@dataclass(frozen=True)
class WeightsSpec:
    """One set of published weights: where to get them and how to check them."""

    url: str
    filename: str  # name in the cache directory
    sha256: str | None = None  # full hex digest, or a prefix of it (torchvision publishes 8 hex digits)
    sha1: str | None = None  # some upstream files are only published with a sha1
    # A file kept in a git repository is named by its blob id, the SHA-1 of b"blob <size>\0" + content:
    # what a repository that publishes no checksum still records (and shows) for the file.
    git_blob: str | None = None
    size: int | None = None  # bytes, for the progress bar when the server gives none
    licence: str = ""
    notes: str = ""

    def __post_init__(self):
        if not (self.sha256 or self.sha1 or self.git_blob):  # weights are never used unverified
            raise ValueError(f"weights {self.filename} carry no checksum; give sha256, sha1 or git_blob")


@dataclass(frozen=True)
class LayerSpec:
    """A layer a user can pick: a named activation of the network.

    `nodes` are torch.fx node names (as torchvision.models.feature_extraction names them) whose
    outputs, concatenated along channels, form the activation. A block's pre-ReLU value, for example,
    is the concatenation of its branches' last convolutions.
    """

    name: str
    nodes: tuple[str, ...]
    kind: str = "block"  # "conv", "block", "branch", "logits" (and "sae" for derived layers)
    pre_relu: str | None = None  # name of this layer's pre-ReLU twin, used by feature visualization
    description: str = ""
    relu_of_twin: bool = True  # the layer equals ReLU(twin) element for element (not so for a TopK code)


def relu_and_twin(name: str, kind: str, nodes, pre_nodes, description: str) -> tuple[LayerSpec, LayerSpec]:
    """A layer after its ReLU and its pre-ReLU twin `<name>_pre_relu` (what feature visualization optimises)."""
    return (LayerSpec(name, tuple(nodes), kind, f"{name}_pre_relu", description),
            LayerSpec(f"{name}_pre_relu", tuple(pre_nodes), "pre_relu", None, f"{description}, before ReLU"))


@dataclass(frozen=True)
class ModelSpec:
    name: str
    title: str
    description: str
    build: Callable[[], torch.nn.Module]  # architecture with uninitialised (but seeded) weights
    load_weights: Callable[[torch.nn.Module, str], None]  # fills the network from a local file
    weights: WeightsSpec | None  # None: weights come from elsewhere (e.g. torchvision's own API)
    preprocessing: Preprocessing
    categories: tuple[str, ...]  # class names, index = logit index
    layers: tuple[LayerSpec, ...]
    input_size: int = 224

    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]
