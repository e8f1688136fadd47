"""The examples view end to end on a tiny dataset: exact against brute force, resumable, strict on input.

A real InceptionV1 (Caffe layout, seeded random weights) sees 20 generated 64 x 64 photos plus one
unreadable file. The brute force runs the same network over the same batches (so every float is
computed the same way) and ranks with numpy.
"""
import dataclasses
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from microscope.network.catalogue import catalogue
from microscope.errors import UsageError
from microscope.examples.config import SummarySettings
from microscope.data.patches import PAD_COLOUR, cut_patches
from microscope.examples.patches import LayerPatches, PatchFormat, cut_chunk
from microscope.examples.stream import PassSettings, Shard, run_shard
from microscope.examples.viewcache import ViewCache
from microscope.run.executors import LocalExecutor
from microscope.data.images import ImageDataset, Framing
from microscope.network.loaded import load_network
from microscope.data.packs import read_patch_index
from microscope.run.pipeline import run_views
from microscope.run.session import Images
from microscope.store import DatasetIndex, ExamplesResult, ExamplesSummary, LayerInfo, Store
from microscope.views.examples import ExamplesSettings

MODEL = "inceptionv1-caffe"
LAYERS = ["conv1", "inception_3a"]  # a conv and a block (its pre-ReLU twin is a concatenation)
TOP = 4
BATCH = 6
SETTINGS = SummarySettings(patch_format="png", band_bins=8, band_samples=3, band_patches=True)


class Interrupt(KeyboardInterrupt):
    """As Ctrl-C would: it stops the run at once (a failing job would not)."""


@pytest.fixture(scope="module")
def network():
    return load_network(MODEL, weights="random", seed=0)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """20 readable photos (smooth blobs, so activations vary), one broken file, labels 0..2."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    grid = np.mgrid[0:64, 0:64].transpose(1, 2, 0)
    for i in range(20):
        centre = rng.uniform(0, 64, size=2)
        blob = np.exp(-((grid - centre) ** 2).sum(-1) / rng.uniform(20, 200))
        colour = rng.uniform(0, 255, size=3)
        image = blob[..., None] * colour + rng.uniform(0, 60, size=(64, 64, 3))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / f"photo{i:02d}.png")
    (root / "photo99.png").write_bytes(b"not a png")
    (root / "labels.csv").write_text("".join(f"photo{i:02d}.png,{i % 3}\n" for i in range(20)) + "photo99.png,0\n")
    return root


@pytest.fixture(scope="module")
def dataset(photos):
    return ImageDataset(photos, labels=photos / "labels.csv", view=Framing(resize=64, crop=64))


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def examples(network, photos, store, *, layers=LAYERS, top_k=TOP, processes=1, on_progress=None, settings=SETTINGS,
             **options):
    """The examples view over the photos into `store`; returns layer -> summary arrays."""
    settings = ExamplesSettings(top_k=top_k, image_batch_size=BATCH, workers=0, view=(64, 64), summary=settings,
                                atlas_vectors=settings.atlas_vectors, **options)
    run_views(network, ["examples"], store=store, layers=layers,
              images=Images(str(photos), str(photos / "labels.csv")), settings={"examples": settings},
              executor=LocalExecutor(processes=processes, on_progress=on_progress))
    store = Store(store)
    return {layer: store.read(store.examples_summary_file(MODEL, layer), ExamplesSummary).to_arrays() for layer in layers}


@pytest.fixture(scope="module")
def computed(network, photos, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    return Store(store), examples(network, photos, store)


def brute_force(network, dataset, layer):
    """All activations of `layer` and its pre-ReLU twin, batch by batch as the stage computes them."""
    twin = network.layer(layer).pre_relu
    names = list(dict.fromkeys(LAYERS + [network.layer(name).pre_relu for name in LAYERS]))
    extractor = network.extractor(names)
    indices, post, pre = [], [], []
    with torch.inference_mode():
        for b in range(math.ceil(len(dataset) / BATCH)):
            chunk = [i for i in range(b * BATCH, min(len(dataset), (b + 1) * BATCH)) if dataset.load(i)[0] is not None]
            images = torch.stack([dataset.load(i)[0] for i in chunk]).float().div_(255)
            outputs = extractor(images.contiguous(memory_format=torch.channels_last))
            indices += chunk
            post.append(outputs[layer].flatten(2).numpy())
            pre.append(outputs[twin].flatten(2).numpy())
    return np.array(indices), np.concatenate(post), np.concatenate(pre)


def ranked(scores: np.ndarray, indices: np.ndarray, k: int, descending: bool) -> np.ndarray:
    """Per channel, positions into `indices` of the k best; ties go to the lower dataset index."""
    return np.array([np.lexsort((indices, -column if descending else column))[:k] for column in scores.T])


def check_ranked(summary, prefix, scores, at, indices, width, descending):
    """`<prefix>_index/values/y/x` equal the brute-force ranking of per-image scores (argmax at `at`)."""
    order = ranked(scores, indices, TOP, descending=descending)
    assert np.array_equal(summary[f"{prefix}_index"], indices[order])
    assert np.array_equal(summary[f"{prefix}_values"], np.take_along_axis(scores.T, order, 1))
    position = np.take_along_axis(at.T, order, 1)
    assert np.array_equal(summary[f"{prefix}_y"], position // width)
    assert np.array_equal(summary[f"{prefix}_x"], position % width)


@pytest.mark.parametrize("layer", LAYERS)
def test_examples_equal_brute_force(network, dataset, computed, layer):
    summary = computed[1][layer]
    indices, post, pre = brute_force(network, dataset, layer)
    width = network.activations(torch.zeros(1, 3, 64, 64), [layer])[layer].shape[-1]
    assert len(indices) == 20 and 20 not in indices  # photo99 (index 20) was skipped

    top_scores = post.max(2)
    check_ranked(summary, "top", top_scores, post.argmax(2), indices, width, descending=True)
    assert np.all(np.diff(summary["top_values"], axis=1) <= 0)
    check_ranked(summary, "bottom", pre.min(2), pre.argmin(2), indices, width, descending=False)

    positions = post.shape[0] * post.shape[2]
    assert (summary["hist_counts"].sum(1) == positions).all()
    edges = summary["hist_edges"]
    for unit in (0, post.shape[1] // 2, post.shape[1] - 1):
        values = pre[:, unit].ravel().astype(np.float64)[:, None]
        expected = ((values > edges[unit, None, :-1]) & (values <= edges[unit, None, 1:])).sum(0)
        assert np.array_equal(summary["hist_counts"][unit], expected)
    assert np.allclose(summary["mean"], post.mean(axis=(0, 2), dtype=np.float64), rtol=1e-5, atol=1e-7)
    assert np.array_equal(summary["nonzero_fraction"], (post != 0).mean(axis=(0, 2)))

    for unit in range(post.shape[1]):
        for band in range(summary["band_index"].shape[1]):
            chosen = summary["band_index"][unit, band]
            chosen = chosen[chosen >= 0]
            low, high = summary["band_value_range"][unit, band]
            scores = top_scores[np.searchsorted(indices, chosen), unit]
            assert np.all((scores > low) & (scores <= high))
            assert np.array_equal(summary["band_values"][unit, band, : chosen.size], scores)

    labels = np.array(dataset.labels)
    for unit in range(0, post.shape[1], 7):
        classes, counts = np.unique(labels[summary["top_index"][unit]], return_counts=True)
        order = np.lexsort((classes, -counts))
        n = order.size
        assert summary["top_classes"][unit, :n].tolist() == classes[order].tolist()
        assert summary["top_class_counts"][unit, :n].tolist() == counts[order].tolist()


def test_patches_are_the_receptive_field_of_the_view_padded_at_borders(network, dataset, computed):
    store = computed[0]
    infos = {info.name: info for info in catalogue(network, LAYERS, size=64)}
    packed = {layer: read_patch_index(store, store.patches_dir(MODEL, layer)) for layer in LAYERS}
    checked = padded = 0
    for layer in LAYERS:
        summary = computed[1][layer]
        for unit in range(0, summary["top_index"].shape[0], 37):
            refs = packed[layer][unit]
            assert len(refs) == 2 * TOP + (summary["band_index"][unit] >= 0).sum()
            examples_ = [(("top", rank), summary["top_index"][unit, rank], summary["top_y"][unit, rank],
                          summary["top_x"][unit, rank]) for rank in range(TOP)]
            examples_ += [(("bottom", rank), summary["bottom_index"][unit, rank], summary["bottom_y"][unit, rank],
                           summary["bottom_x"][unit, rank]) for rank in range(TOP)]
            examples_ += [((f"band{band}", rank), summary["band_index"][unit, band, rank],
                           summary["band_y"][unit, band, rank], summary["band_x"][unit, band, rank])
                          for band in range(4) for rank in range(3) if summary["band_index"][unit, band, rank] >= 0]
            for key, index, y, x in examples_:
                y, x = int(y), int(x)
                patch = np.asarray(Image.open(refs[key].open_bytes()))
                view = dataset.load(int(index))[0].permute(1, 2, 0).numpy()
                side = infos[layer].rf_size
                top = int(infos[layer].rf_offset + y * infos[layer].stride - (side - 1) / 2)
                left = int(infos[layer].rf_offset + x * infos[layer].stride - (side - 1) / 2)
                expected = np.empty((side, side, 3), np.uint8)
                expected[:] = PAD_COLOUR
                for row in range(side):
                    for column in range(side):
                        if 0 <= top + row < 64 and 0 <= left + column < 64:
                            expected[row, column] = view[top + row, left + column]
                assert patch.shape == (side, side, 3)
                assert np.array_equal(patch, expected)
                checked += 1
                padded += not (0 <= top and top + side <= 64 and 0 <= left and left + side <= 64)
    assert checked > 20 and padded > 0


def fake_layer(rf_size, rf_offset, stride=1):
    return LayerInfo("fake", "conv", 1, 1, 1, stride if rf_size else None, rf_size, rf_offset, None, "")


def test_cut_patches_pad_at_borders_and_shrink_smoothly():
    view = np.arange(10 * 10 * 3, dtype=np.uint8).reshape(10, 10, 3)
    # stride 2, field 5 px centred on 2y, 2x: position (0, 4) sees rows -2..2 and columns 6..10.
    [patch] = cut_patches(view, fake_layer(5, 0.0, stride=2), np.array([0]), np.array([4]), size=80)
    assert (patch[:2] == PAD_COLOUR).all() and (patch[:, 4:] == PAD_COLOUR).all()
    assert np.array_equal(patch[2:, :4], view[0:3, 6:10])
    # A field wider than `size` is shrunk; on a smooth image that is the shrunk exact crop, nearly.
    ramp = np.linspace(0, 255, 64)
    smooth = np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :], 128 + 0 * ramp[:, None]), -1).astype(np.uint8)
    patches = cut_patches(smooth, fake_layer(32, 15.5), np.array([0, 20, 32]), np.array([10, 20, 32]), size=16)
    for patch, (top, left) in zip(patches, [(0, 10), (20, 20), (32, 32)]):
        crop = smooth[top:top + 32, left:left + 32]
        expected = np.asarray(Image.fromarray(crop).resize((16, 16), Image.Resampling.BICUBIC), dtype=float)
        assert patch.shape == (16, 16, 3)
        assert np.abs(patch[2:-2, 2:-2] - expected[2:-2, 2:-2]).max() <= 6  # within half an output pixel


def test_patches_cut_by_worker_processes_equal_those_of_one_process(network, photos, computed, tmp_path):
    """The same packs and thumbnails, byte for byte, whichever process cut them."""
    many = tmp_path / "many"
    # Packs of 4 images: 6 patch jobs, which the executor hands to 2 forked processes.
    settings = dataclasses.replace(SETTINGS, pack_images=4)
    one = examples(network, photos, tmp_path / "one", processes=1, settings=settings)
    two = examples(network, photos, many, processes=2, settings=settings)
    for layer in LAYERS:
        assert all(same(one[layer][k], two[layer][k]) for k in one[layer])
    files = {root: {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file() and
                    ("patches" in p.parts or "thumbs" in p.parts)} for root in (tmp_path / "one", many)}
    assert files[tmp_path / "one"] == files[many]
    chunks = {(layer, int(i) // 4) for layer in LAYERS for name in ("top_index", "bottom_index", "band_index")
              for i in one[layer][name].ravel() if i >= 0}
    assert sum(path.name.endswith(".idx.npz") for path in files[many]) == len(chunks) >= 2 * 4


def test_forked_workers_never_run_the_network(network, photos, tmp_path, monkeypatch):
    """Summaries and patches go to forked processes (2 layers, 6 packs), which must not run the network: on
    CUDA a forked process cannot. Every convolution writes down the process that ran it."""
    ran = tmp_path / "pids"
    convolve = torch.nn.Conv2d._conv_forward

    def said(self, *args):
        with open(ran, "a") as out:
            out.write(f"{os.getpid()}\n")
        return convolve(self, *args)
    monkeypatch.setattr(torch.nn.Conv2d, "_conv_forward", said)
    examples(network, photos, tmp_path / "store", processes=2, settings=dataclasses.replace(SETTINGS, pack_images=4))
    assert set(ran.read_text().split()) == {str(os.getpid())}


def test_the_pass_leaves_every_readable_view_in_the_cache(network, dataset, tmp_path):
    """The views reach the cache one batch late (stream.LateViews): the last batch's too, each the view the
    network saw; the broken file has none."""
    store = Store(tmp_path / "store")
    views = ViewCache.create(tmp_path / "pass.views", len(dataset), dataset.view.crop)
    shard = Shard("key", tuple(LAYERS), 0, len(dataset), store.shard_file(MODEL, "key", 0, len(dataset)))
    run_shard(network, dataset, shard, PassSettings(TOP, SETTINGS, BATCH, 0), store, views=views)
    for index in range(len(dataset)):
        image = dataset.load(index)[0]
        assert (views.get(index) is None) == (image is None)
        if image is not None:
            assert np.array_equal(views.get(index), image.permute(1, 2, 0).numpy())


def test_cached_views_give_the_same_packs_as_decoding_again(network, dataset, computed, tmp_path):
    """Packs cut from the pass's cached views equal packs cut from freshly decoded images; an all-black
    cache gives other packs, which shows that the cache is really read."""
    infos = {info.name: info for info in catalogue(network, LAYERS, size=64)}
    cache = ViewCache.create(tmp_path / "pass.views", len(dataset), dataset.view.crop)
    readable = [i for i in range(0, len(dataset), 2) if dataset.load(i)[0] is not None]
    cache.put(torch.tensor(readable), torch.stack([dataset.load(i)[0] for i in readable]))
    black = ViewCache.create(tmp_path / "black.views", len(dataset), dataset.view.crop)
    black.put(torch.arange(len(dataset)), torch.zeros(len(dataset), 3, 64, 64, dtype=torch.uint8))
    written = {}
    for name, views in (("decoded", None), ("cached", cache), ("black", black)):
        store = computed[0]
        layers = [LayerPatches.from_summary(infos[layer], tmp_path / name / layer,
                                            store.read(store.examples_summary_file(MODEL, layer), ExamplesSummary),
                                            bands=False, bottom=2) for layer in LAYERS]
        thumbs = {i: tmp_path / name / "thumbs" / f"{i}.jpg" for i in range(0, 20, 3)}
        assert cut_chunk(dataset, 0, layers, thumbs, PatchFormat(32, 90, "jpg", 160, 64), views) == 0
        root = tmp_path / name
        written[name] = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert written["decoded"] == written["cached"] != written["black"]
    assert sum(path.parts[0] == "thumbs" for path in written["decoded"]) == 7
    assert not [path for path in written["decoded"] if path.name.endswith(".tmp")]
    for layer in LAYERS:
        refs = read_patch_index(Store(tmp_path), tmp_path / "decoded" / layer)
        assert sorted(refs) == list(range(computed[1][layer]["top_index"].shape[0]))
        for unit, patches in refs.items():
            assert set(patches) == {("top", r) for r in range(TOP)} | {("bottom", 0), ("bottom", 1)}
            side = min(infos[layer].rf_size, 32)  # conv1's 7 px field stays 7 px; wider ones shrink to 32
            assert Image.open(patches[("bottom", 1)].open_bytes()).size == (side, side)


def test_global_layers_show_the_whole_view():
    view = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    [patch] = cut_patches(view, fake_layer(None, None), np.array([0]), np.array([0]), size=80)
    assert np.array_equal(patch, view)


def test_store_layout_dataset_index_and_result(network, dataset, computed):
    store = computed[0]
    index = store.read(store.dataset_file(MODEL, dataset.fingerprint()), DatasetIndex)
    assert index.files == dataset.files and index.labels == dataset.labels and index.name == dataset.root.name
    thumbs = store.dataset_dir(MODEL, dataset.fingerprint()) / "thumbs"
    for layer in LAYERS:
        result = store.read(store.examples_result_file(MODEL, layer), ExamplesResult)
        assert result.n_images == 20 and result.skipped == 1
        assert result.skipped_files == [("photo99.png", result.skipped_files[0][1])]  # relative: no local paths
        assert (result.view.resize, result.view.crop) == (64, 64) and result.top_k == TOP
        assert result.histogram_of == f"{layer}_pre_relu"
        assert set(result.files) >= {"summary.npz", "patches/000000.idx.npz"}  # each index stamps its pack
        for name, stamp in result.files.items():
            assert stamp.problem(store.examples_dir(MODEL, layer) / name) is None
        assert not store.pending_file(MODEL, layer).exists()
        summary = computed[1][layer]
        for image in np.unique(summary["top_index"]):
            assert Image.open(thumbs / f"{image}.jpg").size == (64, 64)
    assert not list((store.model_dir(MODEL) / "passes").glob("*/*"))


def test_interrupted_run_resumes_to_the_same_result(network, photos, computed, tmp_path):
    seen = []

    def interrupt_after_three(job, done):
        if job.step == "pass":
            seen.append(done)
            if done == 3:
                raise Interrupt

    with pytest.raises(Interrupt):
        examples(network, photos, tmp_path, checkpoint_every=2, on_progress=interrupt_after_three)
    assert list((tmp_path / MODEL / "passes").glob("*/*.partial.npz")), "a checkpoint after batch 2"
    assert not (tmp_path / MODEL / "conv1" / "examples" / "result.json").exists()
    seen.clear()
    resumed = examples(network, photos, tmp_path, checkpoint_every=2, on_progress=interrupt_after_three)
    assert seen == [1, 2], "continues after the checkpointed batch 2: batches 3 and 4 remain"
    for layer in LAYERS:
        for name, array in computed[1][layer].items():
            assert np.array_equal(resumed[layer][name], array, equal_nan=array.dtype.kind == "f"), (layer, name)
    ours = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("patches/*")}
    theirs = {p.relative_to(computed[0].root): p.read_bytes() for p in computed[0].root.rglob("patches/*")}
    assert ours == theirs and len(ours) >= 4


def test_two_passes_over_two_halves_merged_equal_one_pass(network, photos, computed, tmp_path):
    """The pass as two shards (two jobs, each its own accumulators, merged by the summaries) gives
    the same store as one pass over all the images, array for array and patch for patch."""
    shards = []
    halves = examples(network, photos, tmp_path, shards=2,
                      on_progress=lambda job, done: shards.append(job.key) if job.step == "pass" else None)
    assert len(set(shards)) == 2
    for layer in LAYERS:
        for name, array in computed[1][layer].items():
            assert array.dtype == halves[layer][name].dtype and same(array, halves[layer][name]), (layer, name)
    ours = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("patches/*")}
    theirs = {p.relative_to(computed[0].root): p.read_bytes() for p in computed[0].root.rglob("patches/*")}
    assert ours == theirs


def test_current_layers_are_not_recomputed_and_changed_ones_are(network, photos, computed):
    def must_not_run(job, done):
        raise AssertionError("a current layer was recomputed")

    again = examples(network, photos, computed[0].root, on_progress=must_not_run)
    assert np.array_equal(again["conv1"]["top_index"], computed[1]["conv1"]["top_index"])
    ran = []
    changed = examples(network, photos, computed[0].root, top_k=TOP + 1, layers=["conv1"],
                       on_progress=lambda job, done: ran.append(job.step))
    assert "pass" in ran and changed["conv1"]["top_index"].shape[1] == TOP + 1


def test_damaged_results_are_said_in_one_line_and_recomputed(network, photos, computed, tmp_path, caplog):
    store = Store(tmp_path)
    first = examples(network, photos, tmp_path, layers=["conv1"])
    summary = store.examples_summary_file(MODEL, "conv1")
    summary.write_bytes(summary.read_bytes()[:100])  # truncated
    again = examples(network, photos, tmp_path, layers=["conv1"])
    assert any("summary.npz" in record.getMessage() and "damaged" in record.getMessage()
               and "\n" not in record.getMessage() for record in caplog.records)
    assert all(same(first["conv1"][k], again["conv1"][k]) for k in first["conv1"])
    pack = store.patches_dir(MODEL, "conv1") / "000000.bin"
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a patch: same size, other content
    pack.write_bytes(bytes(data))
    caplog.clear()
    again = examples(network, photos, tmp_path, layers=["conv1"])
    assert any("000000.bin" in record.getMessage() and "content changed" in record.getMessage()
               for record in caplog.records)
    assert pack.read_bytes() != bytes(data)  # cut again
    result = store.examples_result_file(MODEL, "conv1")
    result.write_text(result.read_text().replace('"format": 1', '"format": 99'))  # a future version
    caplog.clear()
    examples(network, photos, tmp_path, layers=["conv1"])
    assert any("result.json" in record.getMessage() for record in caplog.records)
    assert store.read(result, ExamplesResult) is not None


def test_bad_input_is_one_clear_usage_error(network, photos, tmp_path):
    with pytest.raises(UsageError, match=r"unknown layer 'inception_9z'.*valid layers: .*inception_4a"):
        examples(network, photos, tmp_path, layers=["conv1", "inception_9z"])
    with pytest.raises(UsageError, match="--top-k must be at least 1"):
        examples(network, photos, tmp_path, top_k=0)
    with pytest.raises(UsageError, match="no layers chosen"):
        examples(network, photos, tmp_path, layers=[])
    with pytest.raises(UsageError, match="patch format"):
        SummarySettings(patch_format="gif")
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(3):
        (broken / f"{i}.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(UsageError, match="none of the 3 images .* could be read"):
        run_views(network, ["examples"], store=tmp_path / "s", layers=["conv1"], images=Images(str(broken)),
                  settings={"examples": ExamplesSettings(workers=0, view=(64, 64))})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="no images found"):
        ImageDataset(empty)


def test_atlas_sample_equals_a_reservoir_of_every_drawn_position(network, dataset, photos, tmp_path):
    """The pass's atlas vectors are exactly the bottom-k reservoir of all positions it drew, whatever the
    batches and shards: recomputed here from the brute-force activations."""
    from microscope.activations.reservoir import Reservoir
    from microscope.activations.positions import SampleSettings, positions
    from microscope.store import AtlasVectors

    settings = dataclasses.replace(SETTINGS, atlas_vectors=30, atlas_positions=3, seed=4)
    examples(network, photos, tmp_path / "store", settings=settings, shards=2)
    store = Store(tmp_path / "store")
    for layer in LAYERS:
        found = store.read(store.atlas_vectors_file(MODEL, layer), AtlasVectors)
        indices, post, _ = brute_force(network, dataset, layer)
        height = width = network.activations(torch.zeros(1, 3, 64, 64), [layer])[layer].shape[-1]
        expected = Reservoir.empty(30, post.shape[1], 4)
        for row, image in enumerate(indices):
            y, x = positions(int(image), height, width, SampleSettings(positions_per_image=3, edge=1, seed=4))
            expected.offer(post[row][:, y * width + x].T, np.full(3, image), y, x)
        assert found.settings.tolist() == [30, post.shape[1], 4, 3]
        assert np.array_equal(found.keys, expected.keys) and np.array_equal(found.image, expected.image)
        assert np.array_equal(found.y, expected.y) and np.array_equal(found.x, expected.x)
        assert found.vectors.dtype == np.float16  # float16 rounding of the same float32 values
        assert np.allclose(found.vectors.astype(np.float32), expected.vectors.astype(np.float32), rtol=1e-3, atol=1e-4)
        result = store.read(store.examples_result_file(MODEL, layer), ExamplesResult)
        assert "atlas_vectors.npz" in result.files
