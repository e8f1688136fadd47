"""The examples stage: one pass for all chosen layers, then patches, thumbnails and configs.

Order of writes, so that a killed run never leaves a result a later run would trust:
1. `datasets/<fingerprint>/images.json` (what index i means), once per dataset;
2. the pass, checkpointed (stream.py); a layer's previous result stays untouched meanwhile. The
   pass keeps its decoded views in a temporary file for the patches (viewcache.py);
3. per layer: the old config.json goes, `pending.json` names this run (patches of another run
   are removed), then `summary.npz`, patches and thumbnails (patches of this run are kept);
4. per layer `config.json`, last: a layer is complete exactly when its config.json matches.
"""
from __future__ import annotations

import os
import shutil

import numpy as np

from microscope.catalogue import GLOBAL, LayerInfo, layer_fields
from microscope.errors import UsageError
from microscope.examples.config import ExampleSettings, is_current, result_key, run_id, view_json
from microscope.examples.patches import PAD_COLOUR, LayerPatches, write_patches
from microscope.examples.stream import extracted, stream_pass
from microscope.examples.viewcache import ViewCache
from microscope.images import default_workers
from microscope.store import Store, atomic_save_npz, atomic_write_json, load_npz, read_json

SKIPPED_LISTED = 100  # unreadable files named in config.json; all of them are counted


def compute_examples(network, dataset, layers, *, top_k: int = 48, store, batch_size: int = 32,
                     workers: int | None = None, checkpoint_every: int = 50, progress: bool = True,
                     settings: ExampleSettings = ExampleSettings(),
                     on_batch=None) -> dict[str, dict[str, np.ndarray]]:
    """Dataset examples of every channel of `layers`, stored under `store`; returns layer -> summary.

    `dataset` is a microscope.images.ImageDataset whose view is what the model sees (for examples:
    View(resize=224, crop=224)). Layers whose stored config matches are not recomputed; all the
    others are computed in one pass over the images. `checkpoint_every` is in batches.
    """
    layers = _check(network, dataset, layers, top_k, batch_size, workers, checkpoint_every)
    store = store if isinstance(store, Store) else Store(store)
    model = network.spec.name
    keys = {layer: result_key(network, dataset, layer, top_k, settings) for layer in layers}
    write_dataset_index(store, model, dataset, settings)
    todo = [layer for layer in layers if not is_current(store, model, layer, keys[layer])]
    if todo:
        _compute(network, dataset, todo, keys, store, top_k=top_k, settings=settings, batch_size=batch_size,
                 workers=default_workers() if workers is None else workers,
                 checkpoint_every=checkpoint_every, progress=progress, on_batch=on_batch)
    return {layer: load_npz(store.examples_dir(model, layer) / "summary.npz") for layer in layers}


def _check(network, dataset, layers, top_k, batch_size, workers, checkpoint_every) -> list[str]:
    if isinstance(layers, str):
        layers = [name.strip() for name in layers.split(",") if name.strip()]
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise UsageError("no layers chosen; pass --layers with one or more of: "
                         + ", ".join(network.spec.layer_names))
    for layer in layers:
        network.layer(layer)  # an unknown name raises, listing the valid ones
    if top_k < 1:
        raise UsageError(f"--top must be at least 1 (examples kept per unit), got {top_k}")
    if batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {batch_size}")
    if workers is not None and workers < 0:
        raise UsageError(f"number of loader workers must be 0 or more, got {workers}")
    if checkpoint_every < 1:
        raise UsageError(f"checkpoint interval must be at least 1 batch, got {checkpoint_every}")
    if len(dataset) >= 2**31:
        raise UsageError(f"{len(dataset)} images is more than the examples stage indexes (2**31 - 1); split the folder")
    return layers


def write_dataset_index(store: Store, model: str, dataset, settings: ExampleSettings) -> None:
    """images.json: the files in index order (relative to root), labels, and how thumbnails look."""
    directory = store.dataset_dir(model, dataset.fingerprint())
    index = {
        "fingerprint": dataset.fingerprint(), "root": str(dataset.root.resolve()),
        "files": list(dataset.files), "labels": None if dataset.labels is None else list(dataset.labels),
        "classes": dataset.classes,
        "thumbs": {"size": settings.thumb_size, "format": "jpg", "view": view_json(dataset.view)},
    }
    old = read_json(directory / "images.json")
    if old == index:
        return
    if old is not None and old.get("thumbs") != index["thumbs"]:
        shutil.rmtree(directory / "thumbs", ignore_errors=True)  # made from another view or size
    atomic_write_json(directory / "images.json", index)


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


def _compute(network, dataset, layers, keys, store: Store, *, top_k, settings, batch_size, workers,
             checkpoint_every, progress, on_batch) -> None:
    model = network.spec.name
    run = run_id([keys[layer] for layer in layers], batch_size)
    checkpoint = store.model_dir(model) / "examples-runs" / f"{run}.pt"
    thumb_dir = store.dataset_dir(model, dataset.fingerprint()) / "thumbs"
    views = ViewCache.create(checkpoint.with_suffix(".views"), len(dataset), dataset.view.crop)
    try:
        n_images, skipped, infos = _pass_and_patches(
            network, dataset, layers, store, checkpoint, views, thumb_dir, run=run, top_k=top_k, settings=settings,
            batch_size=batch_size, workers=workers, checkpoint_every=checkpoint_every, progress=progress,
            on_batch=on_batch)
    finally:
        if views is not None:  # never trusted by a later run (see viewcache.py)
            views.remove()  # before the sync below, which would otherwise write its ~150 KB per image
    os.sync()  # patches and thumbnails are written without fsync; flush them all at once
    for layer in layers:
        info = infos[layer]
        atomic_write_json(store.examples_dir(model, layer) / "config.json", {
            "key": keys[layer], "model": model, "weights_id": network.weights_id, "layer": layer,
            "dataset": {"fingerprint": dataset.fingerprint(), "root": str(dataset.root.resolve()),
                        "files": len(dataset)},
            "view": view_json(dataset.view), "top_k": top_k, "version": keys[layer]["version"],
            "n_images": n_images, "skipped": len(skipped), "skipped_files": skipped[:SKIPPED_LISTED],
            "histogram_of": network.layer(layer).pre_relu or layer,
            "grid": {"channels": info.channels, "height": info.height, "width": info.width,
                     "stride": info.stride, "rf_size": info.rf_size, "rf_offset": info.rf_offset},
            "patches": {"format": settings.patch_format, "size": settings.patch_size,
                        "quality": settings.patch_quality, "pad_colour": list(PAD_COLOUR),
                        "kinds": ["top", "bottom"] + (["band"] if settings.band_patches else []),
                        "bottom": settings.bottom_patches},
            "thumbs": str(thumb_dir.relative_to(store.root)),
            "batch_size": batch_size,
        })
        (store.examples_dir(model, layer) / "pending.json").unlink(missing_ok=True)
    checkpoint.unlink(missing_ok=True)


def _pass_and_patches(network, dataset, layers, store: Store, checkpoint, views, thumb_dir, *, run, top_k,
                      settings, batch_size, workers, checkpoint_every, progress, on_batch):
    """The pass, then each layer's summary.npz, patches and thumbnails: all but the configs."""
    model = network.spec.name
    state, skipped, shapes = stream_pass(
        network, dataset, layers,
        top_k=top_k, settings=settings, batch_size=batch_size, workers=workers, checkpoint=checkpoint,
        run=run, checkpoint_every=checkpoint_every, progress=progress, views=views, on_batch=on_batch)
    n_images = state[layers[0]].images
    dataset.skipped = [tuple(item) for item in skipped]  # as ImageDataset.loader reports its pass
    if n_images == 0:
        checkpoint.unlink(missing_ok=True)
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise UsageError(f"none of the {len(dataset)} images in {dataset.root} could be read{first}; "
                         "pass a folder of readable photos with --images")
    for layer in layers:  # only now: until the new result is ready, the old one stays usable
        _claim(store, model, layer, run)
    infos = _geometry(network, layers, shapes)
    patches, thumbs = [], set()  # thumbs: dataset indices of every example image
    for layer in layers:
        summary = state[layer].summary(settings.bands)
        if dataset.labels is not None:
            summary["top_classes"], summary["top_class_counts"] = class_summary(
                summary["top_index"], dataset.labels, settings.class_summary)
        directory = store.examples_dir(model, layer)
        atomic_save_npz(directory / "summary.npz", **summary)
        patches.append(LayerPatches.from_summary(infos[layer], directory / "patches", summary,
                                                 settings.band_patches, settings.bottom_patches))
        for name in ("top_index", "bottom_index", "band_index"):
            thumbs.update(np.unique(summary[name][summary[name] >= 0]).tolist())
    thumbs = {index: thumb_dir / f"{index}.jpg" for index in sorted(thumbs)}
    unreadable = write_patches(dataset, patches, size=settings.patch_size, quality=settings.patch_quality,
                               suffix=settings.patch_format, thumbs=thumbs, thumb_size=settings.thumb_size,
                               views=views, progress=progress)
    if unreadable:
        raise UsageError(f"{unreadable} example images could no longer be read while cutting patches; "
                         "did the folder change during the run? Run the stage again")
    return n_images, skipped, infos


def _geometry(network, layers: list[str], shapes: dict) -> dict[str, LayerInfo]:
    """Receptive fields of the layers, walked on the pass's own graph (no extra tracing)."""
    fields = layer_fields(network, extracted(network, layers))
    infos = {}
    for layer in layers:
        spec, field = network.layer(layer), fields[layer]
        local = field is not None and field != GLOBAL
        infos[layer] = LayerInfo(
            name=layer, kind=spec.kind, channels=shapes[layer][0], height=shapes[layer][1], width=shapes[layer][2],
            stride=field.stride if local else None, rf_size=field.size if local else None,
            rf_offset=field.offset if local else None, pre_relu=spec.pre_relu, description=spec.description)
    return infos


def _claim(store: Store, model: str, layer: str, run: str) -> None:
    """Mark the layer as being computed by `run`; patches left by any other run are removed."""
    directory = store.examples_dir(model, layer)
    (directory / "config.json").unlink(missing_ok=True)  # stale: it does not match, or we would not be here
    pending = read_json(directory / "pending.json")
    if pending is None or pending.get("run") != run:
        shutil.rmtree(directory / "patches", ignore_errors=True)
        atomic_write_json(directory / "pending.json", {"run": run})
