"""Small artifact stores for the site tests, written with the store's typed records, as the views write them.

Images are real files (PNG renders, WebP patches, JPEG dataset thumbnails) in solid, known colours,
so a test can check the pixels the site shows against the source they came from.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from microscope.atlas.stored import LEVELS, icons_key
from microscope.featurevis.recipe import Recipe
from microscope.featurevis.registry import DEFAULT_OBJECTIVES, UNIT_OBJECTIVES
from microscope.data.packs import write_pack
from microscope.store import (AtlasCells, AtlasIcons, AtlasLayout, AtlasResult, AtlasStage, CircuitArrays,
                              CircuitResult, ConceptInfo, ConceptScore, DatasetIndex, DatasetRef, ExamplesResult, ExamplesSummary, FileStamp,
                              LayerInfo, ModelRecord, PatchSettings, RenderConfig, RenderImage, RenderRecord, SaeResult,
                              SaeWeights, Store, ThumbSettings, UnitConcepts, UnitSimilarity, ViewSettings,
                              LayerConcepts, atomic_write_bytes)
from microscope.store.files import image_bytes

FINGERPRINT = "d5e1f00d"
N_IMAGES = 10
TOP_K, BOTTOM_K, BAND_SAMPLES = 6, 3, 2
WEIRD_LAYER = 'a<b"c'
# The default objectives, as the view names their files; 2 diversity images keep the stores small. (The
# transparent channel-alpha has its own site test: tests/test_featurevis_alpha.py.)
OBJECTIVES = {name: UNIT_OBJECTIVES[name].files(Recipe(diversity_images=2), "png") for name in DEFAULT_OBJECTIVES}
FILES = [name for files in OBJECTIVES.values() for name in files]
BAND_NAMES = ["top 10%", "10-50%"]
ACTIVATION_MAX = 3.0  # of every stored render on its unit


def render_colour(layer_index: int, unit: int, objective_index: int) -> tuple[int, int, int]:
    return ((40 * layer_index + 60) % 256, (23 * unit + 30) % 256, (50 * objective_index + 20) % 256)


def patch_colour(unit: int, kind: int, rank: int) -> tuple[int, int, int]:
    return ((31 * unit + 90 * kind) % 256, (53 * rank + 10) % 256, (17 * unit + 40 * rank + 100) % 256)


def layer_entry(name, kind, channels, size, stride, rf, description="") -> LayerInfo:
    return LayerInfo(name, kind, channels, size, size, stride, rf, (rf - 1) / 2 if rf else None, None, description)


def catalogue() -> list[LayerInfo]:
    return [
        layer_entry("conv1", "conv", 4, 8, 4, 11, "7x7 convolution"),
        layer_entry("conv1_pre_relu", "pre_relu", 4, 8, 4, 11),
        layer_entry("mixed_a", "block", 5, 4, 8, 27, "inception block a"),
        layer_entry("mixed_a_1x1", "branch", 2, 4, 8, 19),
        layer_entry("mixed_b", "block", 6, 4, 8, 43, "inception block b (not computed)"),
        layer_entry(WEIRD_LAYER, "block", 3, 2, 16, 59, "a layer with an unsafe name"),
        layer_entry("logits", "logits", 10, 1, None, None, "class scores"),
    ]


def make_store(root: Path, model: str = "tiny", featurevis_layers=("conv1", "mixed_a", WEIRD_LAYER),
               examples_layers=("conv1", WEIRD_LAYER), featurevis_units=None, circuits=("mixed_a",),
               layers: list[LayerInfo] | None = None, concept_layers=()) -> Store:
    """A store with one model (its layers: `catalogue()` unless given): featurevis and/or examples for the
    given layers, concept labels and similar units (`write_concepts`) for `concept_layers`."""
    store = Store(root)
    layers = catalogue() if layers is None else layers
    store.write(store.model_file(model), ModelRecord(
        name=model, title="Tiny test net", description="A made-up network for the site tests.",
        weights_id="random-seed0", input_size=32, layers=layers, categories=[f"class <{i}>" for i in range(5)]))
    store.write(store.dataset_file(model, FINGERPRINT), DatasetIndex(
        fingerprint=FINGERPRINT, name="photos", root="/data/photos",
        files=[f"cls{i % 3}/img_{i}.jpg" for i in range(N_IMAGES)], labels=[i % 3 for i in range(N_IMAGES)],
        classes=["cls0", "cls1", "<cls2>"], thumbs=ThumbSettings(48, "jpg", ViewSettings(32, 32))))
    for i in range(N_IMAGES):
        image = Image.new("RGB", (48, 48), (20 * i, 100, 200))
        atomic_write_bytes(store.thumb_file(model, FINGERPRINT, i), image_bytes(image, ".jpg", quality=90))
    for position, info in enumerate(layers):
        if info.name in featurevis_layers:
            units = range(info.channels) if featurevis_units is None else featurevis_units
            write_featurevis(store, model, info.name, position, units)
        if info.name in examples_layers:
            write_examples(store, model, info)
        if info.name in concept_layers:
            write_concepts(store, model, info)
    chain = [info for info in layers if info.kind in ("conv", "block", "logits")]
    for previous, info in zip(chain, chain[1:]):
        if info.name in circuits:
            write_circuits(store, model, previous, info)
    return store


def write_circuits(store: Store, model: str, previous: LayerInfo, layer: LayerInfo, top: int = 2) -> None:
    """As microscope/views/circuits.py writes them: 3x3 maps, sums, each unit's 2 + 2 strongest inputs."""
    rng = np.random.default_rng(2)
    maps = rng.normal(size=(layer.channels, previous.channels, 3, 3))
    sums = maps.sum(axis=(2, 3))
    order = [np.concatenate([np.argsort(-row, kind="stable")[:top], np.argsort(row, kind="stable")[:top]]) for row in sums]
    top_index = np.array(order, np.int64)
    folder = store.circuits_dir(model, layer.name)
    stamp = store.write(folder / "weights.npz", CircuitArrays(
        sums=sums, top_index=top_index, top_value=np.take_along_axis(sums, top_index, 1),
        maps=np.take_along_axis(maps, top_index[:, :, None, None], 1).astype(np.float32),
        box=np.tile(np.array([0, 0, 3, 3], np.int32), (layer.channels, 1))))
    store.write(folder / "result.json", CircuitResult(
        key="test", model=model, weights_id="random-seed0", previous=previous.name, layer=layer.name,
        target=f"{layer.name}_pre_relu", top=top, input_size=7, centre=[3, 3], local=True,
        linearised=["2 x ReLU -> identity"], files={"weights.npz": stamp}))


def write_featurevis(store: Store, model: str, layer: str, layer_index: int, units) -> None:
    """As microscope/views/featurevis.py writes them: the images, then one record per objective."""
    config = RenderConfig(model=model, weights_id="random-seed0", layer=layer, optimised_layer=layer,
                          recipe={"version": "test/1", "learning_rate": 0.05}, seed=0, steps=8, size=40,
                          precision="fp32", image_format="png")
    for unit in units:
        folder = store.renders_dir(model, layer, unit)
        for objective, files in OBJECTIVES.items():
            images = []
            for i, name in enumerate(files):
                picture = Image.new("RGB", (40, 40), render_colour(layer_index, unit, FILES.index(name)))
                stamp = atomic_write_bytes(folder / name, image_bytes(picture, ".png"))
                images.append(RenderImage(file=name, stamp=stamp, objective_final=1.5 + unit + i,
                                          loss_curve=[-0.1 * step * (i + 1) for step in range(40)],
                                          activation_mean=0.5, activation_max=ACTIVATION_MAX))
            store.write(store.render_file(model, layer, unit, objective), RenderRecord(
                unit=unit, objective=objective, config=config, loss_curve_steps=list(range(0, 320, 8)),
                images=images))


def write_examples(store: Store, model: str, info: LayerInfo) -> None:
    """As microscope/examples/steps.py writes them: summary.npz, patches, then result.json."""
    layer, channels, grid = info.name, info.channels, info.height
    rng = np.random.default_rng(1)
    arrays = {"top_values": -np.sort(-rng.uniform(1, 10, size=(channels, TOP_K)), axis=1).astype(np.float32),
              "bottom_values": np.sort(rng.uniform(-5, 0, size=(channels, BOTTOM_K)), axis=1).astype(np.float32)}
    for kind, k in (("top", TOP_K), ("bottom", BOTTOM_K)):
        arrays[f"{kind}_index"] = rng.integers(0, N_IMAGES, size=(channels, k)).astype(np.int64)
        arrays[f"{kind}_y"] = rng.integers(0, grid, size=(channels, k)).astype(np.int32)
        arrays[f"{kind}_x"] = rng.integers(0, grid, size=(channels, k)).astype(np.int32)
    # Fewer examples than k for the last unit: its last slot is empty, as the stage leaves it.
    arrays["top_index"][channels - 1, -1] = -1
    arrays["top_values"][channels - 1, -1] = np.nan
    arrays["top_y"][channels - 1, -1] = arrays["top_x"][channels - 1, -1] = -1
    edges = np.linspace(-5, 10, 33)
    arrays["hist_edges"] = np.tile(edges, (channels, 1))
    counts = rng.integers(1, 500, size=(channels, 32)).astype(np.int64)
    counts[:, :2] = 0  # spare empty bins at the low end, as the histogram grid leaves them
    arrays["hist_counts"] = counts
    arrays["mean"] = rng.uniform(0, 1, size=channels)
    arrays["nonzero_fraction"] = rng.uniform(0, 1, size=channels)
    arrays["n_positions"] = np.full(channels, N_IMAGES * grid * grid)
    shape = (channels, len(BAND_NAMES), BAND_SAMPLES)
    arrays["band_names"] = np.array(BAND_NAMES)
    arrays["band_fractions"] = np.array([[0.0, 0.1], [0.1, 0.5]])
    arrays["band_values"] = rng.uniform(0, 5, size=shape).astype(np.float32)
    arrays["band_index"] = rng.integers(0, N_IMAGES, size=shape).astype(np.int64)
    arrays["band_y"] = np.zeros(shape, np.int32)
    arrays["band_x"] = np.zeros(shape, np.int32)
    arrays["band_count"] = np.full(shape[:2], 3, np.int64)
    arrays["band_value_range"] = np.tile(np.array([[2.0, 5.0], [0.5, 2.0]]), (channels, 1, 1))
    arrays["band_fraction_range"] = np.tile(np.array([[0.0, 0.1], [0.1, 0.5]]), (channels, 1, 1))
    arrays["top_classes"] = np.tile(np.array([2, 0, -1]), (channels, 1)).astype(np.int64)
    arrays["top_class_counts"] = np.tile(np.array([3, 2, 0]), (channels, 1)).astype(np.int64)
    folder = store.examples_dir(model, layer)
    files = {"summary.npz": store.write(store.examples_summary_file(model, layer), ExamplesSummary(**arrays))}
    packs = {}  # chunk -> entries, as microscope/examples/patches.py packs them
    for unit in range(channels):
        for kind_index, (kind, k) in enumerate((("top", TOP_K), ("bottom", BOTTOM_K))):
            for rank in range(k):
                image = arrays[f"{kind}_index"][unit, rank]
                if image < 0:
                    continue
                patch = Image.new("RGB", (24, 24), patch_colour(unit, kind_index, rank))
                # 4 images a pack (the stage packs 64), so that units read from several packs
                packs.setdefault(int(image) // 4, []).append((unit, kind_index, rank,
                                                              image_bytes(patch, ".webp", lossless=True)))
    for chunk, entries in packs.items():
        files[f"patches/{chunk:06d}.idx.npz"] = write_pack(store.patches_dir(model, layer), chunk, entries)
    store.write(store.examples_result_file(model, layer), ExamplesResult(
        key="test", identity={"version": 2}, model=model, weights_id="random-seed0", layer=layer,
        dataset=DatasetRef(FINGERPRINT, "photos", N_IMAGES), view=ViewSettings(32, 32), top_k=TOP_K,
        n_images=N_IMAGES, skipped=0, skipped_files=[], histogram_of=f"{layer}_pre_relu", grid=info,
        patches=PatchSettings("webp", 24, 100, [128, 128, 128], ["top", "bottom"], BOTTOM_K), batch_size=4,
        files={name: stamp for name, stamp in files.items() if isinstance(stamp, FileStamp)}))
    assert folder.is_dir()


# The fixture's concepts: a WordNet-like pair under one parent, a hostile class name, and a broad one.
CONCEPTS = {
    "wn:n02084071": ConceptInfo("wn:n02084071", "dog", ["domestic dog", "Canis familiaris"], [0, 1], 4,
                                "a member of the genus Canis"),
    "wn:n02121808": ConceptInfo("wn:n02121808", "domestic cat", ["house cat"], [2], 3),
    "class:3": ConceptInfo("class:3", '<img src=x onerror="alert(1)">', [], [3], 3),
}


def concept_labels(unit: int) -> list[tuple[str, float]]:
    """The fixture's (concept id, held-out AP) of a unit, best first: unit 0 a dog unit, unit 1 polysemantic
    (dog and the hostile class, unrelated, comparable), unit 2 a cat unit, every third unit unlabelled."""
    ids = list(CONCEPTS)
    if unit % 3 == 2 and unit != 2:
        return [(ids[0], 0.05)]
    if unit == 1:
        return [(ids[0], 0.8), (ids[2], 0.7)]
    first = ids[unit % 2 * 1 if unit != 2 else 1]
    return [(first, round(0.9 - 0.01 * unit, 3)), (ids[2], 0.2)]


def write_concepts(store: Store, model: str, info: LayerInfo) -> tuple[LayerConcepts, UnitSimilarity]:
    """As microscope/examples/steps.py writes them: concepts.json (labels from `concept_labels`) and
    similar.npz (a seeded correlation matrix, nearest units and families), before result.json names them."""
    units = []
    for unit in range(info.channels):
        labels = [ConceptScore(cid, ap, precision_at_k=ap, k=TOP_K, chance=0.1, threshold=0.3, choose_ap=ap)
                  for cid, ap in concept_labels(unit)]
        unrelated = [labels[1].id] if unit == 1 else []
        units.append(UnitConcepts(unit, labels, labels[0].ap >= 0.3, 0.7 / 0.8 if unit == 1 else 0.0, unrelated))
    concepts = LayerConcepts(layer=info.name, source="WordNet 3.0 and the dataset's classes", seed=0,
                             images=N_IMAGES, sampled=N_IMAGES, choose=N_IMAGES // 2, held_out=N_IMAGES // 2,
                             min_images=2, floor=0.2, broad=0.25, scored=3, concepts=dict(CONCEPTS), units=units)
    store.write(store.concepts_file(model, info.name), concepts)
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(50, info.channels))
    vectors[:, 1::2] += vectors[:, ::2][:, : info.channels // 2]  # odd units follow the even one before them
    correlation = np.corrcoef(vectors, rowvar=False).astype(np.float32)
    n = min(4, info.channels - 1)
    ranked = np.argsort(-(correlation - 2 * np.eye(info.channels)), axis=1)[:, :n]
    family = np.arange(info.channels) // 2
    if info.channels % 2:
        family[-1] = -1
    similar = UnitSimilarity(correlation=correlation, neighbours=ranked.astype(np.int32),
                             neighbour_r=np.take_along_axis(correlation, ranked, 1).astype(np.float32),
                             family=family.astype(np.int32), positions=np.array(50), cut=np.array(0.7))
    store.write(store.similar_file(model, info.name), similar)
    return concepts, similar


def write_sae(store: Store, model: str, source: LayerInfo, features: int, fvu: float = 0.25) -> SaeWeights:
    """As microscope/sae/fit.py writes them: weights.npz, then result.json; an SAE of `source` for the
    weights "random-seed0" (the model record's), its features the layer `<source>_sae`."""
    rng = np.random.default_rng(4)
    width = source.channels
    decoder = rng.normal(size=(width, features))
    decoder /= np.linalg.norm(decoder, axis=0)  # unit-norm columns, as trained
    weights = SaeWeights(W_enc=decoder.T.astype(np.float32).copy(), b_enc=np.zeros(features, np.float32),
                         W_dec=decoder.astype(np.float32), b_pre=np.zeros(width, np.float32),
                         firing=rng.uniform(0, 0.2, features).astype(np.float32),
                         mean_activation=rng.uniform(0, 3, features).astype(np.float32),
                         nearest_neuron=np.abs(decoder).argmax(axis=0).astype(np.int64),
                         nearest_cosine=np.abs(decoder).max(axis=0).astype(np.float32))
    stamp = store.write(store.sae_weights_file(model, source.name, "random-seed0"), weights)
    store.write(store.sae_result_file(model, source.name, "random-seed0"), SaeResult(
        key="test", model=model, weights_id="random-seed0", layer=source.name, width=width, features=features, k=4,
        expansion=features // width, scale=1.0, vectors="test", dataset=FINGERPRINT, n_images=N_IMAGES,
        train_vectors=400, held_vectors=100, sampling={"edge": 1, "held_out": 0.1, "positions_per_image": 16, "seed": 0},
        training={"steps": 10, "batch_size": 64}, fvu=fvu, l0=3.5, dead_fraction=0.0,
        curve=[[0, 0.9], [10, fvu]], seconds={"training": 1.0}, files={"weights.npz": stamp}))
    return weights


ATLAS_SIDES = (2, 4)  # coarse and fine grids
ATLAS_ICONS = {"size": 8, "batch_size": 3}  # icon settings: batches of 3 cells, so a level has several files


def write_atlas(store: Store, model: str, layer: LayerInfo, vectors: int = 24) -> dict:
    """As microscope/atlas writes an atlas: the layout, then the cells and their patches, then the icons,
    each stage's record last and keyed on the one before. Returns what was written, by name."""
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 1, (vectors, 2)).astype(np.float32)
    grids = [_atlas_grid(xy, side, layer.channels) for side in ATLAS_SIDES]
    layout = AtlasLayout(xy=xy, sizes=np.array(ATLAS_SIDES, np.int64), count_coarse=grids[0][0], mean_coarse=grids[0][1],
                         count_fine=grids[1][0], mean_fine=grids[1][1])
    layout_file = store.atlas_layout_file(model, layer.name)
    result = AtlasResult(key="layout-test", model=model, layer=layer.name, vectors=FileStamp(0, "0" * 64),
                         n_vectors=vectors, layout={}, sizes=list(ATLAS_SIDES), min_count=0, seconds={},
                         files={layout_file.name: store.write(layout_file, layout)})
    store.write(store.atlas_result_file(model, layer.name), result)
    cells = {level: _atlas_cells(count, layer.channels, rng) for level, (count, _) in zip(LEVELS, grids)}
    cells_stage = _write_atlas_cells(store, model, layer.name, result.key, cells)
    icons = _write_atlas_icons(store, model, layer.name, cells_stage, cells)
    return {"layout": layout, "cells": cells, "icons": icons}


def _atlas_grid(xy: np.ndarray, side: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectors per cell of a side x side grid (row: y, column: x), and the cells' (here zero) means."""
    cell = np.minimum((xy * side).astype(np.int64), side - 1)
    count = np.zeros((side, side), np.int64)
    np.add.at(count, (cell[:, 1], cell[:, 0]), 1)
    return count, np.zeros((side, side, channels), np.float32)


def _atlas_cells(count: np.ndarray, channels: int, rng: np.random.Generator) -> AtlasCells:
    """The cells with vectors, in row-major order: 3 nearest units, 2 classes, 2 patches each."""
    row, column = np.nonzero(count)
    n = len(row)
    return AtlasCells(row=row.astype(np.int64), column=column.astype(np.int64), count=count[row, column],
                      units=rng.integers(0, channels, (n, 3)), unit_cos=rng.uniform(0, 1, (n, 3)),
                      classes=rng.integers(0, 5, (n, 2)), class_attr=rng.uniform(0, 1, (n, 2)),
                      attributed=np.ones(n, np.int64), patches=np.tile(np.arange(2), (n, 1)))


def _write_atlas_cells(store: Store, model: str, layer: str, layout_key: str, cells: dict) -> AtlasStage:
    folder = store.atlas_dir(model, layer)
    files = {}
    entries = []  # (cell, level, rank, image), as the cells stage packs them
    for level_index, (level, found) in enumerate(cells.items()):
        path = store.atlas_cells_file(model, layer, level)
        files[store.file_key(path, folder)] = store.write(path, found)
        for cell in range(len(found.row)):
            for rank in range(found.patches.shape[1]):
                patch = Image.new("RGB", (12, 12), patch_colour(cell, level_index, rank))
                entries.append((cell, level_index, rank, image_bytes(patch, ".webp", lossless=True)))
    index = store.atlas_patch_index_file(model, layer)
    files[store.file_key(index, folder)] = write_pack(index.parent, 0, entries)
    stage = AtlasStage(key="cells-test", layout_key=layout_key, weights_id="random-seed0", settings={},
                       seconds={}, files=files)
    store.write(store.atlas_stage_file(model, layer, "cells"), stage)
    return stage


def _write_atlas_icons(store: Store, model: str, layer: str, cells_stage: AtlasStage, cells: dict) -> dict:
    """Each level's icons in batches, in solid colours (cell, level); returns level -> (n, S, S, 3) pixels."""
    key = icons_key(cells_stage.layout_key, "random-seed0", ATLAS_ICONS, cells_stage.key)
    folder, side, batch = store.atlas_dir(model, layer), ATLAS_ICONS["size"], ATLAS_ICONS["batch_size"]
    files, pixels = {}, {}
    for level_index, (level, found) in enumerate(cells.items()):
        n = len(found.row)
        pixels[level] = np.zeros((n, side, side, 3), np.uint8)
        pixels[level][:] = np.array([patch_colour(cell, level_index, 5) for cell in range(n)], np.uint8)[:, None, None]
        for first in range(0, n, batch):
            path = store.atlas_icons_file(model, layer, level, first)
            part = pixels[level][first:first + batch]
            files[store.file_key(path, folder)] = store.write(path, AtlasIcons(
                pixels=part, value=np.ones(len(part), np.float32), key=np.array(key)))
    store.write(store.atlas_stage_file(model, layer, "icons"), AtlasStage(
        key=key, layout_key=cells_stage.layout_key, weights_id="random-seed0", settings=ATLAS_ICONS, seconds={},
        files=files))
    return pixels


def piece_html(path: Path) -> str:
    """The HTML a piece script (a layer's tiles-<n>.js, the SAE's features.js) hands to static/layer.js."""
    text = path.read_text(encoding="utf-8")
    prefix = "(window.MICROSCOPE_PIECES = window.MICROSCOPE_PIECES || {})["
    assert text.startswith(prefix) and text.endswith(";\n"), text[:200]
    key, value = text[len(prefix):-2].split("] = ", 1)
    assert json.loads(key) == path.name
    return json.loads(value)
