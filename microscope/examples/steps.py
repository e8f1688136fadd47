"""The steps of the examples view's jobs, what each does, in the order a plan (planning.py) runs them for
the layers of one pass:

1. `index`: datasets/<fingerprint>/images.json - what image i means;
2. `pass`: each shard of the images through the network, updating every layer's accumulators,
   checkpointed (stream.py); the result is the shard's state (a PassShard record);
3. `summary` (per layer, a process each where there are cores): the shards merged exactly, then
   summary.npz. Only now is the layer's old result given up: result.json goes, pending.json names this
   pass (patches of another pass go);
4. `patches` (per chunk of images, 64 by default): receptive-field patches of every layer, packed, and the
   thumbnails of the chunk's example images (with their stamps, thumbs.py);
5. `release`: the pass's decoded views are dropped (before anything is synced to disk);
6. `finish` (per layer): one os.sync(), then result.json with every file's stamp, last: a layer is
   complete exactly when its result.json matches;
7. `clean`: the pass's shard states go.

And, for layers already complete, `thumbs`: a damaged dataset index or thumbnail rewritten (repair_thumbs).
"""
from __future__ import annotations

import logging
import os
import shutil

import numpy as np

from microscope.concepts.labels import label_layer
from microscope.concepts.similarity import similar_units
from microscope.concepts.vocabulary import of_labels
from microscope.data.images import ImageDataset, Framing
from microscope.data.packs import complete_chunks, pack_indexes
from microscope.data.patches import PAD_COLOUR
from microscope.errors import UsageError
from microscope.examples import thumbs as example_thumbs
from microscope.examples.config import SummarySettings
from microscope.examples.patches import LayerPatches, PatchFormat, cut_chunk
from microscope.examples.planning import PassPlan, pass_dataset, scanned
from microscope.examples.stream import PassSettings, activation_shapes, extracted, merge_shards, run_shard
from microscope.examples.viewcache import ViewCache
from microscope.network.catalogue import catalogue
from microscope.store import (AtlasVectors, DatasetIndex, DatasetRef, ExamplesResult, ExamplesSummary, FileStamp, PassShard,
                              PatchSettings, Store, ThumbSettings, ViewSettings)
from microscope.store import PATCHES

log = logging.getLogger("microscope.build")

SKIPPED_LISTED = 100  # unreadable files named in result.json; all of them are counted


def open_dataset(session, plan: PassPlan) -> ImageDataset:
    """The pass's dataset: this process's copy, else rebuilt from the stored index (no folder scan)."""
    def make():
        index = session.store.read(session.store.dataset_file(plan.model, plan.fingerprint), DatasetIndex)
        if index is None:
            raise UsageError(f"the dataset index of {plan.folder} is missing from the store; run the build again")
        return ImageDataset.from_index(index, Framing(*plan.view))
    return session.memo(("dataset", plan.fingerprint, plan.view), make)


def index_images(session, plan: PassPlan) -> None:
    """The "index" step: the dataset the pass was planned with (the folder scanned again, elsewhere), written.

    It runs first, in the process that later forks the summaries and patches (LocalExecutor): what those
    need of the network is made here, once, and inherited, since a forked worker must not run the network
    (on CUDA it cannot). Elsewhere (Ray) every job's process makes its own when it needs it."""
    write_index(session.store, plan.model, pass_dataset(session, plan), plan.summary_settings())
    if not session.distributed:
        pass_shapes(session, plan)
        geometry(session, plan)


def write_index(store: Store, model: str, dataset: ImageDataset, settings: SummarySettings) -> None:
    """images.json: the files in index order (relative to root), labels, and how thumbnails look."""
    index = DatasetIndex(
        fingerprint=dataset.fingerprint(), name=dataset.root.resolve().name, root=str(dataset.root.resolve()),
        files=list(dataset.files), labels=None if dataset.labels is None else list(dataset.labels),
        classes=dataset.classes,
        thumbs=ThumbSettings(settings.thumb_size, "jpg", ViewSettings(dataset.view.resize, dataset.view.crop)))
    path = store.dataset_file(model, index.fingerprint)
    old = store.read(path, DatasetIndex)
    if old == index:
        return
    if old is None or old.thumbs != index.thumbs:
        thumbs = store.thumbs_dir(model, index.fingerprint)
        # Thumbnails without their index (it was damaged): what they show is unknown.
        if old is None and store.has_thumbs(model, index.fingerprint):
            log.warning("store: %s written again (the dataset index beside them was damaged)", thumbs)
        shutil.rmtree(thumbs, ignore_errors=True)  # made from another view or size, or unknown
    store.write(path, index)


def run_pass(session, plan: PassPlan, first: int, last: int, report) -> None:
    network, store = session.network(), session.store
    dataset = open_dataset(session, plan)
    # The decoded views are kept for the patches only where this process will cut them too.
    views = None if session.distributed else session.memo(("views", plan.key), lambda: ViewCache.create(
        store.pass_dir(plan.model, plan.key) / "views", len(dataset), dataset.view.crop))
    options = PassSettings(plan.top_k, plan.summary_settings(), plan.batch_size, plan.workers, plan.checkpoint_every)
    record = run_shard(network, dataset, plan.shard(store, first, last), options, store, views=views, report=report)
    session.memo(("shard", plan.key, first, last), lambda: record)  # the summaries need not read it back


def shard_records(session, plan: PassPlan) -> list[PassShard]:
    """The states of the pass's shards: this process's, else read from the store (once)."""
    store = session.store
    records = [session.memo(("shard", plan.key, first, last),
                            lambda first=first, last=last: store.read(plan.shard(store, first, last).path, PassShard))
               for first, last in plan.shards]
    if any(record is None for record in records):
        for first, last in plan.shards:
            session.forget(("shard", plan.key, first, last))
        raise RuntimeError("a shard of the examples pass is missing or damaged; run the build again to redo it")
    return records


def pass_shapes(session, plan: PassPlan) -> dict:
    """(channels, height, width) of each of the pass's activations at the view's size."""
    return session.memo(("shapes", plan.key), lambda: activation_shapes(session.network(), list(plan.layers),
                                                                         plan.view[1]))


def geometry(session, plan: PassPlan) -> dict:
    """The pass's layers' catalogue entries at the view's size, on the pass's own graph."""
    network = session.network()
    names = extracted(network, list(plan.layers))
    infos = session.memo(("geometry", plan.key), lambda: catalogue(network, names, size=plan.view[1]))
    return {info.name: info for info in infos}


def summarize(session, plan: PassPlan, layer: str) -> None:
    network, store = session.network(), session.store
    records = shard_records(session, plan)
    settings = plan.summary_settings()
    shapes = pass_shapes(session, plan)
    dataset = open_dataset(session, plan)
    accumulator = merge_shards(network, records, shapes, plan.top_k, settings, layer, n_images=len(dataset),
                               labelled=dataset.labels is not None)
    if accumulator.images == 0:
        skipped = skipped_files(records)
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise UsageError(f"none of the {len(skipped)} images in {plan.folder} could be read{first}; "
                         "pass a folder of readable photos with --images")
    claim(store, plan, layer)
    arrays = accumulator.summary(settings.bands)
    if dataset.labels is not None:
        arrays["top_classes"], arrays["top_class_counts"] = class_summary(
            arrays["top_index"], dataset.labels, settings.class_summary)
    summary = ExamplesSummary(**arrays)
    store.write(store.examples_summary_file(plan.model, layer), summary)
    atlas_file = store.atlas_vectors_file(plan.model, layer)
    if accumulator.reservoir is not None:
        kept, sampling = accumulator.reservoir, accumulator.atlas
        store.write(atlas_file, AtlasVectors(
            keys=kept.keys, vectors=kept.vectors, image=kept.image, y=kept.y, x=kept.x,
            settings=np.array([kept.capacity, kept.width, kept.seed, sampling.positions], dtype=np.int64)))
    else:
        atlas_file.unlink(missing_ok=True)
    write_unit_records(store, plan, layer, accumulator, dataset)
    session.memo(("summary", plan.key, layer), lambda: summary)
    # What the patch jobs need, kept for them where this process cuts them too (summaries run inline, on one
    # core); summaries run in forked workers leave it to each patch worker, which reads the stored summary.
    patches_of(session, plan, layer)


def write_unit_records(store: Store, plan: PassPlan, layer: str, accumulator, dataset: ImageDataset) -> None:
    """similar.npz (the units' correlation, nearest units, families) and, with labels, concepts.json."""
    settings = plan.summary_settings()
    similar_file, concepts_file = store.similar_file(plan.model, layer), store.concepts_file(plan.model, layer)
    if accumulator.correlation is not None:
        store.write(similar_file, similar_units(accumulator.correlation.matrix(), accumulator.correlation.count))
    else:
        similar_file.unlink(missing_ok=True)
    if accumulator.maxima is None or dataset.labels is None:
        concepts_file.unlink(missing_ok=True)
        return
    index, maxima = accumulator.maxima.result()
    labels = np.asarray(dataset.labels, dtype=np.int64)
    store.write(concepts_file, label_layer(layer, maxima, labels[index], of_labels(dataset.classes, dataset.labels),
                                           images=accumulator.images, min_images=settings.concept_min_images,
                                           k=plan.top_k, seed=settings.seed))


def patches_of(session, plan: PassPlan, layer: str) -> LayerPatches:
    """The patches to cut for one layer (from its summary: this process's, else the stored one)."""
    def make():
        store, settings = session.store, plan.summary_settings()
        summary = session.memo(("summary", plan.key, layer), lambda: store.read(
            store.examples_summary_file(plan.model, layer), ExamplesSummary))
        if summary is None:
            raise RuntimeError(f"the examples summary of {layer} is missing; run the build again")
        return LayerPatches.from_summary(geometry(session, plan)[layer], store.patches_dir(plan.model, layer), summary,
                                         settings.band_patches, settings.bottom_patches)
    return session.memo(("layer patches", plan.key, layer), make)


def claim(store: Store, plan: PassPlan, layer: str) -> None:
    """Mark the layer as being computed by this pass; patches left by any other pass are removed."""
    directory = store.examples_dir(plan.model, layer)
    store.examples_result_file(plan.model, layer).unlink(missing_ok=True)  # stale: it does not match, or we would not be here
    pending = store.pending_file(plan.model, layer)
    try:
        current = pending.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        current = None
    if current != plan.key:
        shutil.rmtree(store.patches_dir(plan.model, layer), ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)
        pending.write_text(plan.key + "\n", encoding="utf-8")
    complete_chunks(store.patches_dir(plan.model, layer))  # leftovers of a killed run go


def class_summary(top_index: np.ndarray, labels, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n classes most frequent among each unit's top examples (ties: lower class first)."""
    labels = np.asarray(labels)
    classes = np.full((top_index.shape[0], n), -1, np.int64)
    counts = np.zeros((top_index.shape[0], n), np.int64)
    for unit, row in enumerate(top_index):
        values, number = np.unique(labels[row[row >= 0]], return_counts=True)
        order = np.lexsort((values, -number))[:n]
        classes[unit, : order.size], counts[unit, : order.size] = values[order], number[order]
    return classes, counts


def layer_patches(session, plan: PassPlan) -> tuple[list[LayerPatches], set[int]]:
    """Every layer's patches to cut and the images that need a thumbnail (those of any example)."""
    def make():
        found = [patches_of(session, plan, layer) for layer in plan.layers]  # (each reads its summary)
        thumbs = set()
        for layer in plan.layers:
            summary = session.memo(("summary", plan.key, layer), lambda: None)
            for indices in (summary.top_index, summary.bottom_index, summary.band_index):
                thumbs.update(np.unique(indices[indices >= 0]).tolist())
        return found, thumbs
    return session.memo(("patches", plan.key), make)


def cut(session, plan: PassPlan, chunk: int) -> None:
    store, settings = session.store, plan.summary_settings()
    layers, thumbs = layer_patches(session, plan)
    dataset = open_dataset(session, plan)
    mine = [i for i in thumbs if i // settings.pack_images == chunk]
    thumb_paths = {i: store.thumb_file(plan.model, plan.fingerprint, i)
                   for i in example_thumbs.to_write(store, plan.model, plan.fingerprint, mine)}
    form = patch_format(settings)
    failed = cut_chunk(dataset, chunk, layers, thumb_paths, form, session.memo(("views", plan.key), lambda: None))
    example_thumbs.record(store, plan.model, plan.fingerprint, thumb_paths, settings.pack_images)
    if failed:
        raise UsageError(f"{failed} example images in {plan.folder} could no longer be read while cutting "
                         "patches; did the folder change during the run? Run the stage again")


def patch_format(settings: SummarySettings) -> PatchFormat:
    return PatchFormat(settings.patch_size, settings.patch_quality, settings.patch_format, settings.thumb_size,
                       settings.pack_images)


def repair_thumbs(session, spec: dict) -> None:
    """The "thumbs" step: rewrite the dataset index if it is damaged, then every needed thumbnail that is
    missing, damaged or unrecorded - from the images folder, without recomputing any layer."""
    store, settings = session.store, SummarySettings.from_json(spec["settings"])
    dataset = scanned(session, spec["folder"], spec["labels"], spec["sample"], spec["view"], spec["fingerprint"])
    if store.read(store.dataset_file(spec["model"], spec["fingerprint"]), DatasetIndex) is None:
        write_index(store, spec["model"], dataset, settings)
    todo = example_thumbs.to_write(store, spec["model"], spec["fingerprint"], spec["indices"])
    failed = example_thumbs.rewrite(store, spec["model"], dataset, todo, patch_format(settings))
    if failed:
        raise UsageError(f"{failed} example images in {spec['folder']} could no longer be read while writing "
                         "thumbnails; did the folder change? Run the build again")


def release(session, plan: PassPlan) -> None:
    views = session.forget(("views", plan.key))
    if views is not None:  # never trusted by a later run (see viewcache.py)
        views.remove()  # before any sync, which would write its ~150 KB per image


def finish(session, plan: PassPlan, layer: str) -> None:
    network, store, settings = session.network(), session.store, plan.summary_settings()
    os.sync()  # patches and thumbnails are written without fsync; flush them all at once
    directory = store.examples_dir(plan.model, layer)
    optional = [store.atlas_vectors_file(plan.model, layer), store.similar_file(plan.model, layer),
                store.concepts_file(plan.model, layer)]
    files = [store.examples_summary_file(plan.model, layer).name] + [path.name for path in optional if path.is_file()] + \
        [f"{PATCHES}/{name}" for name in pack_indexes(store.patches_dir(plan.model, layer))]
    records = shard_records(session, plan)
    skipped = skipped_files(records)
    dataset = open_dataset(session, plan)
    result = ExamplesResult(
        key=plan.results[layer]["key"], identity=plan.results[layer]["identity"], model=plan.model,
        weights_id=network.weights_id, layer=layer,
        dataset=DatasetRef(plan.fingerprint, dataset.root.resolve().name, len(dataset)),
        view=ViewSettings(*plan.view), top_k=plan.top_k, n_images=_images(records, layer, plan),
        skipped=len(skipped), skipped_files=skipped[:SKIPPED_LISTED],
        histogram_of=network.layer(layer).pre_relu or layer, grid=geometry(session, plan)[layer],
        patches=PatchSettings(settings.patch_format, settings.patch_size, settings.patch_quality, list(PAD_COLOUR),
                              ["top", "bottom"] + (["band"] if settings.band_patches else []),
                              settings.bottom_patches),
        batch_size=plan.batch_size, files={name: FileStamp.of_file(directory / name) for name in files})
    store.write(store.examples_result_file(plan.model, layer), result)
    store.pending_file(plan.model, layer).unlink(missing_ok=True)


def skipped_files(records: list[PassShard]) -> list[tuple[str, str]]:
    return [tuple(item) for record in sorted(records, key=lambda r: r.info()["first"]) for item in record.info()["skipped"]]


def _images(records: list[PassShard], layer: str, plan: PassPlan) -> int:
    """Images the pass read: the layer's accumulator count, summed over the shards."""
    position = plan.layers.index(layer)
    return sum(int(record.state[f"{position}/images"]) for record in records)


def clean(session, plan: PassPlan) -> None:
    shutil.rmtree(session.store.pass_dir(plan.model, plan.key), ignore_errors=True)
    keys = [("patches", plan.key), ("geometry", plan.key), ("shapes", plan.key)]
    keys += [(name, plan.key, layer) for layer in plan.layers for name in ("summary", "layer patches")]
    keys += [("shard", plan.key, first, last) for first, last in plan.shards]
    for key in keys:
        session.forget(key)
