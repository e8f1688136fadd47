"""The pass over a shard of the images: decode, forward the truncated network, update every layer's state.

Batches are fixed chunks of dataset indices ([first + b * batch_size, ...)), unreadable files left
out of their chunk, so batch b is the same on every run and a run can restart at any batch. Every
`checkpoint_every` batches, and after the last one, the accumulators' state and the number of
batches done are saved atomically (a `PassShard` record); a re-run of the same shard loads the
checkpoint and continues after the last saved batch, and ends with exactly the state an
uninterrupted run reaches (every accumulator is a deterministic function of the batches it saw).
Shards of one dataset merge exactly (`merge_shards`) into the state of one pass over all of them.
"""
from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from microscope.activations.correlation import MAX_UNITS, Correlation
from microscope.activations.maxima import ImageMaxima, sampled_images
from microscope.examples.accumulator import AtlasSampling, LayerAccumulator
from microscope.examples.config import SummarySettings
from microscope.examples.viewcache import ViewCache
from microscope.store import PassShard, Store

log = logging.getLogger(__name__)


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
    as the loader's workers share them (bench/NOTES.md). Instead, the layers are updated side by
    side by Python threads (see `LayerUpdates`).
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
    thread: torch releases the GIL inside its ops, so the updates of many layers overlap. Layers
    are independent, so the result is the same as in a loop.
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


class LateViews:
    """Hands each batch's decoded views to the cache one batch late.

    Views decoded on the device come back to the host for the cache (3 x crop^2 bytes each: 150 KB at
    224 px). The copy, into pinned memory, is queued before the batch's forward pass and handed over when
    the next batch comes, by when it has long arrived: a copy waited for at once would wait for all the
    work queued before it, and this process could not run ahead of the device. On the CPU the views are
    already on the host and only go one batch late.
    """

    def __init__(self, views: ViewCache):
        self.views, self.pending = views, None

    def put(self, indices: torch.Tensor, images: torch.Tensor) -> None:
        self.flush()
        arrived = None
        if images.device.type == "cuda":
            host = torch.empty(images.shape, dtype=images.dtype, pin_memory=True)
            host.copy_(images, non_blocking=True)
            arrived = torch.cuda.Event()
            arrived.record()
            images = host
        self.pending = (indices, images, arrived)

    def flush(self) -> None:
        if self.pending is not None:
            indices, images, arrived = self.pending
            if arrived is not None:
                arrived.synchronize()
            self.views.put(indices, images)
            self.pending = None


@dataclass(frozen=True)
class Shard:
    """Images [first, last) of the pass `key` over `layers`, saved as a PassShard at `path`."""

    key: str
    layers: tuple[str, ...]
    first: int
    last: int
    path: Path  # the finished shard's state; its checkpoint is beside it (`partial`)

    @property
    def partial(self) -> Path:
        return self.path.with_name(self.path.name.replace(".npz", ".partial.npz"))


@dataclass(frozen=True)
class PassSettings:
    top_k: int
    settings: SummarySettings
    batch_size: int
    workers: int | None
    checkpoint_every: int = 50
    # Plain JPEGs decoded on the network's device (microscope/data/jpeg.py): None, on CUDA only. On the
    # CPU the loader's processes decode in parallel, which one process decoding cannot beat; tests force it.
    device_decode: bool | None = None

    def decodes_on(self, device: torch.device) -> torch.device | None:
        on = device.type == "cuda" if self.device_decode is None else self.device_decode
        return device if on else None


def new_state(network, layers, shapes: dict, top_k: int, settings: SummarySettings,
              n_images: int | None = None, labelled: bool = False, device=None) -> dict[str, LayerAccumulator]:
    """Empty accumulators on `device` (default: the network's); `n_images` (the dataset's size) sets how many
    positions of each image the atlas draws when the settings leave it to the pass, and which images the
    concepts' sample keeps (only for a `labelled` dataset: concepts are what the maxima are kept for)."""
    device = network.device if device is None else torch.device(device)
    return {layer: LayerAccumulator(shapes[layer][0], shapes[layer][2], top_k=top_k,
                                    histogram_bins=settings.histogram_bins, band_bins=settings.band_bins,
                                    band_samples=settings.band_samples, seed=settings.seed, device=device,
                                    exact_twin=network.layer(layer).relu_of_twin,
                                    atlas=None if network.derived_key(layer) is not None else AtlasSampling.for_layer(
                                        settings.atlas_vectors, settings.atlas_positions, settings.seed,
                                        shapes[layer][1], shapes[layer][2], n_images),
                                    maxima=_maxima(shapes[layer][0], settings, n_images if labelled else None),
                                    correlation=_correlation(shapes[layer], settings, device))
            for layer in layers}  # a derived layer (SAE features) is a function of its source: its atlas is the source's


def _maxima(channels: int, settings: SummarySettings, n_images: int | None) -> ImageMaxima | None:
    """The concepts' sample of per-image maxima (None where nothing says how many images there are)."""
    if not settings.concept_images or not n_images:
        return None
    return ImageMaxima(sampled_images(n_images, settings.concept_images, channels, settings.seed), channels)


def _correlation(shape: tuple[int, int, int], settings: SummarySettings, device) -> Correlation | None:
    channels, height, width = shape
    if not settings.correlation_positions or channels > MAX_UNITS:
        return None
    return Correlation(channels, settings.correlation_positions, settings.seed, height, width, device)


def activation_shapes(network, layers, size: int) -> dict[str, tuple[int, int, int]]:
    """(channels, height, width) of each activation at `size` px (logits: height = width = 1)."""
    with torch.inference_mode():
        probe = network.extractor(extracted(network, layers))(torch.zeros(1, 3, size, size, device=network.device))
    return {layer: (int(a.shape[1]), *((int(a.shape[2]), int(a.shape[3])) if a.dim() == 4 else (1, 1)))
            for layer, a in probe.items()}


def pass_work(network, layers: list[str], size: int, top_k: int, settings: SummarySettings, n_images: int,
              labelled: bool) -> tuple[Callable, dict[str, LayerAccumulator], LayerUpdates]:
    """What a pass does to each batch of `size` px views: its graph (the layers and their twins), fresh
    accumulators and the updates of all of them (close() it when done)."""
    twins = {layer: network.layer(layer).pre_relu for layer in layers}
    shapes = activation_shapes(network, layers, size)
    state = new_state(network, layers, shapes, top_k, settings, n_images=n_images, labelled=labelled)
    return network.extractor(extracted(network, layers)), state, LayerUpdates(state, twins, shapes, network.device)


def run_shard(network, dataset, shard: Shard, options: PassSettings, store: Store, *,
              views: ViewCache | None = None, report: Callable[[int], None] | None = None) -> PassShard:
    """Run (or finish a checkpointed) pass over the shard; returns its state, also saved at shard.path.

    Each batch's decoded views go to `views` if given. `report(1)` is called after each batch and
    its checkpoint (tests use it to interrupt a run).
    """
    layers = list(shard.layers)
    extractor, state, update = pass_work(network, layers, dataset.view.crop, options.top_k, options.settings,
                                         len(dataset), dataset.labels is not None)
    total = math.ceil((shard.last - shard.first) / options.batch_size)
    done, skipped = 0, []
    saved = store.read(shard.partial, PassShard)
    if saved is not None and saved.info()["key"] == shard.key and saved.info()["layers"] == layers:
        done, skipped = saved.info()["batches"], [tuple(item) for item in saved.info()["skipped"]]
        load_state(state, saved)
        log.info("resuming the examples pass after batch %d from %s", done, shard.partial)
    late = None if views is None else LateViews(views)
    cuda = network.device.type == "cuda"
    try:
        with torch.inference_mode():
            # On CUDA, pinned batches copy to the device while it computes (non_blocking below).
            batches = dataset.batches(options.batch_size, options.workers,
                                      first=shard.first + done * options.batch_size, last=shard.last,
                                      pin_memory=cuda, decode_on=options.decodes_on(network.device))
            for done, batch in enumerate(batches, done + 1):
                skipped.extend(batch.skipped)
                if len(batch.indices):
                    if late is not None:
                        late.put(batch.indices, batch.images)
                    rgb = batch.images.to(network.device, non_blocking=True).float().div_(255)
                    outputs = extractor(rgb.contiguous(memory_format=torch.channels_last))
                    update(outputs, batch.indices)  # on the host: the accumulators copy what they need over
                if done % options.checkpoint_every == 0 and done < total:  # the last state is the shard itself
                    store.write(shard.partial, shard_record(shard, done, total, skipped, state))
                if report is not None:
                    report(1)
            if late is not None:
                late.flush()
    finally:
        update.close()
    record = shard_record(shard, total, total, skipped, state)
    store.write(shard.path, record)
    shard.partial.unlink(missing_ok=True)
    return record


def shard_record(shard: Shard, done: int, total: int, skipped: list, state: dict[str, LayerAccumulator]) -> PassShard:
    info = {"key": shard.key, "first": shard.first, "last": shard.last, "batches": done, "total": total,
            "layers": list(shard.layers), "skipped": [list(item) for item in skipped]}
    arrays = {f"{position}/{name}": array for position, layer in enumerate(shard.layers)
              for name, array in state[layer].state_arrays().items()}
    return PassShard.make(info, arrays)


def load_state(state: dict[str, LayerAccumulator], record: PassShard) -> None:
    for position, layer in enumerate(record.info()["layers"]):
        prefix = f"{position}/"
        state[layer].load_state_arrays({k[len(prefix):]: v for k, v in record.state.items() if k.startswith(prefix)})


def merge_shards(network, records: list[PassShard], shapes: dict, top_k: int, settings: SummarySettings,
                 layer: str, n_images: int | None = None, labelled: bool = False) -> LayerAccumulator:
    """One layer's state from the shards of a pass (in any order): exactly one pass's state, on the CPU.

    The summaries run in processes that must not touch the device (forked by the local executor, which
    CUDA does not survive), and merging arrays of a few hundred numbers per unit is no work for a CPU."""
    position = records[0].info()["layers"].index(layer)
    prefix = f"{position}/"

    def state_of(record: PassShard) -> LayerAccumulator:
        accumulator = new_state(network, [layer], shapes, top_k, settings, n_images, labelled, device="cpu")[layer]
        accumulator.load_state_arrays({k[len(prefix):]: v for k, v in record.state.items() if k.startswith(prefix)})
        return accumulator

    ordered = sorted(records, key=lambda r: r.info()["first"])
    merged = state_of(ordered[0])
    for record in ordered[1:]:
        merged.merge(state_of(record))
    return merged
