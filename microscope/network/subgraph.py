"""The network between two layers as its own module: the source layer's activation in, a later layer out.

Traced with torch.fx (torchvision's feature extractor) up to the target's nodes, then cut at the
source's: its nodes are replaced by the graph's input, and everything that only fed them is dropped.
Circuits linearise this graph (circuits/linear.py); the atlas differentiates the logits through it
(atlas/attribution.py) without running the layers below the source again.
"""
from __future__ import annotations

import operator

import torch
from torch import fx
from torchvision.models.feature_extraction import create_feature_extractor

from microscope.errors import UsageError


def cut_graph(network, source: str, target: str, why: str) -> fx.GraphModule:
    """`module(x)` maps `source`'s activation (N, C, H, W) to {node: tensor} of `target`'s nodes.

    `why` finishes the one line said when `target` depends on more than `source` (a connection that
    skips it): "<target> depends on more than <source> (a connection skips it), so <why>"."""
    source_spec, target_spec = network.layer(source), network.layer(target)
    names = list(dict.fromkeys(source_spec.nodes + target_spec.nodes))
    graph_module = create_feature_extractor(network.module, return_nodes=names)
    graph = graph_module.graph
    output = next(node for node in graph.nodes if node.op == "output")
    named = dict(output.args[0])
    image = next(node for node in graph.nodes if node.op == "placeholder")
    with graph.inserting_after(image):
        x = graph.placeholder("previous")
    widths = _source_widths(network, graph_module, source_spec) if len(source_spec.nodes) > 1 else [None]
    start = 0
    for name, width in zip(source_spec.nodes, widths):
        if width is None:
            replacement = x
        else:
            with graph.inserting_after(x):
                replacement = graph.call_function(operator.getitem, (x, (slice(None), slice(start, start + width))))
            start += width
        named[name].replace_all_uses_with(replacement)
    output.args = ({name: named[name] for name in target_spec.nodes},)
    graph.eliminate_dead_code()
    if image.users:
        raise UsageError(f"{target} depends on more than {source} (a connection skips it), so {why}")
    graph.erase_node(image)
    graph_module.recompile()
    return graph_module.eval().requires_grad_(False)


def _source_widths(network, graph_module, source) -> list[int]:
    """Channels of each node of a layer made of several (concatenated) nodes."""
    size = network.spec.input_size
    with torch.no_grad():
        found = graph_module(torch.zeros(1, 3, size, size, device=network.device))
    return [int(found[name].shape[1]) for name in source.nodes]


def concatenated(parts: dict, names) -> torch.Tensor:
    """A layer made of several nodes, as the network's layers are: its nodes' outputs along channels."""
    found = [parts[name] for name in names]
    return found[0] if len(found) == 1 else torch.cat(found, dim=1)
