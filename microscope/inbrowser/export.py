"""A loaded network as ONNX: the already-normalised image in, every chosen layer's activation and the logits out.

The page does the model's `Preprocessing` (framing, channel order, scale, mean, std) in JS, so the graph starts
after it: its input "image" is (1, 3, crop, crop) float32 as the network's first layer sees it. Its outputs are,
in order, each chosen layer as the site shows it (post-ReLU; an SAE layer `<L>_sae` as its TopK code at each
position) and last "logits" (1, classes). Shapes are fixed (batch 1): the page runs one photo at a time, and a
fixed graph is the plainest for onnxruntime-web.

torch's TorchScript-based exporter (`dynamo=False`) gives plain graphs of standard operators; an operator it
cannot express is said in one line naming it (`NotExportable`), so a build leaves the page out and goes on.
"""
from __future__ import annotations

import contextlib
import copy
import io
import os
import re
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

from microscope.network.loaded import LayerExtractor, Network
from microscope.store.inbrowser import ExportedOutput

OPSET = 17  # onnxruntime-web 1.31 runs opsets 7 to 21; 17 has every operator these networks need
INPUT_NAME = "image"
LOGITS = "logits"
SPLAT = 64  # values: a folded constant this large holding one value is stored as its shape and the value


class NotExportable(Exception):
    """A network torch cannot export to ONNX; its text is the one line a build says."""


@dataclass(frozen=True)
class Exported:
    onnx: bytes  # the model, weights in float32
    outputs: list[ExportedOutput]
    module: nn.Module  # what was exported, on the CPU: torch's outputs to compare the file's with


class NormalisedNetwork(nn.Module):
    """The network from the normalised image to a tuple: each layer of `layers` (network order), then the logits."""

    def __init__(self, network: Network, layers: list[str]):
        super().__init__()
        self.names = [*layers, logits_layer(network)]
        self.extractor = LayerExtractor(network, [network.layer(name) for name in self.names])

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        found = self.extractor.normalised(image)
        return tuple(found[name] for name in self.names)


def logits_layer(network: Network) -> str:
    """The model's logits layer (the class scores), which every export ends with."""
    found = [layer.name for layer in network.spec.layers if layer.kind == "logits"]
    if not found:
        raise NotExportable(f"{network.spec.name} has no logits layer (the page shows the top classes)")
    return found[-1]


def export_onnx(network: Network, layers: list[str], opset: int = OPSET) -> Exported:
    """The network with outputs `layers` (each with a spatial grid, in network order) and the logits, as ONNX."""
    # a copy on the CPU: the exporter traces on the CPU, and the network's own modules stay on its device
    module = copy.deepcopy(NormalisedNetwork(network, layers)).cpu().eval()
    crop = network.spec.preprocessing.crop
    image = torch.zeros(1, 3, crop, crop)
    with torch.no_grad():
        shapes = [tuple(value.shape) for value in module(image)]
    names = [*layers, LOGITS]
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad(), _no_stdout():
            # the TorchScript exporter warns that it is deprecated and about its tracer; neither is the user's
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (image,), buffer, dynamo=False, input_names=[INPUT_NAME], output_names=names,
                              opset_version=opset, do_constant_folding=True)
    except Exception as error:  # noqa: BLE001 - any failure of the exporter leaves the page out, said in one line
        raise NotExportable(unsupported(error, opset)) from None
    outputs = [ExportedOutput(name=name, layer=layer, kind=_kind(network, layer), channels=shape[1],
                              height=shape[2] if len(shape) == 4 else 1, width=shape[3] if len(shape) == 4 else 1)
               for name, layer, shape in zip(names, module.names, shapes)]
    return Exported(without_splats(buffer.getvalue()), outputs, module)


def unsupported(error: Exception, opset: int = OPSET) -> str:
    """What the exporter could not do, in a few words: the operator where it names one (and why, where it says)."""
    text = str(error)
    found = re.search(r"operator '([\w:.]+)'", text)
    if found:
        return f"ONNX export (opset {opset}) does not support {found.group(1)}"
    found = re.search(r"export of operator ([\w:.]+)[,:]? *([^.\n]*)", text)
    if found:
        why = f" ({found.group(2).strip()})" if found.group(2).strip() else ""
        return f"ONNX export (opset {opset}) does not support {found.group(1)}{why}"
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
    return f"ONNX export failed: {first[:200]}"


@contextlib.contextmanager
def _no_stdout():
    """Standard output discarded, at the file descriptor: the TorchScript exporter prints its whole graph there
    (from C++, whatever its logging settings) when it fails, and the build says the failure in one line."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def without_splats(model_bytes: bytes) -> bytes:
    """The model with each large constant of one repeated value made by a ConstantOfShape instead.

    Constant folding turns `zeros_like` of a fixed-shape tensor (an SAE's TopK code starts from one) into the
    whole tensor of zeros: at 14x14 positions and thousands of features, megabytes of zeros in the download."""
    model = onnx.load_from_string(model_bytes)
    nodes = []
    for node in model.graph.node:
        values = _constant_value(node)
        if values is None or values.size < SPLAT or not np.all(values == values.flat[0]):
            nodes.append(node)
            continue
        shape = f"{node.output[0]}_shape"
        nodes.append(helper.make_node("Constant", [], [shape], name=f"{node.name}_shape",
                                      value=numpy_helper.from_array(np.array(values.shape, np.int64))))
        nodes.append(helper.make_node("ConstantOfShape", [shape], list(node.output), name=node.name,
                                      value=numpy_helper.from_array(values.reshape(-1)[:1].copy())))
    model.graph.ClearField("node")
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _constant_value(node) -> np.ndarray | None:
    """The tensor a Constant node holds as its `value`, else None."""
    if node.op_type != "Constant":
        return None
    found = [attribute.t for attribute in node.attribute if attribute.name == "value"]
    return numpy_helper.to_array(found[0]) if found else None


def _kind(network: Network, layer: str) -> str:
    kind = network.layer(layer).kind
    return kind if kind in ("conv", "block", "branch", "pre_relu", "sae", "logits") else "branch"
