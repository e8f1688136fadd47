"""Small artifact stores for the site tests, written with the store's typed records, as the views write them.

Images are real files (PNG renders, WebP patches, JPEG dataset thumbnails) in solid, known colours,
so a test can check the pixels the site shows against the source they came from.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from microscope.packs import write_pack
from microscope.store import (CircuitArrays, CircuitResult, DatasetIndex, DatasetRef, ExamplesResult, ExamplesSummary,
                              FileStamp, LayerInfo,
                              ModelRecord, PatchSettings, RenderConfig, RenderImage, RenderRecord, Store, ThumbSettings,
                              ViewSettings, atomic_write_bytes)
from microscope.store.files import image_bytes

FINGERPRINT = "d5e1f00d"
N_IMAGES = 10
TOP_K, BOTTOM_K, BAND_SAMPLES = 6, 3, 2
WEIRD_LAYER = 'a<b"c'
OBJECTIVES = {"channel": ["channel.png"], "neuron": ["neuron.png"], "negative": ["negative.png"],
              "diversity": ["diversity-0.png", "diversity-1.png"]}
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
               examples_layers=("conv1", WEIRD_LAYER), featurevis_units=None, circuits=("mixed_a",)) -> Store:
    """A store with one model: featurevis and/or examples for the given layers."""
    store = Store(root)
    layers = catalogue()
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
        folder = store.unit_dir(model, layer, unit)
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
    files = {"summary.npz": store.write(store.summary_file(model, layer), ExamplesSummary(**arrays))}
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
    store.write(store.result_file(model, layer), ExamplesResult(
        key="test", identity={"version": 2}, model=model, weights_id="random-seed0", layer=layer,
        dataset=DatasetRef(FINGERPRINT, "photos", N_IMAGES), view=ViewSettings(32, 32), top_k=TOP_K,
        n_images=N_IMAGES, skipped=0, skipped_files=[], histogram_of=f"{layer}_pre_relu", grid=info,
        patches=PatchSettings("webp", 24, 100, [128, 128, 128], ["top", "bottom"], BOTTOM_K), batch_size=4,
        files={name: stamp for name, stamp in files.items() if isinstance(stamp, FileStamp)}))
    assert folder.is_dir()
