"""The store's records of sparse autoencoders (microscope/sae), one SAE per layer and weights:

    <root>/<model>/<layer>/sae/<weights>/vectors/<key>/vectors.json   SaeVectors, after its shards
    <root>/<model>/<layer>/sae/<weights>/vectors/<key>/<first>-<last>.train.npy / .held.npy
    <root>/<model>/<layer>/sae/<weights>/checkpoint.npz               trainer state while training
    <root>/<model>/<layer>/sae/<weights>/weights.npz                  SaeWeights
    <root>/<model>/<layer>/sae/<weights>/result.json                  SaeResult, written last

`<weights>` is the first 16 digits of the weights id, so SAEs of other weights are kept, never
mixed up. Vector shards are plain .npy files (memory-mapped by the trainer), stamped in the
index. No torch here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from microscope.store.files import FileStamp
from microscope.store.typed import ArrayRecord, JsonRecord, RecordError


@dataclass(frozen=True)
class VectorShard:
    """Vectors of images [first, last): sampled positions of training images, every inner position of
    held-out ones."""

    first: int
    last: int
    train_rows: int
    held_rows: int
    train: FileStamp
    held: FileStamp


@dataclass(frozen=True)
class SaeVectors(JsonRecord):
    """vectors.json: the activation vectors an SAE is trained and evaluated on, written last."""

    key: str  # hash of model, weights, layer, dataset, view and sampling
    model: str
    weights_id: str
    layer: str
    dataset: str  # fingerprint of the images
    n_images: int
    width: int  # channels of the layer
    sampling: dict  # SampleSettings
    shards: list[VectorShard]
    seconds: float  # the pass over the images


@dataclass(frozen=True)
class SaeResult(JsonRecord):
    """result.json of a layer's SAE: how it was made and how well it reconstructs held-out vectors."""

    key: str  # hash of everything that determines the weights
    model: str
    weights_id: str
    layer: str  # the source layer whose activations it encodes
    width: int
    features: int
    k: int
    expansion: int
    scale: float  # inputs were divided by it before encoding
    vectors: str  # SaeVectors.key
    dataset: str
    n_images: int
    train_vectors: int
    held_vectors: int  # the vectors `fvu`, `l0` and `dead_fraction` are measured on
    sampling: dict
    training: dict  # TrainSettings
    fvu: float  # fraction of variance unexplained on held-out images (not those that stopped training)
    l0: float  # held-out mean number of active features
    dead_fraction: float  # features never active on the held-out vectors
    curve: list[list[float]]  # (step, training FVU of that step's batch)
    seconds: dict[str, float]  # sampling, training, evaluation
    files: dict[str, FileStamp]
    # Since early stopping (issue 27); records written before it lack them.
    train_fvu: float | None = None  # FVU on a spread of the training vectors: far below `fvu`, it memorised them
    validation_vectors: int = 0  # held-out vectors (of other images than `fvu`'s) that stopped training early
    steps_trained: int | None = None  # fewer than training["steps"] when it stopped early
    best_step: int | None = None  # the step whose weights were kept
    validation_curve: list[list[float]] = field(default_factory=list)  # (step, validation FVU)
    validation_dead: list[list[float]] = field(default_factory=list)  # (step, latents silent on validation)


@dataclass
class SaeWeights(ArrayRecord):
    """weights.npz (F features of a C-channel layer).

    W_enc (F, C), b_enc (F,), W_dec (C, F) with unit-norm columns, b_pre (C,): on inputs divided by
    `scale` (SaeResult). firing (F,): fraction of held-out vectors on which each feature is active;
    mean_activation (F,): its mean value where it is active. nearest_neuron (F,) and nearest_cosine (F,): the channel whose
    basis direction is closest to the feature's decoder column, and that cosine (= its largest entry).
    """

    ARRAYS = {"W_enc": ("f", 2), "b_enc": ("f", 1), "W_dec": ("f", 2), "b_pre": ("f", 1), "firing": ("f", 1),
              "mean_activation": ("f", 1), "nearest_neuron": ("iu", 1), "nearest_cosine": ("f", 1)}

    W_enc: np.ndarray
    b_enc: np.ndarray
    W_dec: np.ndarray
    b_pre: np.ndarray
    firing: np.ndarray
    mean_activation: np.ndarray
    nearest_neuron: np.ndarray
    nearest_cosine: np.ndarray

    def check(self) -> None:
        features, width = self.W_enc.shape
        if self.W_dec.shape != (width, features) or self.b_enc.shape != (features,) or self.b_pre.shape != (width,):
            raise RecordError("SAE weights disagree on the number of features or channels")
        for name in ("firing", "mean_activation", "nearest_neuron", "nearest_cosine"):
            if getattr(self, name).shape != (features,):
                raise RecordError(f"SAE {name} does not have one value per feature")
        if features and (self.nearest_neuron.min() < 0 or self.nearest_neuron.max() >= width):
            raise RecordError("SAE nearest_neuron points outside the layer")
