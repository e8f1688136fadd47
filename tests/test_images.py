"""Image decoding, the centre-crop view, and datasets: checked pixel by pixel on images made here."""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from microscope.errors import UsageError
from microscope.data.images import ImageDataset, UnreadableImage, Framing, load_rgb

RED, BLUE, GREEN, WHITE = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(int)


def viewed(view: Framing, image: Image.Image) -> np.ndarray:
    """The view of a picture as (H, W, 3) ints."""
    return view.tensor(image).permute(1, 2, 0).numpy().astype(int)


def split_image(width: int, height: int, split: int, left=RED, right=BLUE) -> Image.Image:
    array = np.zeros((height, width, 3), np.uint8)
    array[:, :split] = left
    array[:, split:] = right
    return Image.fromarray(array)


# --- load_rgb: every colour mode ends up as the RGB a viewer would see ---------------------------

def test_grayscale_becomes_equal_channels(tmp_path):
    Image.new("L", (6, 4), 77).save(tmp_path / "g.png")
    image = load_rgb(tmp_path / "g.png")
    assert image.mode == "RGB" and image.size == (6, 4)
    assert (pixels(image) == 77).all()


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 100, 65535, 1000]], np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    assert pixels(load_rgb(tmp_path / "g16.png"))[0, :, 0].tolist() == [0, 100, 255, 4]


@pytest.mark.parametrize("cmyk, rgb", [((0, 255, 255, 0), RED), ((0, 0, 0, 0), WHITE),
                                       ((255, 0, 255, 0), GREEN), ((0, 0, 0, 255), (0, 0, 0))])
def test_cmyk_jpeg_converts_to_expected_rgb(tmp_path, cmyk, rgb):
    Image.new("CMYK", (16, 16), cmyk).save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    assert np.abs(pixels(load_rgb(tmp_path / "c.jpg"))[8, 8] - rgb).max() <= 3


def test_palette_with_transparency_is_composited_over_white(tmp_path):
    image = Image.new("P", (4, 2), 0)
    image.putpalette([0, 0, 0] + list(RED) + [0, 0, 0] * 254)
    image.paste(1, (2, 0, 4, 2))  # right half: palette entry 1 (red); left half: entry 0
    image.save(tmp_path / "p.png", transparency=0)  # entry 0 is fully transparent
    rgb = pixels(load_rgb(tmp_path / "p.png"))
    assert (rgb[:, :2] == WHITE).all() and (rgb[:, 2:] == RED).all()


def test_palette_without_transparency_keeps_its_colours(tmp_path):
    image = Image.new("P", (2, 1), 1)
    image.putpalette([0, 0, 0] + list(BLUE) + [0, 0, 0] * 254)
    image.save(tmp_path / "p.png")
    assert (pixels(load_rgb(tmp_path / "p.png")) == BLUE).all()


def test_alpha_is_composited_over_white(tmp_path):
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0, 0] = (0, 0, 0, 0)  # transparent black -> white
    rgba[0, 1] = (0, 0, 0, 255)  # opaque black stays black
    rgba[0, 2] = (0, 0, 0, 128)  # half black over white -> 127
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert pixels(load_rgb(tmp_path / "a.png"))[0].tolist() == [[255] * 3, [0] * 3, [127] * 3]
    Image.fromarray(np.array([[[50, 0], [50, 255]]], np.uint8), "LA").save(tmp_path / "la.png")
    assert pixels(load_rgb(tmp_path / "la.png"))[0].tolist() == [[255] * 3, [50] * 3]


def test_exif_orientation_6_is_rotated_upright(tmp_path):
    # Stored 64 wide x 32 tall: left half red, right half blue, top-left 16x16 block green.
    # Orientation 6 = "rotate 90 degrees clockwise to display": 32 wide x 64 tall, red on top,
    # blue below, and the green block in the top-right corner.
    stored = split_image(64, 32, 32)
    stored.paste(GREEN, (0, 0, 16, 16))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "r.jpg", quality=95, subsampling=0, exif=exif)
    image = load_rgb(tmp_path / "r.jpg")
    assert image.size == (32, 64)
    rgb = pixels(image)
    # Every colour edge lies on the 8 px JPEG block grid, so block centres are free of ringing.
    centres = np.s_[4::8, 4::8]
    assert np.abs(rgb[centres] - np.rot90(pixels(stored), k=-1)[centres]).max() <= 10
    assert np.abs(rgb[8, 24] - GREEN).max() <= 10
    assert np.abs(rgb[8, 8] - RED).max() <= 10
    assert np.abs(rgb[50, 16] - BLUE).max() <= 10


def test_animations_use_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(tmp_path / "a.gif").n_frames == 2
    assert (pixels(load_rgb(tmp_path / "a.gif")) == RED).all()
    frames[0].save(tmp_path / "a.webp", save_all=True, append_images=frames[1:], lossless=True)
    assert (pixels(load_rgb(tmp_path / "a.webp")) == RED).all()


def test_damaged_files_raise_one_clear_error(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "noise.jpg").write_bytes(rng.bytes(2000))
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    for name, reason in [("noise.jpg", "cannot identify"), ("cut.jpg", "truncated"), ("none.jpg", "no such")]:
        with pytest.raises(UnreadableImage, match=reason) as error:
            load_rgb(tmp_path / name)
        assert isinstance(error.value, UsageError) and name in str(error.value)
        assert "\n" not in str(error.value)


# --- Framing: resize the shorter side, then a centre crop ---------------------------------------------

def test_view_crops_the_centre_of_a_wide_image():
    # 200x100, red left of x=100. Shorter side 100 -> 50 (exact 2x), so 100x50; the 40 px crop
    # starts at x=30, so the split lands at crop column 20.
    crop = viewed(Framing(resize=50, crop=40), split_image(200, 100, 100))
    assert crop.shape == (40, 40, 3)
    assert (crop[:, :19] == RED).all() and (crop[:, 21:] == BLUE).all()


def test_view_crops_the_centre_of_a_tall_image():
    tall = split_image(200, 100, 100).transpose(Image.Transpose.TRANSPOSE)  # red on top of blue
    crop = viewed(Framing(resize=50, crop=40), tall)
    assert (crop[:19] == RED).all() and (crop[21:] == BLUE).all()


def test_view_with_resize_none_only_crops():
    image = Image.fromarray(np.arange(227 * 227 * 3, dtype=np.uint32).reshape(227, 227, 3).astype(np.uint8))
    crop = viewed(Framing(resize=None, crop=224), image)
    # (227 - 224) / 2 = 1.5 rounds to 2 (banker's rounding, as torchvision): rows/cols 2..225.
    assert (crop == pixels(image)[2:226, 2:226]).all()


@pytest.mark.parametrize("resize", [16, None])
def test_tiny_images_are_upscaled_to_the_crop(tmp_path, resize):
    Image.new("RGB", (5, 7), (10, 200, 30)).save(tmp_path / "tiny.png")
    dataset = ImageDataset(tmp_path, view=Framing(resize=resize, crop=12))
    image, reason = dataset.load(0)
    assert reason is None and image.dtype == torch.uint8 and image.shape == (3, 12, 12)
    assert (image.permute(1, 2, 0) == torch.tensor([10, 200, 30], dtype=torch.uint8)).all()


def pillow_view(image: Image.Image, resize: int, crop: int) -> np.ndarray:
    """The view as Pillow makes it (BILINEAR, antialiased), for comparison."""
    width, height = image.size
    scale = resize / min(width, height)
    size = (resize, max(resize, round(height * scale))) if width <= height else (max(resize, round(width * scale)), resize)
    image = image.resize(size, Image.Resampling.BILINEAR)
    left, top = int(round((size[0] - crop) / 2.0)), int(round((size[1] - crop) / 2.0))
    return pixels(image.crop((left, top, left + crop, top + crop)))


@pytest.mark.parametrize("size", [(500, 375), (333, 500), (120, 90)])
def test_view_resizes_within_one_grey_level_of_pillow(size):
    # A photo-like image: smooth gradients plus fine noise, so antialiasing matters.
    rng = np.random.default_rng(4)
    y, x = np.mgrid[0:size[1], 0:size[0]]
    smooth = np.stack([128 + 100 * np.sin(x / 17), 128 + 100 * np.cos(y / 23), (x + y) % 256], -1)
    photo = Image.fromarray(np.clip(smooth + rng.normal(0, 30, smooth.shape), 0, 255).astype(np.uint8))
    ours = Framing(resize=224, crop=200).tensor(photo).permute(1, 2, 0).numpy().astype(int)
    theirs = pillow_view(photo, 224, 200).astype(int)
    assert ours.shape == theirs.shape == (200, 200, 3)
    assert np.abs(ours - theirs).max() <= 1
    assert np.abs(ours - theirs).mean() < 0.05


def test_view_rejects_nonsense_sizes():
    with pytest.raises(UsageError, match="at least the crop"):
        Framing(resize=100, crop=224)
    with pytest.raises(UsageError, match="positive"):
        Framing(crop=0)


# --- ImageDataset: discovery, order, labels ------------------------------------------------------------

def make_tree(root, names, colour=RED):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4), colour).save(root / name)


def test_images_are_found_recursively_in_sorted_posix_order(tmp_path):
    make_tree(tmp_path, ["b.png", "a/z.PNG", "a/b/c.jpg", "A.bmp", "a/y.webp", "a/x.GIF", "c.jpeg"])
    (tmp_path / "notes.txt").write_text("not an image")
    make_tree(tmp_path, [".hidden/d.png", "a/._e.jpg"])  # hidden files and folders are skipped
    dataset = ImageDataset(tmp_path)
    assert dataset.files == ["A.bmp", "a/b/c.jpg", "a/x.GIF", "a/y.webp", "a/z.PNG", "b.png", "c.jpeg"]
    assert dataset.labels is None and dataset.classes is None and len(dataset) == 7
    assert dataset.path(1) == tmp_path / "a" / "b" / "c.jpg"


def test_empty_or_missing_folder_is_a_usage_error(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match=r"no images found in .* \(looked for .jpg .jpeg .png .webp .bmp .gif\)"):
        ImageDataset(tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        ImageDataset(tmp_path / "missing")


def test_image_folder_labels(tmp_path):
    make_tree(tmp_path, ["dog/1.png", "cat/2.png", "cat/deep/3.png", "ant/4.png"])
    (tmp_path / "empty").mkdir()  # a class with no images still takes its index, as in torchvision
    dataset = ImageDataset(tmp_path, labels="folders")
    assert dataset.classes == ["ant", "cat", "dog", "empty"]
    assert dataset.files == ["ant/4.png", "cat/2.png", "cat/deep/3.png", "dog/1.png"]
    assert dataset.labels == [0, 1, 1, 2]
    make_tree(tmp_path, ["loose.png"])
    with pytest.raises(UsageError, match="not inside a class folder"):
        ImageDataset(tmp_path, labels="folders")


def test_csv_labels_with_and_without_header(tmp_path):
    make_tree(tmp_path / "img", ["b.png", "sub/a.png", "unlisted.png"])
    (tmp_path / "with.csv").write_text("file,class_index\nsub/a.png,7\nb.png, 3\n\n")
    (tmp_path / "without.csv").write_text("b.png,3\nsub/a.png,7\n")
    for name in ["with.csv", "without.csv"]:
        dataset = ImageDataset(tmp_path / "img", labels=tmp_path / name)
        assert dataset.files == ["b.png", "sub/a.png"]  # the CSV defines the dataset
        assert dataset.labels == [3, 7]


@pytest.mark.parametrize("text, message", [
    ("file,class_index\nb.png,3\nmissing.png,1\n", "line 3: image missing.png does not exist"),
    ("b.png,3\nsub/a.png,seven\n", "line 2: class index 'seven' is not an integer"),
    ("b.png,3,extra\n", "line 1: expected 2 columns"),
    ("b.png\n", "line 1: expected 2 columns"),
    ("b.png,3\nb.png,4\n", "line 2: image b.png is listed twice"),
    ("b.png,-1\n", "line 1: class index -1 is negative"),
    ("b.png,99999999999999999999999\n", "line 1: class index 99999999999999999999999 is too large"),
    ("b.png,3\n\xe9t\xe9.png,1\n".encode("latin-1"), "is not UTF-8"),
    ("notes.txt,1\n", "line 1: image notes.txt is not a supported image"),
    ("file,class_index\n", "lists no images"),
])
def test_bad_csv_is_a_usage_error_with_the_line(tmp_path, text, message):
    make_tree(tmp_path / "img", ["b.png", "sub/a.png"])
    (tmp_path / "img" / "notes.txt").write_text("x")
    (tmp_path / "labels.csv").write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(UsageError, match=message):
        ImageDataset(tmp_path / "img", labels=tmp_path / "labels.csv")


def test_missing_csv_is_a_usage_error(tmp_path):
    make_tree(tmp_path, ["a.png"])
    with pytest.raises(UsageError, match="labels file .* not found"):
        ImageDataset(tmp_path, labels=tmp_path / "nope.csv")


def test_fingerprint_identifies_the_images(tmp_path):
    make_tree(tmp_path, ["a.png", "b/c.png"])
    first = ImageDataset(tmp_path).fingerprint()
    assert len(first) == 16 and int(first, 16) >= 0
    assert ImageDataset(tmp_path).fingerprint() == first  # deterministic
    make_tree(tmp_path, ["a.png"], colour=BLUE)  # same name, same size, other pixels
    assert ImageDataset(tmp_path).fingerprint() != first
    (tmp_path / "b" / "c.png").rename(tmp_path / "b" / "d.png")
    assert len({first, ImageDataset(tmp_path).fingerprint()}) == 2


# --- loader: batches in order, damaged files skipped, counted and warned about ----------------------

def make_mixed_dataset(root):
    rng = np.random.default_rng(1)
    colours = {}
    for i in range(7):
        colours[f"good{i}.png"] = tuple(int(c) for c in rng.integers(0, 256, 3))
        Image.new("RGB", (9, 6), colours[f"good{i}.png"]).save(root / f"good{i}.png")
    # Both damaged files sort before the good ones, so the first batch of 2 is left empty.
    (root / "broken.jpg").write_bytes(rng.bytes(500))  # not an image at all
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / "full.jpg")
    data = (root / "full.jpg").read_bytes()
    (root / "full.jpg").write_bytes(data[: len(data) // 2])  # a truncated JPEG
    return colours


def test_batches_skip_name_and_warn_about_damaged_files(tmp_path, caplog):
    colours = make_mixed_dataset(tmp_path)
    dataset = ImageDataset(tmp_path, view=Framing(resize=8, crop=6))
    assert dataset.files[:3] == ["broken.jpg", "full.jpg", "good0.png"] and len(dataset) == 9
    assert dataset.load(1) == (None, dataset.load(1)[1]) and dataset.load(1)[1].startswith("image file is truncated")
    with caplog.at_level(logging.WARNING, logger="microscope.data.images"):
        batches = list(dataset.batches(batch_size=2, workers=0))
    # Fixed chunks of indices: batch 0 (images 0 and 1) is emptied by the two damaged files.
    assert [b.indices.tolist() for b in batches] == [[], [2, 3], [4, 5], [6, 7], [8]]
    for batch in batches[1:]:
        assert batch.images.dtype == torch.uint8 and batch.images.shape[1:] == (3, 6, 6)
        for index, image in zip(batch.indices.tolist(), batch.images):
            assert (image.permute(1, 2, 0) == torch.tensor(colours[dataset.files[index]])).all()
    skipped = [item for batch in batches for item in batch.skipped]
    assert [path for path, _ in skipped] == ["broken.jpg", "full.jpg"]  # relative to the folder
    assert skipped[0][1].startswith("cannot identify image file")
    assert skipped[1][1].startswith("image file is truncated")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and "broken.jpg: cannot identify image file" in warned[0]
    assert "full.jpg: image file is truncated" in warned[1]
    later = list(dataset.batches(batch_size=2, workers=0, first=4, last=7))
    assert [b.indices.tolist() for b in later] == [[4, 5], [6]]  # a pass over part of the images


def test_batches_do_not_depend_on_workers(tmp_path):
    make_mixed_dataset(tmp_path)
    dataset = ImageDataset(tmp_path, view=Framing(resize=8, crop=6))
    serial = list(dataset.batches(batch_size=2, workers=0))
    parallel = list(dataset.batches(batch_size=2, workers=2))
    assert len(serial) == len(parallel)
    for a, b in zip(serial, parallel):
        assert torch.equal(a.indices, b.indices) and torch.equal(a.images, b.images) and a.skipped == b.skipped


def test_batches_reject_bad_arguments(tmp_path):
    make_tree(tmp_path, ["a.png"])
    dataset = ImageDataset(tmp_path)
    with pytest.raises(UsageError, match="batch size"):
        next(dataset.batches(batch_size=0))
    with pytest.raises(UsageError, match="workers"):
        next(dataset.batches(workers=-1))


# --- hostile folders: FIFOs, sockets, devices, dangling links, link loops, duplicates ----------------

@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging: opening a FIFO blocks until a writer comes, forever in a test."""
    def expire(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "microscope.data.images"]


def test_fifo_socket_and_device_named_like_photos_are_skipped_unopened(tmp_path, caplog, monkeypatch):
    root = tmp_path / "hostile-a"
    make_tree(root, ["good.png"])
    os.mkfifo(root / "fifo.jpg")
    monkeypatch.chdir(root)  # a relative name: a socket's path is limited to ~108 bytes
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind("socket.png")
    (root / "null.jpg").symlink_to(os.devnull)
    make_tree(root, ["folder.jpg/inner.png"])  # a folder named like a photo is a folder
    try:
        with deadline(10), caplog.at_level(logging.WARNING, logger="microscope.data.images"):
            dataset = ImageDataset(root)
            assert dataset.files == ["folder.jpg/inner.png", "good.png"]
            assert len(dataset.fingerprint()) == 16
    finally:
        server.close()
    assert warnings_of(caplog) == ["skipped 3 entries of hostile-a: 3 not a regular file (first: fifo.jpg)"]


def test_a_fifo_that_takes_a_photos_place_later_does_not_block(tmp_path, caplog):
    make_tree(tmp_path, ["a.png", "b.png"], colour=GREEN)
    dataset = ImageDataset(tmp_path, view=Framing(resize=None, crop=4))
    (tmp_path / "a.png").unlink()
    os.mkfifo(tmp_path / "a.png")
    with deadline(10), caplog.at_level(logging.WARNING, logger="microscope.data.images"):
        assert dataset.load(0) == (None, "not a regular file (a FIFO)")
        with pytest.raises(UnreadableImage, match=r"a\.png: not a regular file \(a FIFO\)"):
            load_rgb(tmp_path / "a.png")
        batches = list(dataset.batches(batch_size=2, workers=0))
        assert len(dataset.fingerprint()) == 16
    assert batches[0].indices.tolist() == [1] and batches[0].skipped == [("a.png", "not a regular file (a FIFO)")]
    assert (batches[0].images[0].permute(1, 2, 0) == torch.tensor(GREEN, dtype=torch.uint8)).all()


def test_link_loops_are_walked_once(tmp_path, caplog):
    root = tmp_path / "loops"
    make_tree(root, ["photo.png", "a/x.png"])
    (root / "a" / "back").symlink_to("..")  # the root again
    (root / "a" / "self").symlink_to(".")  # a/ again, from inside itself
    (root / "a" / "up").symlink_to(tmp_path)  # the folder above the root
    (root / "everything").symlink_to("/")  # would walk the whole machine
    (root / "me.jpg").symlink_to("me.jpg")  # a file link to itself
    with deadline(20), caplog.at_level(logging.WARNING, logger="microscope.data.images"):
        dataset = ImageDataset(root)
    assert dataset.files == ["a/x.png", "photo.png"]  # once each, not 41 times
    assert warnings_of(caplog) == ["skipped 5 entries of loops: 5 link loop (first: a/back)"]


def test_duplicates_are_listed_once_under_their_first_name(tmp_path, caplog):
    root = tmp_path / "dups"
    make_tree(root, ["b/x.png", "b/y.png"])
    os.link(root / "b" / "x.png", root / "c-hard.png")  # the same inode, another name
    (root / "d-link.png").symlink_to("b/y.png")
    (root / "a").symlink_to("b")  # sorts first: its names win over b's, on every file system
    with caplog.at_level(logging.WARNING, logger="microscope.data.images"):
        dataset = ImageDataset(root)
    assert dataset.files == ["a/x.png", "a/y.png"]
    assert dataset.path(0) == root / "a" / "x.png"
    assert warnings_of(caplog) == ["skipped 3 entries of dups: 2 duplicate (first: c-hard.png), "
                                   "1 duplicate folder (first: b)"]
    (root / "labels.csv").write_text("a/x.png,1\nd-link.png,2\n")
    with pytest.raises(UsageError, match=r"line 2: image d-link.png is left out \(duplicate of a/y.png\)"):
        ImageDataset(root, labels=root / "labels.csv")


def test_dangling_links_are_counted_not_fatal(tmp_path, caplog):
    root = tmp_path / "dangling"
    make_tree(root, ["ok.png"])
    (root / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (root / "gone-folder").symlink_to(tmp_path / "nowhere")
    with caplog.at_level(logging.WARNING, logger="microscope.data.images"):
        dataset = ImageDataset(root)
    assert dataset.files == ["ok.png"] and len(dataset.fingerprint()) == 16
    assert warnings_of(caplog) == ["skipped 1 entries of dangling: 1 dangling link (first: gone.jpg)"]
    (root / "labels.csv").write_text("gone.jpg,0\n")
    with pytest.raises(UsageError, match=r"line 1: image gone.jpg is left out \(dangling link\)"):
        ImageDataset(root, labels=root / "labels.csv")


def test_links_out_of_the_root_keep_their_in_root_names(tmp_path):
    outside = tmp_path / "private-elsewhere"
    make_tree(outside, ["real.png", "album/y.png"], colour=BLUE)
    root = tmp_path / "data"
    root.mkdir()
    (root / "in.png").symlink_to(outside / "real.png")
    (root / "ext").symlink_to(outside / "album")
    dataset = ImageDataset(root, view=Framing(resize=None, crop=4))
    assert dataset.files == ["ext/y.png", "in.png"]
    assert [dataset.path(i) for i in range(2)] == [root / "ext" / "y.png", root / "in.png"]
    assert all(image is not None for image, _ in map(dataset.load, range(2)))


def test_unreadable_reasons_do_not_carry_the_local_path(tmp_path):
    (tmp_path / "noise.jpg").write_bytes(np.random.default_rng(2).bytes(300))
    (tmp_path / "folder.png").mkdir()
    for name in ["noise.jpg", "folder.png", "none.jpg"]:
        with pytest.raises(UnreadableImage) as error:
            load_rgb(tmp_path / name)
        assert str(tmp_path) not in error.value.reason
    assert error.value.reason == "no such file"


@pytest.mark.parametrize("data, message", [
    (b"b.png,1\nsub/a.png,2\n\xe9t\xe9.png,3\n", r"labels.csv line 3 is not UTF-8 text \(byte 0xe9\)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"labels.csv line 1 is not UTF-8 text \(byte 0x89\)"),
    (b"file,class_index\nb.png,1\x00\x00\n", r"labels.csv line 2 holds a NUL byte"),
    (b"b.png," + b"9" * 5000 + b"\n", r"line 1: class index 9{5000} is too large"),
    (b"b.png,-" + b"9" * 5000 + b"\n", r"line 1: class index -9{5000} is negative"),
    (b"b.png,2\nsub/a.png,1_000\n", r"line 2: class index '1_000' is not an integer"),
    ("b.png,2\nsub/a.png,\u0663\n".encode(), r"line 2: class index '\u0663' is not an integer"),
    (b'file,class_index\n"b.png","1\n"\nsub/a.png,x\n', r"line 4: class index 'x' is not an integer"),
    (b"b.png,1\n../img/b.png,2\n", r"line 2: image ../img/b.png is not inside .*img; names are relative"),
    (b"b.png,1\n/etc/passwd,2\n", r"line 2: image /etc/passwd is not inside"),
    (b'b.png,1\n"' + b"x" * 200_000 + b'",2\n', r"line 2: not a readable CSV \(field larger than field limit"),
])
def test_labels_csv_bytes_and_numbers_name_the_file_and_line(tmp_path, data, message):
    make_tree(tmp_path / "img", ["b.png", "sub/a.png"])
    (tmp_path / "labels.csv").write_bytes(data)
    with pytest.raises(UsageError, match=message) as error:
        ImageDataset(tmp_path / "img", labels=tmp_path / "labels.csv")
    assert str(tmp_path / "labels.csv") in str(error.value) and "\n" not in str(error.value)


def test_labels_csv_that_is_a_fifo_or_folder_is_refused_at_once(tmp_path):
    make_tree(tmp_path / "img", ["b.png"])
    os.mkfifo(tmp_path / "fifo.csv")
    (tmp_path / "folder.csv").mkdir()
    with deadline(10):
        for name, kind in [("fifo.csv", "a FIFO"), ("folder.csv", "a folder")]:
            with pytest.raises(UsageError, match=f"labels file .*{name} is not a regular file \\({kind}\\)"):
                ImageDataset(tmp_path / "img", labels=tmp_path / name)
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbfb.png,+4\n")  # Excel's UTF-8 CSV, a plus sign
    assert ImageDataset(tmp_path / "img", labels=tmp_path / "bom.csv").labels == [4]


def test_names_that_are_not_utf8_are_skipped_or_refused(tmp_path, caplog):
    # Linux names are bytes: these arrive as surrogates, which no JSON file or page can hold.
    root = tmp_path / "bytes"
    make_tree(root, ["ok.png"])
    Image.new("RGB", (4, 4), RED).save(os.fsdecode(bytes(root) + b"/caf\xe9.png"), format="PNG")
    with caplog.at_level(logging.WARNING, logger="microscope.data.images"):
        dataset = ImageDataset(root)
    assert dataset.files == ["ok.png"] and len(dataset.fingerprint()) == 16
    assert warnings_of(caplog) == ["skipped 1 entries of bytes: 1 name not UTF-8 (first: caf\\xe9.png)"]
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/f\xf6to"))
    make_tree(folder, ["a.png"])
    with pytest.raises(UsageError, match=r"the image folder's name f\\xf6to is not UTF-8 text; rename it"):
        ImageDataset(folder)
