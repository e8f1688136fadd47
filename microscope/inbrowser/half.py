"""Half the download: an ONNX model's weights stored in float16, computed in float32, kept only where it is safe.

`to_float16` stores every float32 weight of `SMALLEST` values or more as float16, with a Cast back to float32 in
front of its users: the graph computes in float32 as before (onnxruntime folds the casts when it loads the model),
only the file halves. `compare` runs a file with onnxruntime (CPU) on a few photos against torch in float32 and
measures, per output, the largest absolute difference divided by the output's largest absolute value (an SAE's
TopK code: where both chose the feature, and apart from it the share of choices that differ); `agrees` says whether
that is within `TOLERANCE` for every output (and `CODE_CHANGES` for every code) and the top classes and each layer's
top units (by their maximum over positions) are the same sets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import TensorProto, helper, numpy_helper

SMALLEST = 256  # values: smaller weights (biases, norms) stay float32, their bytes are few and their error is not
FLOAT16_MAX = 65504.0  # a weight beyond float16's range would become infinite: its tensor stays float32
TOLERANCE = 1e-2  # the largest relative error (per output, of its largest value) the float16 file may have
TOP = 5  # the top classes and each layer's top units that must be the same
CODE_CHANGES = 0.01  # the largest share of a TopK code's choices (position, feature) the float16 file may change


def to_float16(model_bytes: bytes, smallest: int = SMALLEST) -> bytes:
    """The model with its large float32 initializers stored as float16, each cast back to float32 in the graph."""
    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    taken = {tensor.name for tensor in graph.initializer} | {name for node in graph.node for name in node.output}
    casts, kept = [], []
    for tensor in graph.initializer:
        values = numpy_helper.to_array(tensor) if tensor.data_type == TensorProto.FLOAT else None
        if values is None or values.size < smallest or not np.all(np.abs(values) <= FLOAT16_MAX):
            kept.append(tensor)
            continue
        half = _fresh(f"{tensor.name}_float16", taken)
        kept.append(numpy_helper.from_array(values.astype(np.float16), half))
        casts.append(helper.make_node("Cast", [half], [tensor.name], name=_fresh(f"{tensor.name}_cast", taken),
                                      to=TensorProto.FLOAT))
    graph.ClearField("initializer")
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    graph.ClearField("node")
    graph.node.extend(casts + nodes)  # before every user: the graph stays in topological order
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _fresh(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "_"
    taken.add(name)
    return name


@dataclass(frozen=True)
class Comparison:
    """An ONNX file against torch float32 on the same inputs."""

    max_error: dict[str, float]  # output name -> max |onnx - torch| / max |torch| over the inputs (a code: where
    # both chose the feature)
    changed: dict[str, float]  # a TopK code's name -> the share of its chosen (position, feature) pairs that differ
    same_top: bool  # the top classes and each layer's top units (by max over positions) are the same sets

    def agrees(self, tolerance: float = TOLERANCE) -> bool:
        return self.same_top and all(error <= tolerance for error in self.max_error.values()) and \
            all(share <= CODE_CHANGES for share in self.changed.values())


def run_onnx(model_bytes: bytes, input_name: str, images: np.ndarray) -> list[list[np.ndarray]]:
    """Each image (n, 3, H, W) run alone (the file's batch is 1): per image, the outputs in the file's order."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: the casts' folding notes are not the user's business
    # as many threads as torch's (OMP_NUM_THREADS): a run's measured errors are then the same run after run
    options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
    session = onnxruntime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return [session.run(None, {input_name: image[None].astype(np.float32)}) for image in images]


def compare(model_bytes: bytes, input_name: str, outputs: list[tuple[str, str]], images: np.ndarray,
            expected: list[list[np.ndarray]]) -> Comparison:
    """The file's outputs ((name, kind) in its order) on `images` against `expected` (per image, torch float32's
    outputs in the same order).

    A TopK code (kind "sae") is not continuous: where two features' pre-activations nearly tie for the k-th place,
    any rounding may choose the other one. Its error is measured where both chose the feature, and the choices
    that differ are counted apart (`changed`)."""
    found = run_onnx(model_bytes, input_name, images)
    errors, changed, same = {}, {}, True
    for column, (name, kind) in enumerate(outputs):
        worst, differ, chosen = 0.0, 0, 0
        for got, want in zip(found, expected):
            a, b = got[column].astype(np.float64), want[column].astype(np.float64)
            both = (a != 0) & (b != 0) if kind == "sae" else np.ones(a.shape, bool)
            scale, gap = float(np.abs(b).max()), float(np.abs(a - b)[both].max(initial=0.0))
            worst = max(worst, gap / scale if scale > 0 else float(np.abs(a).max()))
            differ, chosen = differ + int(((a != 0) != (b != 0)).sum()), chosen + int((b != 0).sum())
            same = same and top_units(a) == top_units(b)
        errors[name] = worst
        if kind == "sae":
            changed[name] = differ / max(chosen, 1)
    return Comparison(errors, changed, same)


def top_units(output: np.ndarray, top: int = TOP) -> frozenset[int]:
    """The `top` channels of a (1, C, H, W) or (1, C) output with the largest maximum over positions, among those
    above zero (a sparse code's silent features tie at zero: their order means nothing)."""
    peaks = output.reshape(output.shape[1], -1).max(axis=1) if output.ndim == 4 else output.reshape(-1)
    order = np.argsort(-peaks, kind="stable")[:top]
    return frozenset(int(unit) for unit in order if output.ndim == 2 or peaks[unit] > 0)
