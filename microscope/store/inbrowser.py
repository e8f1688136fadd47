"""The store's record of a model exported for the browser (no torch):

    <root>/<model>/inbrowser/model.onnx    the network from the normalised image to every chosen layer and the logits
    <root>/<model>/inbrowser/record.json   ExportedModel, written last

The "Try an image" page downloads model.onnx and runs it with onnxruntime-web; the record tells it how to
prepare a photo (the model's `Preprocessing`, done in the page) and what each output is. Computed by
microscope/inbrowser (views/inbrowser.py plans and runs it).
"""
from __future__ import annotations

from dataclasses import dataclass

from microscope.store.files import FileStamp
from microscope.store.typed import JsonRecord, RecordError

OUTPUT_KINDS = ("conv", "block", "branch", "pre_relu", "sae", "logits")
WEIGHTS_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class InputPreparation:
    """What the page does to a photo before the network: the model's framing and normalisation, in order:
    shorter side to `resize`, centre crop `crop`, RGB in [0, 1], channels in `channel_order`, times `scale`,
    minus `mean`, divided by `std` (per channel, in channel_order)."""

    channel_order: str  # "RGB" or "BGR"
    scale: float
    mean: list[float]
    std: list[float]
    resize: int
    crop: int


@dataclass(frozen=True)
class ExportedOutput:
    """One output of model.onnx: (1, channels, height, width) float32 (logits: (1, classes), height and width 1)."""

    name: str  # the ONNX output's name
    layer: str  # the site's layer it is (its pages' folder name is names.segment of it)
    kind: str  # conv, block, branch, pre_relu, sae (a TopK code at each position), logits
    channels: int
    height: int
    width: int


@dataclass(frozen=True)
class ExportedModel(JsonRecord):
    """inbrowser/record.json, written after model.onnx."""

    key: str  # hash of everything that determines the file
    model: str
    weights_id: str
    opset: int
    input_name: str
    input_size: int  # the crop: the input is (1, 3, input_size, input_size) float32, already normalised
    preprocessing: InputPreparation
    outputs: list[ExportedOutput]  # in the file's order, logits last
    weights_dtype: str  # "float16": weights stored in half precision, computed in float32; else "float32"
    tolerance: float  # the largest relative error any output may have for the float16 file to be kept
    max_error: dict[str, float]  # output name -> max |onnxruntime - torch float32| / max |torch|, measured (an SAE's
    # TopK code: where both chose the feature)
    code_changes: dict[str, float]  # an SAE code's name -> the share of its chosen (position, feature) pairs that differ
    check_photos: int  # photos the error was measured on (0: seeded noise images, no photos were given)
    onnx_bytes: int
    files: dict[str, FileStamp]  # model.onnx

    def __post_init__(self):
        if self.weights_dtype not in WEIGHTS_DTYPES:
            raise RecordError(f"weights_dtype must be one of {WEIGHTS_DTYPES}, not {self.weights_dtype!r}")
        if not self.outputs or self.outputs[-1].kind != "logits" or \
                any(output.kind not in OUTPUT_KINDS for output in self.outputs):
            raise RecordError("outputs must be layers of known kinds with the logits last")
        if len({output.name for output in self.outputs}) != len(self.outputs):
            raise RecordError("two outputs share a name")
