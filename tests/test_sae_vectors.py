"""The SAE's vector pass: shards written one by one, a killed pass resumed to the same files, held-out
images giving every inner position."""
import numpy as np
import pytest
import torch
from PIL import Image

import microscope.sae.vectors as vectors_module
from microscope.data.images import ImageDataset, Framing
from microscope.network.loaded import load_network
from microscope.activations.positions import SampleSettings, held_out_images
from microscope.sae.vectors import collect, load_parts, read_vectors
from microscope.store import Store

LAYER = "conv2"  # 56 x 56 at 224 px; a small grid at 64 px keeps the test quick


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(2)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / f"p{i}.png")
    return ImageDataset(root, view=Framing(64, 64))


def test_vectors_resume_and_match_the_activations(dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(vectors_module, "SHARD_IMAGES", 4)  # three shards: 4 + 4 + 2 images
    network = load_network("inceptionv1-caffe", weights="random", seed=0)
    sampling = SampleSettings(positions_per_image=5, held_out=0.2, seed=3)
    store = Store(tmp_path / "store")
    whole, folder = collect(network, dataset, LAYER, sampling, store, report=lambda n: None)
    assert [(s.first, s.last) for s in whole.shards] == [(0, 4), (4, 8), (8, 10)]

    held = held_out_images(10, 0.2, 3)
    with torch.inference_mode():
        images = torch.stack([dataset.load(i)[0] for i in range(10)]).float().div_(255)
        activation = network.activations(images, [LAYER])[LAYER].numpy()
    inner = activation[:, :, 1:-1, 1:-1].transpose(0, 2, 3, 1)
    train, held_out = (np.concatenate(parts) for parts in load_parts(folder, whole))
    assert np.allclose(held_out, inner[held].reshape(-1, activation.shape[1]), atol=1e-6)
    assert len(train) == 5 * (~held).sum() and whole.width == activation.shape[1]
    # Each a real inner position of a training image: as close to one as the held-out rows are to theirs (the
    # pass ran the network on batches of other sizes, whose float rounding may differ in the last bits).
    candidates = inner[~held].reshape(-1, activation.shape[1])
    assert all(np.isclose(row, candidates, atol=1e-6).all(axis=1).any() for row in train)

    # killed after its first shard, before the index: the rerun keeps that shard and writes the same files
    (folder / "vectors.json").unlink()
    for stem in ("000000004-000000008", "000000008-000000010"):
        for part in ("train", "held"):
            (folder / f"{stem}.{part}.npy").unlink()
    first = (folder / "000000000-000000004.train.npy").stat().st_mtime_ns
    again, _ = collect(network, dataset, LAYER, sampling, store, report=lambda n: None)
    assert (folder / "000000000-000000004.train.npy").stat().st_mtime_ns == first
    assert again.shards == whole.shards and read_vectors(store, folder, whole.key) == again

    (folder / "000000004-000000008.held.npy").write_bytes(b"damaged")
    assert read_vectors(store, folder, whole.key) is None  # a stamp that no longer matches: recomputed
