"""The atlas's `cells` stage: read the photos holding the chosen vectors once, and describe every cell.

See atlas/cells.py for what is said of a cell. Writes the patch pack and each level's AtlasCells,
then `cells.json` (AtlasStage) last; reused while the layout, weights and settings are unchanged.
"""
from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
import torch

from microscope.atlas.attribution import Attribution
from microscope.atlas.cells import (CellSettings, LevelCells, attribution_rows, cell_classes, nearest_units,
                                    pack_patches, patch_entries, typical_rows, write_cells)
from microscope.atlas.compute import sample_of
from microscope.atlas.stored import stage_key
from microscope.errors import UsageError
from microscope.store import AtlasLayout, AtlasResult, AtlasStage, ExamplesResult, Store


def read_layout(store: Store, model: str, layer: str) -> tuple[AtlasResult, AtlasLayout]:
    result = store.read(store.atlas_result_file(model, layer), AtlasResult)
    layout_file = store.atlas_layout_file(model, layer)
    layout = store.read(layout_file, AtlasLayout, result.files.get(layout_file.name)) if result else None
    if layout is None:
        raise UsageError(f"{layer} has no atlas layout in {store.root}; run `build.py atlas --layers {layer}` again")
    return result, layout


def describe(network, dataset, store: Store, model: str, layer: str, settings: CellSettings, report,
             batch_size: int = 16) -> AtlasStage:
    """Describe every shown cell of the layer's atlas; `report(done, total)` as photos are read."""
    began = time.perf_counter()
    result, layout = read_layout(store, model, layer)
    sample, _ = sample_of(store, model, layer)
    examples = store.read(store.examples_result_file(model, layer), ExamplesResult)  # the caller checked its images
    levels = [LevelCells.of(layout, level, result.min_count) for level in range(2)]
    units = [nearest_units(level.mean, settings.nearest_units) for level in levels]
    patches = [np.array([typical_rows(sample.vectors, sample.image, members, mean, settings.patches)
                         for members, mean in zip(level.members, level.mean)], np.int64).reshape(-1, settings.patches)
               for level in levels]
    attribute = Attribution(network, layer)
    attributed = attribution_rows(levels, settings.attribution_vectors, settings.seed) if attribute.logits \
        else np.zeros(0, np.int64)
    attribution, entries = photo_pass(network, dataset, layer, sample, attributed, patch_requests(sample, patches),
                                      lambda view, requests: patch_entries(examples.grid, view, requests, settings),
                                      attribute, report, batch_size)
    classes = [cell_classes(level, attributed, attribution if attribute.logits else None, settings.top_classes)
               for level in levels]
    files = {**pack_patches(store, model, layer, entries),
             **write_cells(store, model, layer, levels, units, classes, patches)}
    stage = AtlasStage(key=stage_key(result.key, network.weights_id, settings), layout_key=result.key,
                       weights_id=network.weights_id, settings={**asdict(settings), "attributed": len(attributed),
                                                                "logits": attribute.logits or ""},
                       seconds={"cells": time.perf_counter() - began}, files=files)
    store.write(store.atlas_stage_file(model, layer, "cells"), stage)
    return stage


def patch_requests(sample, patches: list[np.ndarray]) -> dict[int, list]:
    """image -> [(cell, level, rank, y, x)] of the patches to cut from it."""
    requests: dict[int, list] = {}
    for level, rows in enumerate(patches):
        for cell, rank in zip(*np.nonzero(rows >= 0)):
            row = rows[cell, rank]
            requests.setdefault(int(sample.image[row]), []).append(
                (int(cell), level, int(rank), int(sample.y[row]), int(sample.x[row])))
    return requests


def photo_pass(network, dataset, layer: str, sample, attributed: np.ndarray, requests: dict, cut, attribute, report,
               batch_size: int) -> tuple[np.ndarray, list]:
    """Read each photo holding an attributed vector or a patch once: (attribution (len(attributed), classes),
    encoded patch entries)."""
    wanted = np.unique(np.concatenate([sample.image[attributed], np.array(list(requests), np.int64)]))
    of_image = sample.image[attributed]
    by_image = {int(image): np.flatnonzero(of_image == image) for image in np.unique(of_image)}
    found_rows, found_values, entries, done = [], [], [], 0
    for batch in dataset.batches(batch_size, only=wanted.tolist()):
        if batch.skipped:
            raise UsageError(f"{batch.skipped[0][0]} can no longer be read ({batch.skipped[0][1]}); the atlas of "
                             f"{layer} needs the photos its sample was drawn from")
        indices = batch.indices.tolist()
        views = batch.images.permute(0, 2, 3, 1).numpy()
        for position, image in enumerate(indices):
            if image in requests:
                entries += cut(views[position], requests[image])
        rows = [(position, i) for position, image in enumerate(indices) for i in by_image.get(image, [])]
        if rows:
            with torch.no_grad():
                activation = network.activations(batch.images.float().div(255), [layer])[layer]
            index = np.array([i for _, i in rows])
            found_rows.append(index)
            found_values.append(attribute(activation, np.array([p for p, _ in rows]), sample.y[attributed[index]],
                                          sample.x[attributed[index]]))
        done += len(indices)
        report(done, len(wanted))
    attribution = np.zeros((len(attributed), 0), np.float32)
    if found_rows:
        attribution = np.empty((len(attributed), found_values[0].shape[1]), np.float32)
        attribution[np.concatenate(found_rows)] = np.concatenate(found_values)
    return attribution, entries
