"""The store's record of a layer's caricatures and DeepDreams (no torch):

    <root>/<model>/<layer>/caricature/<photo>-photo.png       the photo as the network saw it (its framing)
    <root>/<model>/<layer>/caricature/<photo>-caricature.png  an image optimised to match, and exaggerate, the
                                                              photo's activations at the layer
    <root>/<model>/<layer>/caricature/<photo>-deepdream.png   the photo pushed to excite the layer
    <root>/<model>/<layer>/caricature/result.json             CaricatureResult, written last

`<photo>` is the first 16 hex digits of the photo file's sha256: a photo is the same photo under any name.
Computed by microscope/caricature (views/caricature.py plans and runs it).
"""
from __future__ import annotations

from dataclasses import dataclass

from microscope.store.files import FileStamp
from microscope.store.typed import JsonRecord


@dataclass(frozen=True)
class ActiveUnit:
    """A unit of the layer and its mean activation over the layer's positions in one image."""

    unit: int
    mean: float


@dataclass(frozen=True)
class CaricaturePhoto:
    """One photo of the set at one layer: its three images and what they measure at the layer."""

    photo: str  # its key (`<photo>` above)
    name: str  # its file name in the folder it came from (shown escaped; never a path outside it)
    label: str | None  # its class name, where the dataset had labels
    cosine: float  # cos(a(caricature), a(photo)), the activations flattened over channels and positions
    cosines: list[float]  # cos(a(caricature), a(other photo)) for every photo of the set, in the set's order
    norm_photo: float  # |a(photo)|, flattened
    norm_caricature: float
    norm_deepdream: float
    top_photo: list[ActiveUnit]  # the units most active in each image, highest mean first
    top_caricature: list[ActiveUnit]
    top_deepdream: list[ActiveUnit]


@dataclass(frozen=True)
class CaricatureResult(JsonRecord):
    """caricature/result.json of a layer: every photo of the set, written after its images."""

    key: str  # hash of everything that determines the images
    model: str
    weights_id: str
    layer: str
    size: int  # side of the square the network saw
    seed: int
    precision: str  # "fp32" or "bf16": the network's while optimising
    caricature: dict  # the caricature recipe's numbers (microscope/caricature/recipe.py), with its version
    deepdream: dict  # the DeepDream recipe's numbers, with its version
    photos: list[CaricaturePhoto]
    files: dict[str, FileStamp]
