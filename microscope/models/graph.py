"""A network's traced graph, as the layers of a model are found in it: qualified node names (what
`Network.extractor` addresses), the output of a submodule, and a layer's pre-ReLU twin - the input of
the ReLU that makes it, or for a concatenation of ReLUs the concatenation of their inputs. A twin found
here is a candidate: `Network.broken_twins` (and `custom.py`, for your own models) checks it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn
from torchvision.models.feature_extraction import NodePathTracer, create_feature_extractor

from microscope.models.spec import LayerSpec


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
