"""The pass that collects an SAE's activation vectors into the store, shard by shard.

Images are taken in shards of `SHARD_IMAGES`; each shard's vectors are written as two .npy files
(training rows: sampled positions of training images; held-out rows: every position away from the
edge of held-out images) before the next shard starts, so memory holds one shard and a killed pass
resumes at the first shard it had not finished. The index (SaeVectors) is written last.

Held-out images give all their inner positions, not a sample: the evaluation then measures the
SAE on whole images it never saw, and a feature counts as dead only if no position of any
held-out image fires it.
"""
from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import torch

from microscope.jobs import hash_json
from microscope.activations.positions import SampleSettings, held_out_images, vectors_of
from microscope.store import FileStamp, SaeVectors, Store, VectorShard, atomic_write_bytes

SHARD_IMAGES = 256
BATCH = 32


def vectors_key(network, dataset, layer: str, sampling: SampleSettings) -> str:
    return hash_json({"version": 1, "model": network.spec.name, "weights_id": network.weights_id, "layer": layer,
                      "dataset": dataset.fingerprint(), "view": [dataset.view.resize, dataset.view.crop],
                      "sampling": sampling.__dict__}, digits=32)


def read_vectors(store: Store, folder: Path, key: str) -> SaeVectors | None:
    found = store.read(Store.sae_vectors_file(folder), SaeVectors)
    if found is None or found.key != key:
        return None
    for shard in found.shards:
        for part, stamp in (("train", shard.train), ("held", shard.held)):
            path = Store.vector_shard_file(folder, shard.first, shard.last, part)
            problem = stamp.problem(path)
            if problem:
                return store.damaged(path, problem)
    return found


def load_parts(folder: Path, record: SaeVectors) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(training arrays, held-out arrays), memory-mapped."""
    train = [np.load(Store.vector_shard_file(folder, s.first, s.last, "train"), mmap_mode="r") for s in record.shards]
    held = [np.load(Store.vector_shard_file(folder, s.first, s.last, "held"), mmap_mode="r") for s in record.shards]
    return train, held


def held_out_halves(record: SaeVectors) -> tuple[np.ndarray, np.ndarray]:
    """(validation rows, test rows) of the held-out vectors (all shards' held files, in order).

    Every held-out image gives the same number of rows (its inner positions); alternate images go
    to validation (early stopping, stopping.py) and test (the reported FVU, L0, dead fraction), so
    that no image's positions are on both sides. One held-out image: all of it is test.
    """
    sampling = SampleSettings(**record.sampling)
    held = held_out_images(record.n_images, sampling.held_out, sampling.seed)
    images = int(held.sum())
    rows = sum(shard.held_rows for shard in record.shards)
    if images < 2 or rows % images:
        return np.zeros(0, np.int64), np.arange(rows)
    image_of_row = np.arange(rows) // (rows // images)
    return np.nonzero(image_of_row % 2 == 0)[0], np.nonzero(image_of_row % 2 == 1)[0]


def collect(network, dataset, layer: str, sampling: SampleSettings, store: Store, report) -> tuple[SaeVectors, Path]:
    """The vectors of `layer` over `dataset`, from the store or computed (resuming a killed pass)."""
    key = vectors_key(network, dataset, layer, sampling)
    folder = store.sae_vectors_dir(network.spec.name, layer, network.weights_id, key)
    found = read_vectors(store, folder, key)
    if found is not None:
        report(len(dataset))
        return found, folder
    held = held_out_images(len(dataset), sampling.held_out, sampling.seed)
    extractor = network.extractor([layer])
    began = time.perf_counter()
    shards, width = [], network_width(network, extractor, layer)
    for first in range(0, len(dataset), SHARD_IMAGES):
        last = min(len(dataset), first + SHARD_IMAGES)
        shard = _finished_shard(folder, first, last, width)
        if shard is None:
            shard = _collect_shard(dataset, extractor, layer, first, last, held, sampling, folder, width)
        shards.append(shard)
        report(last - first)
    record = SaeVectors(key=key, model=network.spec.name, weights_id=network.weights_id, layer=layer,
                        dataset=dataset.fingerprint(), n_images=len(dataset), width=width,
                        sampling=dict(sampling.__dict__), shards=shards, seconds=time.perf_counter() - began)
    store.write(Store.sae_vectors_file(folder), record)
    return record, folder


def network_width(network, extractor, layer: str) -> int:
    with torch.inference_mode():
        size = network.spec.input_size
        return int(extractor(torch.zeros(1, 3, size, size, device=network.device))[layer].shape[1])


def _collect_shard(dataset, extractor, layer, first, last, held, sampling, folder, width) -> VectorShard:
    train_rows, held_rows = [], []
    with torch.inference_mode():
        for batch in dataset.batches(BATCH, first=first, last=last):
            if not len(batch.indices):
                continue
            activation = extractor(batch.images.float().div_(255))[layer]
            keep = torch.from_numpy(held[batch.indices.numpy()])
            if (~keep).any():
                train_rows.append(vectors_of(activation[~keep], batch.indices[~keep], sampling)[0])
            if keep.any():
                held_rows.append(inner_vectors(activation[keep], sampling.edge))
    stamps = {}
    for part, rows in (("train", train_rows), ("held", held_rows)):
        array = np.concatenate(rows) if rows else np.zeros((0, width), np.float32)
        stamps[part] = (atomic_write_bytes(Store.vector_shard_file(folder, first, last, part), npy_bytes(array)),
                        len(array))
    return VectorShard(first=first, last=last, train_rows=stamps["train"][1], held_rows=stamps["held"][1],
                       train=stamps["train"][0], held=stamps["held"][0])


def _finished_shard(folder: Path, first: int, last: int, width: int) -> VectorShard | None:
    """A shard a killed pass wrote whole (both files present and readable), else None."""
    paths = [Store.vector_shard_file(folder, first, last, part) for part in ("train", "held")]
    try:
        arrays = [np.load(path, mmap_mode="r") for path in paths]
    except (OSError, ValueError):
        return None
    if any(a.ndim != 2 or a.shape[1] != width or a.dtype != np.float32 for a in arrays):
        return None
    stamps = [FileStamp.of_file(path) for path in paths]
    return VectorShard(first=first, last=last, train_rows=len(arrays[0]), held_rows=len(arrays[1]),
                       train=stamps[0], held=stamps[1])


def inner_vectors(activation: torch.Tensor, edge: int) -> np.ndarray:
    """(n, C, H, W) -> (n * inner positions, C): every position `edge` or more steps from the border."""
    inner = activation[:, :, edge:activation.shape[2] - edge, edge:activation.shape[3] - edge]
    return inner.permute(0, 2, 3, 1).reshape(-1, activation.shape[1]).float().cpu().numpy()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()
