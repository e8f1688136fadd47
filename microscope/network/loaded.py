"""A loaded network and its activations: the one place that runs a model.

`Network.extractor(layers)` returns a module that maps RGB images in [0, 1] to a dict of the chosen
layers' activations. It is built with torch.fx (torchvision's feature extraction), so the graph is
truncated after the deepest chosen layer: nothing past it is computed, in inference or optimisation.

Besides the model's own layers a network can carry derived layers (`Network.derive`): a module
applied to another layer's activation at every position, such as a sparse autoencoder's features
(microscope/sae). Every stage sees them as layers like the others.
"""
from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from microscope.errors import UsageError
from microscope.models import LayerSpec, ModelSpec, get_spec
from microscope.models.graph import NodeExtractor, broken_twins
from microscope.network.weights import resolve_weights


@dataclass(frozen=True)
class Derived:
    """A layer computed from another layer's activation by `module` ((N, C, H, W) -> (N, F, H, W))."""

    spec: LayerSpec
    source: str
    module: nn.Module
    key: str = ""  # what determines the module (e.g. the SAE's key): part of every result's identity


class LayerExtractor(nn.Module):
    """The model's own layers from their fx nodes (`NodeExtractor`), and the derived layers computed from them."""

    def __init__(self, network: "Network", layers: list[LayerSpec]):
        super().__init__()
        self.layers = layers
        self.derived = nn.ModuleList()  # by position: any layer name, no key to escape
        self.sources: dict[str, tuple[str, int]] = {}  # derived layer -> (source layer, its module's position)
        base = []
        for layer in layers:
            found = network.derived.get(layer.name)
            if found is None:
                base.append(layer)
            else:
                self.sources[layer.name] = (found.source, len(self.derived))
                self.derived.append(found.module)
                base.append(network.layer(found.source))
        self.base = NodeExtractor(network.module, network.spec.preprocessing, base)

    @property
    def graph_module(self) -> torch.fx.GraphModule:
        """The graph truncated after the deepest layer asked for (catalogue.py walks receptive fields on it)."""
        return self.base.graph_module

    def forward(self, rgb01: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.layers_of(self.base(rgb01))

    def normalised(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The layers from an input already preprocessed (the model's `Preprocessing` done by the caller)."""
        return self.layers_of(self.base.normalised(x))

    def layers_of(self, found: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each asked-for layer from the base layers' activations: derived ones computed from their source."""
        result = {}
        for layer in self.layers:
            if layer.name in self.sources:
                source, position = self.sources[layer.name]
                result[layer.name] = self.derived[position](found[source])
            else:
                result[layer.name] = found[layer.name]
        return result


@dataclass
class Network:
    """A model of the zoo with its weights loaded, frozen, in eval mode."""

    spec: ModelSpec
    module: nn.Module
    weights_id: str  # sha256 of the weights file, or "random-seed<N>"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    derived: dict[str, Derived] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # derived layer -> why it cannot be used
    _extractors: dict = field(default_factory=dict, repr=False)

    @property
    def layers(self) -> list[LayerSpec]:
        """Every layer: the model's, then the derived ones."""
        return list(self.spec.layers) + [found.spec for found in self.derived.values()]

    def derive(self, spec: LayerSpec, source: str, module: nn.Module, key: str = "") -> None:
        """Add a layer computed from `source`'s activation (a sparse autoencoder's features, say)."""
        self.layer(source)
        self.derived[spec.name] = Derived(spec, source, module.to(self.device).eval().requires_grad_(False), key)
        self.refused.pop(spec.name, None)
        self._extractors.clear()

    def derived_key(self, name: str) -> str | None:
        """The key of a derived layer's module; None for the model's own layers."""
        found = self.derived.get(name)
        return None if found is None else found.key

    def layer(self, name: str) -> LayerSpec:
        if "/" in name and name.replace("/", "_") in {**self.derived, **self.refused}:
            name = name.replace("/", "_")  # inception_3b/sae, as papers write it, is inception_3b_sae
        if name in self.derived:
            return self.derived[name].spec
        if name in self.refused:
            raise UsageError(self.refused[name])
        try:
            return self.spec.layer(name)
        except KeyError:
            main = [layer.name for layer in self.spec.layers if layer.kind not in ("branch", "pre_relu")]
            close = difflib.get_close_matches(name, [layer.name for layer in self.layers] + list(self.refused), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UsageError(
                f"unknown layer {name!r} for model {self.spec.name}; {hint}valid layers: {', '.join(main)} "
                f"(branches and pre-ReLU layers: `build.py layers --model {self.spec.name} --all`)"
            ) from None

    def extractor(self, layer_names: list[str] | tuple[str, ...]) -> LayerExtractor:
        key = tuple(layer_names)
        if key not in self._extractors:
            layers = [self.layer(name) for name in key]
            self._extractors[key] = LayerExtractor(self, layers).to(self.device).eval()
        return self._extractors[key]

    def activations(self, rgb01: torch.Tensor, layer_names: list[str]) -> dict[str, torch.Tensor]:
        return self.extractor(layer_names)(rgb01.to(self.device))

    def broken_twins(self, names: list[str] | None = None, seed: int = 0) -> list[str]:
        """The layers (of `names`, default all) that claim a pre-ReLU twin but do not equal ReLU(twin)
        on a seeded random input: a twin is checked, never assumed."""
        layers = [self.layer(name) for name in names or [layer.name for layer in self.layers]]
        return broken_twins(layers, self.activations, self.spec.input_size, seed)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def non_finite(module: nn.Module) -> tuple[str, str] | None:
    """(name, "NaN" or "infinite") of the first tensor of the module's weights that is not finite, or None."""
    for name, tensor in module.state_dict().items():
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            return name, "NaN" if bool(torch.isnan(tensor).any()) else "infinite"
    return None


def load_network(model: str, weights: str | None = None, device: str = "cpu", seed: int = 0,
                 progress: bool = True) -> Network:
    """Build a model of the zoo and fill it: `weights` is a path, "random", or None (cache/download)."""
    spec = get_spec(model)
    torch.manual_seed(seed)
    module = spec.build()
    if weights == "random":
        weights_id = f"random-seed{seed}"
    else:
        path = resolve_weights(spec, weights, progress=progress)
        try:
            spec.load_weights(module, str(path))
        except UsageError:
            raise
        except Exception as error:  # a file of the wrong model or a corrupt file
            raise UsageError(
                f"cannot load weights {path} into {spec.name}: {error}; pass the right file with --weights"
            ) from None
        found = non_finite(module)
        if found is not None:
            raise UsageError(f"weights file {path} holds {found[1]} values in {found[0]}; every render and example "
                             "would be NaN: pass weights of a finished, healthy training run with --weights")
        weights_id = file_sha256(path)
    module.eval().requires_grad_(False)
    dev = resolve_device(device)
    return Network(spec=spec, module=module.to(dev), weights_id=weights_id, device=dev)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but no CUDA device is available; use --device cpu")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise UsageError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)
