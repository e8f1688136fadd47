"""Train a layer's SAE on its stored vectors, evaluate it on the held-out ones, and store it.

The held-out images are split in two (vectors.held_out_halves): one half's vectors stop training
early (stopping.py), the other half's give the reported FVU, L0 and dead fraction, beside the FVU
on (a spread of) the training vectors: far apart, the SAE memorised its data. The trainer
checkpoints into the SAE's folder every few hundred steps, so a killed run continues where it
stopped; the weights and, last, the result are written when training is done, and the checkpoint
is removed then.
"""
from __future__ import annotations

import math

import time
from dataclasses import dataclass

import numpy as np

from microscope.errors import UsageError
from microscope.sae.train import Evaluation, Trained, TrainSettings, Vectors, evaluate, spread, train
from microscope.sae.vectors import held_out_halves, load_parts, read_vectors
from microscope.store import SaeResult, SaeVectors, SaeWeights, Store

VALIDATION_ROWS = 32768  # vectors the early stopping measures (spread over the validation images); as many
# as the test half has on inception_3b, so that a latent silent on them is about as rare as one dead on test
TRAINING_ROWS = 16384  # training vectors the training FVU is measured on, beside the held-out one


@dataclass
class Fitted:
    trained: Trained
    evaluation: Evaluation  # on the test half of the held-out images
    on_training: Evaluation  # on a spread of the training vectors
    train_vectors: int
    validation_vectors: int
    seconds: dict[str, float]  # training, evaluation


def train_and_evaluate(folder, record: SaeVectors, training: TrainSettings, checkpoint=None,
                       on_step=None, device="cpu") -> Fitted:
    """Train on a store's vectors of a layer, stopping early on half the held-out images, and evaluate
    on the other half and on the training vectors (the `sae` command and bench/sae_stored.py)."""
    train_parts, held_parts = load_parts(folder, record)
    began = time.perf_counter()
    train_set, held = Vectors(train_parts), Vectors(held_parts)
    validation_rows, test_rows = held_out_halves(record)
    validation = held.subset(validation_rows[spread(len(validation_rows), VALIDATION_ROWS)])
    trained = train(train_set, training, checkpoint=checkpoint, validation=validation, on_step=on_step,
                    device=device)
    seconds_training = time.perf_counter() - began
    began = time.perf_counter()
    evaluation = evaluate(trained, held.subset(test_rows))
    on_training = evaluate(trained, train_set.subset(spread(len(train_set), TRAINING_ROWS)))
    return Fitted(trained, evaluation, on_training, len(train_set), len(validation),
                  {"training": seconds_training, "evaluation": time.perf_counter() - began})


def fit(network, dataset, spec: dict, store: Store, report) -> SaeResult:
    model, layer = network.spec.name, spec["layer"]
    checkpoint = store.sae_checkpoint_file(model, layer, network.weights_id)
    vectors_folder = store.sae_vectors_dir(model, layer, network.weights_id, spec["vectors"])
    record = read_vectors(store, vectors_folder, spec["vectors"])
    if record is None:
        raise UsageError(f"the activation vectors of {layer} are missing from the store; run the command again")
    training = TrainSettings(**spec["training"])
    fitted = train_and_evaluate(vectors_folder, record, training, checkpoint,
                                on_step=lambda step, fvu: report(1, None if math.isnan(fvu) else f"FVU {fvu:.3f}"),
                                device=network.device)
    trained, evaluation = fitted.trained, fitted.evaluation
    report(training.steps - trained.steps)  # the steps early stopping saved
    sae = trained.sae
    decoder = sae.W_dec.detach().numpy().astype(np.float32)
    # Decoder columns have unit norm, so a column's entry c is its cosine with neuron c's direction.
    nearest = decoder.argmax(axis=0)
    weights = SaeWeights(
        W_enc=sae.W_enc.detach().numpy().astype(np.float32), b_enc=sae.b_enc.detach().numpy().astype(np.float32),
        W_dec=decoder, b_pre=sae.b_pre.detach().numpy().astype(np.float32),
        firing=evaluation.firing.astype(np.float32), mean_activation=evaluation.mean_activation.astype(np.float32),
        nearest_neuron=nearest.astype(np.int32), nearest_cosine=decoder[nearest, np.arange(decoder.shape[1])])
    weights_file = store.sae_weights_file(model, layer, network.weights_id)
    stamp = store.write(weights_file, weights)
    result = SaeResult(
        key=spec["key"], model=model, weights_id=network.weights_id, layer=layer, width=record.width,
        features=training.features, k=training.k, expansion=spec["expansion"], scale=trained.scale,
        vectors=record.key, dataset=record.dataset, n_images=record.n_images, train_vectors=fitted.train_vectors,
        held_vectors=evaluation.vectors, sampling=record.sampling, training=spec["training"], fvu=evaluation.fvu,
        l0=evaluation.l0, dead_fraction=evaluation.dead_fraction,
        curve=[[float(step), float(value)] for step, value in trained.curve],
        train_fvu=fitted.on_training.fvu, validation_vectors=fitted.validation_vectors, steps_trained=trained.steps,
        best_step=trained.best_step, validation_curve=[[float(s), float(v)] for s, v in trained.validation_curve],
        validation_dead=[[float(s), float(v)] for s, v in trained.validation_dead],
        seconds={"vectors": record.seconds, **fitted.seconds},
        files={weights_file.name: stamp})
    store.write(store.sae_result_file(model, layer, network.weights_id), result)
    checkpoint.unlink(missing_ok=True)
    return result
