"""Plain JPEGs decoded by torchvision's `decode_jpeg` and framed on a device, against the loader workers' Pillow.

No GPU here: the device path runs on the CPU (`decode_on=cpu`, `PassSettings.device_decode=True`), which
decodes with torchvision's libjpeg where CUDA uses nvJPEG. Measured on the shared photos and the generated
ones: the CPU path gives exactly the workers' views (same libjpeg-turbo IDCT and upsampling as Pillow's, same
uint8 resize); the tests hold it to the contract, within 1 grey level at >= 99 % of pixels. On CUDA the
decoder (nvJPEG's IDCT and chroma upsampling) and the resize (float32, `resize_float`, rounded once) may
differ a little more; `resize_float` is checked against the uint8 kernel here, on the CPU.
"""
import io
import logging

import numpy as np
import torch
from PIL import Image

from microscope.data.images import Framing, ImageDataset, load_rgb, resize_float, resize_rgb
from microscope.data.jpeg import plain_jpeg
from microscope.examples.config import SummarySettings
from microscope.examples.stream import PassSettings, Shard, run_shard
from microscope.network.loaded import load_network
from microscope.store import Store
from tests.generated import blob_photos

CPU = torch.device("cpu")


def assert_views_agree(a: torch.Tensor, b: torch.Tensor) -> None:
    """Within 1 grey level at >= 99 % of pixels (the device path's contract)."""
    assert a.shape == b.shape and a.dtype == b.dtype == torch.uint8
    differ = (a.int() - b.int()).abs()
    assert (differ <= 1).float().mean().item() >= 0.99, f"max {differ.max().item()}"


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def strip(data: bytes, marker: int) -> bytes:
    """A JPEG without its segments of one marker (before the scan), e.g. its quantization tables."""
    kept, position = bytearray(data[:2]), 2
    while data[position + 1] != 0xDA:
        length = int.from_bytes(data[position + 2:position + 4], "big")
        if data[position + 1] != marker:
            kept += data[position:position + 2 + length]
        position += 2 + length
    return bytes(kept + data[position:])


def exif(orientation: int) -> Image.Exif:
    tags = Image.Exif()
    tags[0x0112] = orientation
    return tags


def mixed_folder(root):
    """Every kind of file a folder of photos holds, named so that the kinds alternate in a batch."""
    root.mkdir(exist_ok=True)
    blob_photos(root, 7, seed=3)
    photos = [Image.open(root / f"p{i:02d}.png").convert("RGB") for i in range(7)]
    for path in root.glob("*.png"):
        path.unlink()
    wide = photos[0].resize((130, 90))
    files = {
        "a_baseline.jpg": jpeg_bytes(wide),
        "b_text.jpg": b"these are not the pixels you are looking for\n",
        "c_progressive.jpg": jpeg_bytes(photos[1], progressive=True),
        "d_cmyk.jpg": jpeg_bytes(photos[2].convert("CMYK")),
        "e_grey.jpg": jpeg_bytes(photos[3].convert("L")),
        "f_rotated.jpg": jpeg_bytes(wide, exif=exif(6)),
        "g_upright.jpg": jpeg_bytes(photos[4].resize((70, 110)), exif=exif(1)),
        "h_truncated.jpg": jpeg_bytes(photos[5])[:700],
        "i_no_tables.jpg": strip(jpeg_bytes(photos[6]), 0xDB),  # plain by its header; both decoders refuse it
        "j_full_chroma.jpg": jpeg_bytes(photos[6], subsampling=0),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    photos[5].save(root / "k_png.png")
    return root


def test_plain_jpegs_are_told_from_the_rest(tmp_path):
    mixed_folder(tmp_path)
    plain = {path.name for path in tmp_path.iterdir() if plain_jpeg(path.read_bytes())}
    assert plain == {"a_baseline.jpg", "c_progressive.jpg", "e_grey.jpg", "g_upright.jpg", "i_no_tables.jpg",
                     "j_full_chroma.jpg"}
    photo = Image.new("RGB", (16, 8), (200, 30, 10))
    rotated_by_xmp = jpeg_bytes(photo, xmp=b'<x:xmpmeta><rdf:Description tiff:Orientation="8"/></x:xmpmeta>')
    assert Image.open(io.BytesIO(rotated_by_xmp)).getexif()[0x0112] == 8  # Pillow turns it upright
    assert not plain_jpeg(rotated_by_xmp)
    assert plain_jpeg(jpeg_bytes(photo, xmp=b'<rdf:Description tiff:Orientation="1"/>'))
    assert not plain_jpeg(jpeg_bytes(photo)[:-2])  # no end marker: perhaps cut short


def test_device_path_gives_the_workers_batches_of_a_mixed_folder(tmp_path, caplog):
    dataset = ImageDataset(mixed_folder(tmp_path), view=Framing(resize=80, crop=64))
    with caplog.at_level(logging.WARNING, logger="microscope.data.images"):
        workers = list(dataset.batches(batch_size=3, workers=0))
        warned = [record.getMessage() for record in caplog.records]
        caplog.clear()
        device = list(dataset.batches(batch_size=3, workers=0, decode_on=CPU))
        assert [record.getMessage() for record in caplog.records] == warned
    in_processes = list(dataset.batches(batch_size=3, workers=2, decode_on=CPU))
    assert [b.indices.tolist() for b in workers] == [[0, 2], [3, 4, 5], [6], [9, 10]]
    skipped = [item for batch in workers for item in batch.skipped]
    assert [name for name, _ in skipped] == ["b_text.jpg", "h_truncated.jpg", "i_no_tables.jpg"]
    assert skipped[1][1].startswith("image file is truncated") and "broken data stream" in skipped[2][1]
    for other in (device, in_processes):
        assert len(other) == len(workers)
        for a, b in zip(workers, other):
            assert torch.equal(a.indices, b.indices) and a.skipped == b.skipped
            assert_views_agree(a.images, b.images)


def shared_photos(shared_dir, tmp_path):
    """The first 20 of imagenet-sample (about 500 x 375) and of the 227 px validation photos, side by side."""
    root = tmp_path / "photos"
    root.mkdir()
    for folder in ("imagenet-sample", "imagenet-val-1300"):
        for path in sorted((shared_dir / "data" / folder).glob("*.JPEG"))[:20]:
            (root / f"{folder}-{path.name}").symlink_to(path.resolve())
    return root


def test_device_framing_matches_pillow_on_shared_photos(shared_dir, tmp_path):
    dataset = ImageDataset(shared_photos(shared_dir, tmp_path), view=Framing(256, 224))
    assert sum(plain_jpeg(dataset.path(i).read_bytes()) for i in range(len(dataset))) == len(dataset) == 40
    workers = list(dataset.batches(batch_size=16, workers=0))
    device = list(dataset.batches(batch_size=16, workers=0, decode_on=CPU))
    for a, b in zip(workers, device, strict=True):
        assert torch.equal(a.indices, b.indices) and not a.skipped and not b.skipped
        assert_views_agree(a.images, b.images)


def test_float_resize_is_within_a_grey_level_of_the_uint8_kernel(shared_dir):
    """CUDA resizes through float32 (`resize_float`); the CPU's uint8 kernel is what the workers use.

    Measured: bilinear (the framing's) within 1 everywhere, 83 % of values exact; bicubic (not used on a
    device) within 1 at 99.97 %, up to 9 levels apart where its negative lobes meet the kernel's fixed point.
    """
    for path in sorted((shared_dir / "data" / "imagenet-sample").glob("*.JPEG"))[:8]:
        pixels = torch.from_numpy(np.array(load_rgb(path))).permute(2, 0, 1)
        for height, width in ((256, 341), (300, 229), (96, 96)):
            bilinear = (resize_rgb(pixels, height, width, "bilinear").int() -
                        resize_float(pixels, height, width, "bilinear").int()).abs()
            assert bilinear.max().item() <= 1
            assert_views_agree(resize_rgb(pixels, height, width, "bicubic"),
                               resize_float(pixels, height, width, "bicubic"))


def test_pass_with_device_decoding_keeps_the_same_examples(tmp_path):
    """run_shard's state (top examples, bands, histograms, ...) with plain JPEGs decoded by `decode_jpeg`
    equals the workers' exactly: on the CPU the views are the same bytes (see the module's docstring)."""
    dataset = ImageDataset(mixed_folder(tmp_path / "photos"), view=Framing(resize=80, crop=64))
    network = load_network("inceptionv1-caffe", weights="random", device="cpu", seed=0, progress=False)
    records = []
    for device_decode in (False, True):
        store = Store(tmp_path / f"store-{device_decode}")
        shard = Shard("k", ("inception_3a",), 0, len(dataset), tmp_path / f"shard-{device_decode}.npz")
        options = PassSettings(4, SummarySettings(band_bins=4, band_samples=2), batch_size=4, workers=0,
                               device_decode=device_decode)
        records.append(run_shard(network, dataset, shard, options, store))
    plain, device = records
    assert plain.info()["skipped"] == device.info()["skipped"] and len(plain.info()["skipped"]) == 3
    assert plain.state.keys() == device.state.keys()
    for name in plain.state:
        assert np.array_equal(plain.state[name], device.state[name]), name

