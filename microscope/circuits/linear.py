"""The network between two layers, made linear: the ground on which expanded weights are defined.

Distill's "Visualizing Weights" reads the effect of a unit of layer P on a unit of the next layer L
through everything in between - 1x1 reductions, pool projections, pooling - by linearising it: every
ReLU becomes the identity and every max pool an average pool over the same window. We do that to the
network's own torch.fx graph: trace it up to L's pre-activation, cut it at P's output (which becomes
the graph's input), and rewrite the nodes in between. Local response normalisation, which old
networks put between their first layers, becomes its slope at zero, x / k^beta (the identity for
Caffe's k = 1). Anything else that is not linear (a sigmoid, GELU, an attention block) raises NotLinear naming
it - a silently wrong linearisation would be worse than none - and the circuits view skips that
pair of layers, saying why on their pages.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from microscope.errors import UsageError
from microscope.network.receptive_field import GLOBAL, Field, graph_fields, union
from microscope.network.subgraph import concatenated, cut_graph

PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Dropout, nn.Identity)  # identity in the linearised net
LINEAR_MODULES = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten,
                  nn.ZeroPad2d, nn.ConstantPad2d)  # BatchNorm in eval mode is affine
PASS_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.leaky_relu, F.dropout, torch.dropout}
MAX_POOLS = {F.max_pool2d, torch.max_pool2d}
LINEAR_FUNCTIONS = {torch.cat, torch.flatten, operator.getitem, operator.add, F.adaptive_avg_pool2d, F.avg_pool2d,
                    F.linear, F.conv2d, torch.mean, F.pad, torch.add}
LINEAR_METHODS = {"view", "reshape", "flatten", "mean", "contiguous", "size", "permute", "transpose", "unsqueeze",
                  "squeeze"}
PASS_METHODS = {"relu", "relu_"}


class NotLinear(UsageError):
    """The network between two layers cannot be linearised: the circuits view skips the pair and says why."""


@dataclass
class LinearPair:
    """P's activation -> L's pre-activation, linearised: `module(x)` maps (N, C_in, S, S) to (N, C_out[, H, W])."""

    previous: str
    layer: str
    target: str  # the layer differentiated: L's pre-ReLU twin, or L itself
    module: fx.GraphModule
    outputs: tuple[str, ...]  # its output dict's keys, concatenated along channels in this order
    field: Field | str  # what an output position sees of P: a Field in P's positions, or GLOBAL
    replaced: list[str] = field(default_factory=list)  # what the linearisation changed, for the record

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return concatenated(self.module(x), self.outputs)


def linearise(network, previous: str, layer: str) -> LinearPair:
    """The linear network from layer `previous`'s output to `layer`'s pre-activation."""
    target = network.layer(network.layer(layer).pre_relu or layer)
    try:
        graph_module = cut_graph(network, previous, target.name,
                                 f"expanded weights from {previous} alone do not describe {layer} (circuits)")
    except UsageError as error:  # a connection that skips `previous`: no weights between the two alone
        raise NotLinear(str(error)) from None
    replaced = _rewrite(graph_module, previous, layer)
    graph_module.recompile()
    graph_module.eval().requires_grad_(False)
    fields = graph_fields(graph_module)
    return LinearPair(previous, layer, target.name, graph_module, target.nodes,
                      union([fields[name] for name in target.nodes]), replaced)


def _rewrite(graph_module: fx.GraphModule, previous: str, layer: str) -> list[str]:
    """Make every node linear, in place; returns what was changed. One clear line for what cannot be."""
    counts: dict[str, int] = {}
    where = f"between {previous} and {layer}"

    def count(what: str) -> None:
        counts[what] = counts.get(what, 0) + 1

    for node in list(graph_module.graph.nodes):
        if node.op == "call_module":
            module = graph_module.get_submodule(node.target)
            if isinstance(module, PASS_MODULES):
                _bypass(graph_module.graph, node)
                count(f"{type(module).__name__} -> identity")
            elif isinstance(module, nn.MaxPool2d):
                if module.dilation not in (1, (1, 1)) or module.return_indices:
                    raise NotLinear(f"circuits: cannot linearise {node.target} (a dilated max pool) {where}")
                _set_module(graph_module, node.target, nn.AvgPool2d(module.kernel_size, module.stride, module.padding,
                                                                    module.ceil_mode, count_include_pad=False))
                count("MaxPool2d -> AvgPool2d")
            elif isinstance(module, nn.LocalResponseNorm):
                with graph_module.graph.inserting_after(node):
                    scaled = graph_module.graph.call_function(operator.mul, (node.args[0], float(module.k) ** -module.beta))
                node.replace_all_uses_with(scaled)
                graph_module.graph.erase_node(node)
                count("LocalResponseNorm -> its slope at 0, x / k^beta")
            elif not isinstance(module, LINEAR_MODULES):
                raise NotLinear(f"circuits: cannot linearise module {node.target} ({type(module).__name__}) {where}; "
                                 "expanded weights need linear modules, ReLUs and max pools only")
        elif node.op == "call_function":
            if node.target in PASS_FUNCTIONS:
                _bypass(graph_module.graph, node)
                count(f"{node.target.__name__} -> identity")
            elif node.target in MAX_POOLS:
                node.target = F.avg_pool2d
                node.args, node.kwargs = _avg_pool_args(node, where)
                count("max_pool2d -> avg_pool2d")
            elif node.target is F.pad:
                value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
                if value is not None and value != 0:  # -inf padding (TensorFlow's max-pool SAME) means zero here
                    node.args, node.kwargs = node.args[:2], {**{k: v for k, v in node.kwargs.items() if k != "value"},
                                                             "value": 0.0}
                    count("pad with -inf -> pad with 0")
            elif node.target not in LINEAR_FUNCTIONS and not (node.target is operator.mul and _has_constant(node)):
                name = getattr(node.target, "__name__", str(node.target))
                raise NotLinear(f"circuits: cannot linearise the function {name} ({node.name}) {where}; "
                                 "expanded weights need linear operations, ReLUs and max pools only")
        elif node.op == "call_method":
            if node.target in PASS_METHODS:
                _bypass(graph_module.graph, node)
                count("relu -> identity")
            elif node.target not in LINEAR_METHODS:
                raise NotLinear(f"circuits: cannot linearise the method .{node.target}() ({node.name}) {where}")
    return [f"{n} x {what}" for what, n in counts.items()]



def _bypass(graph: fx.Graph, node: fx.Node) -> None:
    node.replace_all_uses_with(node.args[0])
    graph.erase_node(node)


def _set_module(graph_module: fx.GraphModule, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(graph_module.get_submodule(parent) if parent else graph_module, leaf, module)


def _has_constant(node: fx.Node) -> bool:
    return sum(isinstance(arg, fx.Node) for arg in node.args) <= 1


def _avg_pool_args(node: fx.Node, where: str) -> tuple[tuple, dict]:
    """F.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode) as F.avg_pool2d's arguments."""
    names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    given = dict(zip(names, node.args)) | dict(node.kwargs)
    if given.get("dilation", 1) not in (1, (1, 1), [1, 1]) or given.get("return_indices"):
        raise NotLinear(f"circuits: cannot linearise {node.name} (a dilated max pool) {where}")
    return (given["input"], given["kernel_size"]), {"stride": given.get("stride"), "padding": given.get("padding", 0),
                                                     "ceil_mode": given.get("ceil_mode", False),
                                                     "count_include_pad": False}


__all__ = ["GLOBAL", "LinearPair", "NotLinear", "linearise"]
