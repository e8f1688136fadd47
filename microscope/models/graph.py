"""A network's traced graph, as the layers of a model are found in it: qualified node names (what
`Network.extractor` addresses), the output of a submodule, and a layer's pre-ReLU twin - the input of
the ReLU that makes it, or for a concatenation of ReLUs the concatenation of their inputs. A twin found
here is a candidate: `broken_twins` checks it (for `Network.broken_twins`, and `custom.py` for your own models).

`NodeExtractor` runs a model's own layers from their fx nodes; `Network` (microscope/network/loaded.py) builds on it.
It lives here, below the network, so that `custom.py` can check a spec's twins without importing the network.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import fx, nn
from torchvision.models.feature_extraction import NodePathTracer, create_feature_extractor

from microscope.models.spec import LayerSpec, Preprocessing


@dataclass
class Graph:
    """The traced graph of a built network, with the qualified names layers are addressed by."""

    nodes: list[fx.Node]
    names: dict[fx.Node, str]
    module: nn.Module

    @classmethod
    def of(cls, module: nn.Module) -> "Graph":
        tracer = NodePathTracer()
        graph = tracer.trace(module.eval())
        names = dict(tracer.node_to_qualname)
        return cls([node for node in graph.nodes if node in names], names, module)

    def shapes(self, size: int) -> dict[str, tuple[int, ...]]:
        """The output shape of every node that gives a tensor, on one random image of size x size."""
        every = [self.names[node] for node in self.nodes]
        with torch.inference_mode():
            found = create_feature_extractor(self.module.eval(), return_nodes=every)(torch.rand(1, 3, size, size))
        return {name: tuple(value.shape) for name, value in found.items() if isinstance(value, torch.Tensor)}

    def kind_of(self, node: fx.Node) -> type | None:
        return type(self.module.get_submodule(node.target)) if node.op == "call_module" else None

    def output_of(self, prefix: str) -> str:
        """The qualified name of the last node inside the submodule `prefix`: its output."""
        return [self.names[node] for node in self.nodes if self.names[node].startswith(prefix + ".")][-1]

    def twin(self, qualname: str) -> tuple[str, ...] | None:
        """The nodes whose concatenation is the layer before its ReLU, or None if it is not a ReLU (of parts)."""
        node = next(node for node in self.nodes if self.names[node] == qualname)
        found = self._twin(node)
        return None if found is None else tuple(self.names[part] for part in found)

    def is_relu(self, node: fx.Node) -> bool:
        return self.kind_of(node) is nn.ReLU or node.target in (F.relu, torch.relu, "relu")

    def _twin(self, node: fx.Node) -> list[fx.Node] | None:
        if self.is_relu(node) and isinstance(node.args[0], fx.Node) and node.args[0] in self.names:
            return [node.args[0]]
        if node.target is torch.cat and (node.args[1:] or [node.kwargs.get("dim", 0)])[0] == 1:
            parts = [self._twin(part) for part in node.args[0]]
            return None if any(part is None for part in parts) else [n for part in parts for n in part]
        return None


def layer_specs(found: list[tuple], graph: Graph, shapes: dict | None = None) -> tuple[LayerSpec, ...]:
    """Each found layer and its pre-ReLU twin where the graph has one; with `shapes`, also every other
    node of the graph that gives a spatial map, as a layer of kind "branch" (listed by `layers --all`,
    picked by name: `layer1.0.conv2` is `layer1_0_conv2`)."""
    specs = []
    for name, node, kind, description in found:
        twin = graph.twin(node) if kind != "logits" else None
        specs.append(LayerSpec(name, (node,), kind, f"{name}_pre_relu" if twin else None, description))
        if twin:
            specs.append(LayerSpec(f"{name}_pre_relu", twin, "pre_relu", None, f"{description}, before ReLU"))
    taken = {spec.name for spec in specs}
    used = {node for spec in specs if len(spec.nodes) == 1 for node in spec.nodes}
    for node in graph.nodes:
        qualname = graph.names[node]
        if node.op == "placeholder" or qualname in used or len((shapes or {}).get(qualname, ())) != 4:
            continue
        name = qualname.replace(".", "_") + ("_node" if qualname.replace(".", "_") in taken else "")
        what = graph.kind_of(node).__name__ if graph.kind_of(node) else getattr(node.target, "__name__", node.target)
        specs.append(LayerSpec(name, (qualname,), "branch", None, f"graph node {qualname} ({what})"))
        taken.add(name)
    return tuple(specs)


class NodeExtractor(nn.Module):
    """Preprocess, run the graph truncated after the deepest of `layers`, and assemble each layer from its
    fx nodes (concatenated along channels)."""

    def __init__(self, module: nn.Module, preprocessing: Preprocessing, layers: list[LayerSpec]):
        super().__init__()
        self.preprocessing = preprocessing
        mean, std = preprocessing.constants()  # buffers: they move with the module to its device, once
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.layers = list({layer.name: layer for layer in layers}.values())
        nodes = sorted({node for layer in self.layers for node in layer.nodes})
        self.graph_module = create_feature_extractor(module, return_nodes=nodes)
        _disable_inplace(self.graph_module)

    def forward(self, rgb01: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.normalised(self.preprocessing(rgb01, (self.mean, self.std)))

    def normalised(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The layers from an input already preprocessed (what an exported network takes: inbrowser/export.py)."""
        outputs = self.graph_module(x)
        found = {}
        for layer in self.layers:
            parts = [outputs[node] for node in layer.nodes]
            found[layer.name] = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return found


def _disable_inplace(graph_module: fx.GraphModule) -> None:
    # An in-place ReLU after a node we return would overwrite the pre-ReLU value we asked for.
    for node in graph_module.graph.nodes:
        if node.kwargs.get("inplace"):
            node.kwargs = {**node.kwargs, "inplace": False}
    for module in graph_module.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    graph_module.recompile()


def broken_twins(layers: list[LayerSpec], activations: Callable[[torch.Tensor, list[str]], dict],
                 input_size: int, seed: int = 0) -> list[str]:
    """The layers (of `layers`) that claim a pre-ReLU twin but do not equal ReLU(twin) on a seeded random
    input: a twin is checked, never assumed. `activations(images, names)` runs the network."""
    claimed = [layer for layer in layers if layer.pre_relu is not None and layer.relu_of_twin]
    if not claimed:
        return []
    wanted = list(dict.fromkeys(n for layer in claimed for n in (layer.name, layer.pre_relu)))
    image = torch.rand(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        found = activations(image, wanted)
    return [layer.name for layer in claimed if found[layer.name].shape != found[layer.pre_relu].shape
            or not torch.equal(found[layer.name], found[layer.pre_relu].clamp_min(0))]
