"""Damage to any kind of stored file - truncated, emptied, replaced - is found by `verify`, said in one
line by a build, and recomputed by it; `verify --repair` removes exactly what is damaged. A real build
of a small model of the test's own (tests/test_custom_model.py's README example)."""
import os
import shutil

import pytest

from generated import cli, QUICK_CARICATURES
from test_custom_model import model_and_photos

# One file of each kind. Chosen so that no damage hides another: a layer's examples files are all
# checked against its result.json, so that record is damaged on the other layer; a pack's index is
# what a pack is checked against, so it is damaged in the repair test below.
KINDS = ["DATASET/images.json", "THUMB", "tiny-tiny/model.json",
         "tiny-tiny/features_4/examples/summary.npz", "tiny-tiny/features_4/examples/patches/000000.bin",
         "tiny-tiny/features_4/examples/atlas_vectors.npz",
         "tiny-tiny/features_1/examples/result.json",
         "tiny-tiny/features_1/featurevis/0/channel.png", "tiny-tiny/features_4/featurevis/1/channel.json",
         "tiny-tiny/features_4/circuits/weights.npz", "tiny-tiny/logits/circuits/result.json"]
HOW = ["truncated", "emptied", "replaced"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = model_and_photos(tmp_path_factory.mktemp("damage"), seed=5)
    args = ["build", *QUICK_CARICATURES, "--model", f"{root / 'tiny.py'}:tiny", "--weights", root / "tiny.pth", "--layers",
            "features_1,features_4", "--units", "0-1", "--steps", "2", "--size", "32", "--objectives", "channel",
            "--top-k", "2", "--atlas-vectors", "50", "--images", root / "photos", "--store", root / "pristine",
            "--out", root / "site", "--quiet"]
    cli(*args)
    return root, args


def _fresh(built, tmp_path):
    root, args = built
    store = tmp_path / "store"
    shutil.copytree(root / "pristine", store)
    dataset = next((store / "tiny-tiny" / "datasets").iterdir()).relative_to(store).as_posix()
    thumb = sorted((store / dataset / "thumbs").glob("*.jpg"))[0].relative_to(store).as_posix()
    names = {"DATASET": dataset, "THUMB": thumb}
    args = [str(value) for value in args]
    args[args.index("--store") + 1], args[args.index("--out") + 1] = str(store), str(tmp_path / "site")
    return store, args, lambda relative: names.get(relative, None) or "/".join(names.get(part, part)
                                                                              for part in relative.split("/"))


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif how == "emptied":
        path.write_bytes(b"")
    else:  # replaced by other bytes of the same length: only a checksum or a full decode can tell
        path.write_bytes(bytes(b ^ 0x5A for b in data[:64]) + data[64:] if len(data) > 64 else os.urandom(len(data)))


@pytest.mark.parametrize("turn", range(len(HOW)))
def test_damage_is_found_said_and_recomputed(built, tmp_path, turn):
    """Every kind damaged at once, each in one of the three ways; over the three turns, each kind in each way."""
    store, args, name = _fresh(built, tmp_path)
    group = KINDS
    paths = [store / name(relative) for relative in group]
    for at, path in enumerate(paths):
        _damage(path, HOW[(at + turn) % len(HOW)])
    found = cli("verify", "--store", store, code=1).stdout.splitlines()
    damaged = {line.split(": ")[1] for line in found if line.startswith("damaged: ")}
    assert damaged == {name(relative) for relative in group}, found
    assert found[-1].endswith(f"{len(group)} damaged")

    rebuilt = cli(*args, "--log-file", tmp_path / "build.log")  # warnings go to the terminal and the log
    said = rebuilt.stderr.splitlines()
    logged = (tmp_path / "build.log").read_text()
    assert all(line in logged for line in said if line.startswith("store: ")) and "WARNING" in logged
    for path in paths:  # each said in one line, by its path (thumbnails by their folder: see the index)
        assert any(str(path) in line for line in said) or path.name == "model.json" or \
            (path.suffix == ".jpg" and any(f"{path.parent} written again" in line for line in said)), (path, said)
    assert "Traceback" not in rebuilt.stderr
    clean = cli("verify", "--store", store, "--out", tmp_path / "site").stdout.splitlines()
    assert clean[-1].endswith("0 damaged; site " + str(tmp_path / "site") + ": 0 damaged"), clean


def test_repair_removes_only_the_damaged_pieces(built, tmp_path):
    store, args, name = _fresh(built, tmp_path)
    before = {path: path.read_bytes() for path in store.rglob("*") if path.is_file() and path.name != ".lock"}
    render = store / "tiny-tiny/features_1/featurevis/0/channel.png"
    thumb = store / name("THUMB")
    index = store / "tiny-tiny/features_1/examples/patches/000000.idx.npz"
    _damage(render, "truncated")
    _damage(thumb, "replaced")
    _damage(index, "emptied")
    repaired = cli("verify", "--store", store, "--repair").stdout.splitlines()
    # The render and its record, the thumbnail (its pack's stamps stay), the index and the layer's result.
    assert repaired[-1].startswith("repaired: removed 5 files"), repaired
    gone = {path for path in before if not path.exists()}
    assert gone == {render, render.with_suffix(".json"), thumb, index, index.parent.parent / "result.json"}
    rebuilt = cli(*args)
    assert "feature visualization: 1 renders computed, 3 reused" in rebuilt.stdout
    assert "dataset examples: 1 layers computed, 1 reused" in rebuilt.stdout
    assert thumb.read_bytes() == before[thumb] and render.with_suffix(".json").is_file()
    assert cli("verify", "--store", store).stdout.splitlines()[-1].endswith(" 0 damaged")
