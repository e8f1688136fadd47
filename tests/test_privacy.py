"""No local path reaches the published site: a real `build` from a folder that hides its location
everywhere it can (photo metadata, a damaged photo, a FIFO, a dangling link, a link to a photo in a
private folder, the model and weights files, the labels files), then every byte of every file of the
site is searched for the paths. The README's tiny model with weights of its own, one layer, few units."""
import os
import secrets
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from generated import REPO, blob_photos, command, QUICK_CARICATURES
from test_custom_model import your_own_model


def hide_the_path_in_metadata(photo: Path) -> None:
    """Write the photo's own absolute path into its PNG text chunk and its EXIF description."""
    exif = Image.Exif()
    exif[0x010E] = str(photo)  # ImageDescription
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", str(photo))
    with Image.open(photo) as image:
        image.load()
        image.save(photo, pnginfo=text, exif=exif)


def searchable(path: Path) -> list[bytes]:
    """The file's bytes, plus what compression or image metadata would hide from a plain search."""
    data = path.read_bytes()
    found = [data]
    if zipfile.is_zipfile(path):  # .npz: members may be deflated
        with zipfile.ZipFile(path) as archive:
            found += [name.encode() for name in archive.namelist()] + [archive.read(n) for n in archive.namelist()]
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".gif"):
        with Image.open(path) as image:
            found.append(repr(image.info).encode() + repr(dict(image.getexif())).encode())
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    secret = f"secret-{secrets.token_hex(4)}"  # appears nowhere but in this run's local paths
    home = tmp_path_factory.mktemp("privacy") / secret
    photos = home / "holiday"
    private = home / "private-album"
    photos.mkdir(parents=True)
    private.mkdir()
    blob_photos(photos, 6, seed=5, side=64)
    blob_photos(private, 1, seed=6, side=64)
    for photo in [*photos.glob("*.png"), *private.glob("*.png")]:
        hide_the_path_in_metadata(photo)
    (photos / "broken.jpg").write_bytes(np.random.default_rng(0).bytes(700))  # unreadable: skipped, counted
    os.mkfifo(photos / "fifo.jpg")
    (photos / "gone.jpg").symlink_to(home / "deleted" / "gone.jpg")
    (photos / "linked.png").symlink_to(private / "p00.png")  # followed, but shown as linked.png
    torch.save(your_own_model(home, seed=0, name="tinynet.py")[1], home / "tiny.pth")
    (home / "classes.csv").write_text("".join(f"p{i:02d}.png,{i % 3}\n" for i in range(6)) +
                                      "broken.jpg,1\nlinked.png,2\n")
    (home / "units.yaml").write_text("features_1:\n  0: curve detector\n")
    store, site = home / "store", home / "site"
    args = ["build", *QUICK_CARICATURES, "--model", f"{home / 'tinynet.py'}:tiny", "--weights", home / "tiny.pth", "--layers", "features_1",
            "--units", "0-1", "--steps", "2", "--size", "32", "--objectives", "channel", "--top-k", "2",
            "--images", photos, "--labels", home / "classes.csv", "--labels-file", home / "units.yaml",
            "--store", store, "--out", site, "--quiet"]
    # generated.cli, with a timeout: reading the FIFO as a photo would block the build for ever.
    result = subprocess.run(command(*args), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return home, secret, site, result


def test_the_site_holds_no_local_path(built):
    home, secret, site, _ = built
    # The secret is in every local path of the run (the store, the photos, the link targets, the model).
    needles = {secret, str(home.parent), str(REPO), "private-album"}
    if Path.home() != Path("/"):
        needles.add(str(Path.home()))
    photo = home / "private-album" / "p00.png"
    assert any(str(photo).encode() in data for data in searchable(photo)[1:])  # the search sees metadata
    files = [path for path in site.rglob("*") if path.is_file()]
    assert len(files) > 40 and {path.suffix for path in files} >= {".html", ".json", ".js", ".jpg", ".onnx", ".wasm"}
    for path in files:
        for data in searchable(path):
            for needle in needles:
                assert needle.encode() not in data, f"{path.relative_to(site)} holds {needle!r}"


def test_the_site_still_says_what_it_read_and_skipped(built):
    home, _, site, result = built
    # One line on the terminal counts what discovery left out, with the first of each kind.
    assert "skipped 2 entries of holiday: 1 dangling link (first: gone.jpg), " \
           "1 not a regular file (first: fifo.jpg)" in result.stderr
    unit = (site / "models" / "tinynet-tiny" / "features_1" / "0" / "index.html").read_text(encoding="utf-8")
    assert "curve detector" in unit and "7 images of holiday" in unit and "1 unreadable files skipped" in unit
