"""Receptive fields computed from the network's own graph, not typed in.

We walk the torch.fx graph that `Network.extractor` runs and push a `Field` through every node:
convolutions and pools grow and stride it, explicit pads shift it, concatenation and element-wise
ops take the union of their inputs, and global pooling or flattening makes it cover the whole image.
An operation it does not know stops the walk with one line naming it, never a silently wrong field.
Kernels are assumed square and padding symmetric in x and y (true for every model of the zoo).
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from microscope.errors import UsageError


@dataclass(frozen=True)
class Field:
    """Activation position i (along x or y) sees input pixels [lo + i*stride, hi + i*stride]."""

    lo: float
    hi: float
    stride: int

    @property
    def size(self) -> int:
        return int(self.hi - self.lo + 1)

    @property
    def offset(self) -> float:
        """Input coordinate of the centre of position 0's field (may be negative: it hangs over the edge)."""
        return (self.lo + self.hi) / 2

    def window(self, k: int, s: int, pad: int, dilation: int = 1) -> "Field":
        """A k×k window with stride s over `pad`-padded input, applied to this field."""
        return Field(self.lo - pad * self.stride,
                     self.hi + ((k - 1) * dilation - pad) * self.stride,
                     self.stride * s)

    def shift(self, pad_before: int) -> "Field":
        return Field(self.lo - pad_before * self.stride, self.hi - pad_before * self.stride, self.stride)


GLOBAL = "global"  # sees the whole image (after global pooling, flatten, linear layers)


def _first(value):
    return value[0] if isinstance(value, (tuple, list)) else value


def union(fields: list) -> Field | str | None:
    fields = [f for f in fields if f is not None]
    if not fields:
        return None
    if any(f == GLOBAL for f in fields):
        return GLOBAL
    strides = {f.stride for f in fields}
    if len(strides) > 1:  # inputs on different grids cannot be merged position by position
        return GLOBAL
    return Field(min(f.lo for f in fields), max(f.hi for f in fields), strides.pop())


def _module_field(module: nn.Module, field):
    if field is None or field == GLOBAL:
        return field
    if isinstance(module, nn.Conv2d):
        if isinstance(module.padding, str):  # "same" keeps the centre; "valid" pads nothing
            pad = (module.kernel_size[0] - 1) * module.dilation[0] // 2 if module.padding == "same" else 0
        else:
            pad = module.padding[0]
        return field.window(module.kernel_size[0], module.stride[0], pad, module.dilation[0])
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        k = _first(module.kernel_size)
        s = _first(module.stride) or k
        dilation = _first(getattr(module, "dilation", 1))
        return field.window(k, s, _first(module.padding), dilation)
    if isinstance(module, (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d)):
        return field.shift(module.padding[0])
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.Flatten)):
        return GLOBAL
    if isinstance(module, POSITION_WISE_MODULES):
        return field
    raise Unknown(type(module).__name__)


# Modules and functions that work position by position (an output position sees what the same input
# position sees). Anything not named here or handled above stops the walk with its name: a field passed
# through an unknown spatial operation (an upsampling, a functional convolution) would be silently wrong.
POSITION_WISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Identity, nn.Dropout, nn.Dropout2d,
    nn.BatchNorm2d, nn.LocalResponseNorm,  # batch norm in eval: per channel; LRN: across channels only
)
_POSITION_WISE_FUNCTIONS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.neg, torch.add, torch.sub, torch.mul,
    torch.div, torch.cat, torch.relu, torch.sigmoid, torch.tanh, torch.unsqueeze, torch.clamp, F.relu, F.relu6,
    F.leaky_relu, F.gelu, F.silu, F.hardswish, F.sigmoid, F.dropout, F.batch_norm, F.local_response_norm,
}
_POSITION_WISE_METHODS = {"relu", "add", "sub", "mul", "div", "sigmoid", "tanh", "clamp", "contiguous", "clone",
                          "unsqueeze", "float", "to", "type_as", "size", "dim"}


class Unknown(Exception):
    """An operation the walk does not know (the caller names the node)."""


_POOL_FUNCTIONS = {F.max_pool2d, F.avg_pool2d, torch.max_pool2d}  # F.avg_pool2d is the only avg_pool2d; torch has none
_GLOBAL_FUNCTIONS = {F.adaptive_avg_pool2d, F.adaptive_max_pool2d, torch.flatten, F.linear, torch.mean}
_GLOBAL_METHODS = {"flatten", "view", "reshape", "mean"}


def _function_field(node: fx.Node, fields: list):
    field = fields[0] if fields else None
    if node.target in _GLOBAL_FUNCTIONS:
        return GLOBAL
    if node.target in _POOL_FUNCTIONS and isinstance(field, Field):
        args = list(node.args) + [None] * 4
        k = _first(node.kwargs.get("kernel_size", args[1]))
        s = _first(node.kwargs.get("stride", args[2])) or k
        pad = _first(node.kwargs.get("padding", args[3] if args[3] is not None else 0))
        return field.window(k, s, pad)
    if node.target is F.pad and isinstance(field, Field):
        pad = node.kwargs.get("pad", node.args[1] if len(node.args) > 1 else None)
        return field.shift(pad[0])
    if node.target is operator.getitem and isinstance(node.args[0], fx.Node):
        return field
    if node.target in _POSITION_WISE_FUNCTIONS:
        return union(fields)
    raise Unknown(getattr(node.target, "__name__", str(node.target)))


def _input_fields(node: fx.Node, fields: dict) -> list:
    found = []

    def visit(arg):
        if isinstance(arg, fx.Node):
            found.append(fields.get(arg))
        elif isinstance(arg, (list, tuple)):
            for item in arg:
                visit(item)

    visit(node.args)
    visit(list(node.kwargs.values()))
    return found


def graph_fields(graph_module: fx.GraphModule) -> dict[str, Field | str]:
    """The field of every value the graph returns, keyed as the graph's output dict keys them."""
    fields: dict[fx.Node, Field | str | None] = {}
    output = None
    for node in graph_module.graph.nodes:
        inputs = _input_fields(node, fields)
        try:
            if node.op == "placeholder":
                fields[node] = Field(0, 0, 1)
            elif node.op == "get_attr":
                fields[node] = None
            elif node.op == "call_module":
                fields[node] = _module_field(graph_module.get_submodule(node.target), union(inputs))
            elif node.op == "call_function":
                fields[node] = _function_field(node, inputs)
            elif node.op == "call_method":
                if node.target not in _GLOBAL_METHODS | _POSITION_WISE_METHODS:
                    raise Unknown(f"method .{node.target}()")
                fields[node] = GLOBAL if node.target in _GLOBAL_METHODS else union(inputs)
            elif node.op == "output":
                output = node.args[0]
        except Unknown as unknown:
            where = f"module {node.target}" if node.op == "call_module" else f"graph node {node.name}"
            raise UsageError(f"the receptive-field walk does not know {unknown} ({where}), so it cannot say which "
                             "pixels the layers after it see; teach microscope/network/receptive_field.py whether it is "
                             "position-wise, a window or global") from None
    return {key: fields[value] for key, value in output.items()}
