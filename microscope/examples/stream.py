"""The one pass over the images: decode, forward the truncated network, update every layer's state.

Batches are fixed chunks of dataset indices ([b * batch_size, (b + 1) * batch_size)), unreadable
files left out of their chunk, so batch b is the same on every run and a run can restart at any
batch. Every `checkpoint_every` batches, and after the last one, the accumulators' state and the
number of batches done are saved atomically; a re-run of the same pass (same run id) loads the
checkpoint and continues after the last saved batch, and ends with exactly the state an
uninterrupted run reaches (every accumulator is a deterministic function of the batches it saw).
"""
from __future__ import annotations

import io
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
from tqdm import tqdm

from microscope.examples.accumulator import LayerAccumulator
from microscope.examples.config import ExampleSettings
from microscope.examples.viewcache import ViewCache
from microscope.store import atomic_write_bytes

log = logging.getLogger(__name__)


class _Decoded(torch.utils.data.Dataset):
    """Dataset item i as (i, uint8 image or None, reason or None), for the loader's workers."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, reason = self.dataset.load(index)
        return index, image, reason


def _collate(items):
    good = [(index, image) for index, image, _ in items if image is not None]
    bad = [(index, reason) for index, image, reason in items if image is None]
    indices = torch.tensor([index for index, _ in good], dtype=torch.long)
    images = torch.stack([image for _, image in good]) if good else torch.empty(0, 3, 0, 0, dtype=torch.uint8)
    return indices, images, bad


class _Chunks:
    """Batch b = indices [b * size, (b + 1) * size), from batch `start` on, made as they are needed."""

    def __init__(self, n: int, size: int, start: int):
        self.n, self.size, self.start = n, size, start

    def __len__(self) -> int:
        return max(0, math.ceil(self.n / self.size) - self.start)

    def __iter__(self):
        for b in range(self.start, math.ceil(self.n / self.size)):
            yield list(range(b * self.size, min(self.n, (b + 1) * self.size)))


def batches(dataset, start: int, batch_size: int, workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, list]]:
    """(indices, uint8 images, [[path, reason] of unreadable files]) for batches start, start+1, ..."""
    loader = torch.utils.data.DataLoader(_Decoded(dataset), batch_sampler=_Chunks(len(dataset), batch_size, start),
                                         num_workers=workers, collate_fn=_collate)
    for indices, images, bad in loader:
        bad = [[str(dataset.path(index)), reason] for index, reason in bad]
        for path, reason in bad:
            log.warning("skipped unreadable image %s: %s", path, reason)
        yield indices, images, bad


def extracted(network, layers: list[str]) -> list[str]:
    """The activations one pass computes: the layers and their pre-ReLU twins."""
    twins = [network.layer(layer).pre_relu for layer in layers]
    return list(dict.fromkeys(layers + [twin for twin in twins if twin]))


@contextmanager
def one_thread():
    """Run CPU ops on one OpenMP thread per Python thread for a while: the accumulators' updates.

    They make a few memory-bound passes over each activation and merge small arrays (sorts and
    scatters over at most a few hundred thousand keys): work that gains little from OpenMP's
    threads and loses much to its fork and join when the cores are shared with other processes,
    as the loader's workers share them. Measured on 2 busy cores, nine inception blocks, batches of
    32: 0.58 s per batch on one thread, 2.2 s on two (the forward pass itself: 4.8 s). Instead,
    the layers are updated side by side by Python threads (see `LayerUpdates`).
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class LayerUpdates:
    """Updates every layer's accumulator with a batch's activations, layers side by side.

    On the CPU, one Python thread per core takes whole layers (biggest first), each on one OpenMP
    thread: torch releases the GIL inside its ops, so the updates of nine inception blocks run ~1.5x
    faster on 2 cores than one after the other (0.53 s -> 0.35 s per batch of 32, measured beside a
    busy neighbour). Layers are independent, so the result is the same as in a loop.
    """

    def __init__(self, state: dict, twins: dict, shapes: dict, device: torch.device):
        self.state, self.twins = state, twins
        self.order = sorted(state, key=lambda layer: -math.prod(shapes[layer]))  # biggest first
        workers = min(len(state), torch.get_num_threads()) if device.type == "cpu" else 1
        # Threads are made inside one_thread(), so each starts (and stays) with one OpenMP thread.
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="examples-update") if workers > 1 else None

    def __call__(self, outputs: dict, indices: torch.Tensor) -> None:
        with one_thread():
            if self.pool is None:
                for layer in self.order:
                    self._update(layer, outputs, indices)
                return
            futures = [self.pool.submit(self._update, layer, outputs, indices) for layer in self.order]
            for future in futures:
                future.result()  # re-raises a worker's error here

    def _update(self, layer: str, outputs: dict, indices: torch.Tensor) -> None:
        twin = self.twins[layer]
        with torch.inference_mode():  # thread-local: the pool's threads need it too
            self.state[layer].update(outputs[layer], outputs[twin] if twin else None, indices)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def stream_pass(network, dataset, layers: list[str], *, top_k: int,
                settings: ExampleSettings, batch_size: int, workers: int, checkpoint: Path, run: str,
                checkpoint_every: int, progress: bool, views: ViewCache | None = None,
                on_batch: Callable[[int], None] | None = None) -> tuple[dict[str, LayerAccumulator], list, dict]:
    """Run the pass (or finish a checkpointed one).

    Returns each layer's state, the skipped files ([path, reason]) and each layer's activation
    shape (channels, height, width) at the view's size. Each batch's decoded views go to `views`
    if given. `on_batch(batches_done)` is called after each batch and its checkpoint (tests use it
    to interrupt a run).
    """
    device = network.device
    twins = {layer: network.layer(layer).pre_relu for layer in layers}
    extractor = network.extractor(extracted(network, layers))
    with torch.inference_mode():
        size = dataset.view.crop
        probe = extractor(torch.zeros(1, 3, size, size, device=device))
    # (channels, height, width) of each activation at the view's size (logits: height = width = 1).
    shapes = {layer: (a.shape[1], *(a.shape[2:] if a.dim() == 4 else (1, 1))) for layer, a in probe.items()}
    state = {layer: LayerAccumulator(shapes[layer][0], shapes[layer][2], top_k=top_k,
                                     histogram_bins=settings.histogram_bins, band_bins=settings.band_bins,
                                     band_samples=settings.band_samples, seed=settings.seed, device=device)
             for layer in layers}
    done, skipped = 0, []
    saved = _load(checkpoint, run)
    if saved is not None:
        done, skipped = saved["batches"], saved["skipped"]
        for layer in layers:
            state[layer].load_state_dict(saved["layers"][layer])
        log.info("resuming the examples pass after batch %d from %s", done, checkpoint)
    total = math.ceil(len(dataset) / batch_size)
    update = LayerUpdates(state, twins, shapes, device)
    bar = tqdm(total=total, initial=done, desc="examples", unit="batch", disable=not progress)
    try:
        with torch.inference_mode():
            for done, (indices, images, bad) in enumerate(batches(dataset, done, batch_size, workers), done + 1):
                skipped.extend(bad)
                if len(indices):
                    rgb = images.to(device, non_blocking=True).float().div_(255)
                    outputs = extractor(rgb.contiguous(memory_format=torch.channels_last))
                    update(outputs, indices.to(device))
                    if views is not None:
                        views.put(indices, images)
                if done % checkpoint_every == 0 or done == total:
                    _save(checkpoint, run, done, skipped, state)
                bar.update(1)
                if on_batch is not None:
                    on_batch(done)
    finally:
        bar.close()
        update.close()
    return state, skipped, {layer: tuple(int(n) for n in shapes[layer]) for layer in layers}


def _save(path: Path, run: str, done: int, skipped: list, state: dict[str, LayerAccumulator]) -> None:
    buffer = io.BytesIO()
    torch.save({"run": run, "batches": done, "skipped": skipped,
                "layers": {layer: acc.state_dict() for layer, acc in state.items()}}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _load(path: Path, run: str) -> dict | None:
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a checkpoint we cannot read is only lost time
        log.warning("ignoring unreadable checkpoint %s: %s", path, error)
        return None
    return saved if saved.get("run") == run else None
