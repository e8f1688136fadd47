"""Restructured code computes exactly what the code before it computed.

The code of an older commit is taken out of this repository's history and run beside today's, on the
same small build: cdaa800 (the last one before views, jobs and the typed store), whose every array,
patch, thumbnail and render must be the same bit for bit whatever the format around them became; and
3ccf869 (the last one before settings were declared once and the modules grouped by role, issue 26),
whose whole store - every view: examples, renders, circuits, an SAE and its features, an atlas - must
be the same file for file, records included (timings aside). Since issue 27 the SAE is evaluated on
half the held-out images and stops early on the other half: its vectors and its trained weights
(with too few steps to stop early) are still compared exactly, its record, evaluation arrays and
the features' pages (which depend on its key) no longer. Since issue 28 the examples pass also writes each
layer's similar.npz (and, with labels, concepts.json), and its result's identity (so its key) names the new
settings and version 3: those are left out, everything the older code wrote is compared as before. Since issue 29
`build` also makes caricatures and DeepDreams of the photos (today's code only, a few small steps): left out too,
as is, since issue 30, the network exported to ONNX for the "Try an image" page (<model>/inbrowser/). Since issue
31 the atlas sample (atlas_vectors.npz) is stored without compression: its bytes, so its stamp and every atlas key
made from that stamp (the layout's, the stages', the icons' own key array), differ; its arrays and everything made
from them are compared as before.
"""
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from microscope.data.packs import kind_name, read_patch_index
from microscope.store import ExamplesSummary, RenderRecord, Store, load_npz
from generated import QUICK_CARICATURES, comparable

REPO = Path(__file__).resolve().parents[1]
BEFORE = "cdaa800"
MODEL = "inceptionv1-caffe"
BUILD = ["build", "--model", MODEL, "--weights", "random", "--steps", "6", "--size", "48", "--objectives",
         "channel,diversity", "--units", "0-3", "--batch-size", "2", "--top", "4", "--layers", "conv1,inception_3a",
         "--quiet"]


def old_code(target: Path, commit: str = BEFORE) -> Path:
    found = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True)
    if found.returncode != 0:
        pytest.skip(f"commit {commit} is not in this checkout's history (a shallow clone or an export)")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    # Its own templates and static files, not the installed package's (they map to today's checkout).
    for folder in ("templates", "static"):
        (target / "microscope" / folder).symlink_to(target / folder, target_is_directory=True)
    return target


def test_a_small_build_is_identical_to_the_one_before_the_restructure(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 56, 3), dtype=np.uint8)).save(photos / f"photo{i}.png")
    for name, code in (("old", old_code(tmp_path / "code")), ("new", REPO)):
        command = [sys.executable, str(code / "build.py"), *BUILD, "--images", str(photos),
                   "--store", str(tmp_path / name), "--out", str(tmp_path / f"{name}-site")]
        command += list(QUICK_CARICATURES) if name == "new" else []
        result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, (name, result.stderr[-2000:])

    old, store = tmp_path / "old" / MODEL, Store(tmp_path / "new")
    compared = 0
    for layer in ("conv1", "inception_3a"):
        before = load_npz(old / layer / "examples" / "summary.npz")
        after = store.read(store.examples_summary_file(MODEL, layer), ExamplesSummary)
        for name, array in before.items():
            now = getattr(after, name)
            assert array.dtype == now.dtype and np.array_equal(array, now, equal_nan=array.dtype.kind == "f"), name
            compared += 1
        packed = {}
        for index_file in (old / layer / "examples" / "patches").glob("*.idx.npz"):
            index = load_npz(index_file)
            data = index_file.with_name(index_file.name.replace(".idx.npz", ".bin")).read_bytes()
            for unit, kind, rank, offset, length in zip(*(index[k] for k in ("unit", "kind", "rank", "offset", "length"))):
                packed[(int(unit), kind_name(int(kind)), int(rank))] = data[offset:offset + length]
        refs = read_patch_index(store, store.patches_dir(MODEL, layer))
        now = {(unit, kind, rank): ref.read() for unit, found in refs.items() for (kind, rank), ref in found.items()}
        assert now == packed and len(packed) > 100
        compared += len(packed)
    for thumb in old.glob("datasets/*/thumbs/*.jpg"):
        assert thumb.read_bytes() == (store.model_dir(MODEL) / thumb.relative_to(old)).read_bytes()
        compared += 1
    for provenance in sorted(old.glob("*/featurevis/*/provenance.json")):
        unit, layer = int(provenance.parent.name), provenance.parents[2].name
        for objective, entry in json.loads(provenance.read_text())["objectives"].items():
            record = store.read(store.render_file(MODEL, layer, unit, objective), RenderRecord)
            assert [image.file for image in record.images] == entry["files"]
            for i, image in enumerate(record.images):
                assert (provenance.parent / image.file).read_bytes() == \
                    (store.renders_dir(MODEL, layer, unit) / image.file).read_bytes()
                assert (image.objective_final, image.loss_curve) == (entry["objective_final"][i], entry["loss_curve"][i])
                assert (image.activation_mean, image.activation_max) == \
                    (entry["activation_mean"][i], entry["activation_max"][i])
                compared += 1
    assert compared > 1000


BEFORE_SETTINGS = "3ccf869"
LAYER = "inception_3a"
# The flags as they were spelled then: today's code takes the older spellings too (with a note).
EVERY_VIEW = [
    ["build", "--layers", LAYER, "--units", "0-1", "--steps", "3", "--size", "48", "--objectives", "channel,neuron",
     "--batch-size", "2", "--top", "3", "--atlas-vectors", "400", "--circuit-top", "3"],
    ["sae", "--layer", LAYER, "--expansion", "1", "--k", "4", "--positions-per-image", "4", "--steps", "12",
     "--sae-batch-size", "16"],
    ["atlas", "--layers", LAYER, "--grid", "3", "--umap-neighbours", "5", "--umap-min-dist", "0.1", "--icon-size", "32",
     "--icon-steps", "2", "--icon-batch-size", "4", "--attribution-vectors", "2", "--atlas-patches", "1"],
    ["build", "--layers", f"{LAYER}_sae", "--units", "0-1", "--steps", "3", "--size", "48", "--objectives", "channel",
     "--batch-size", "2", "--top", "3"],
]


def test_a_build_with_every_view_is_identical_to_the_one_before_settings_were_declared(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (64, 64 + 4 * i, 3), dtype=np.uint8)).save(photos / f"photo{i}.png")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # UMAP and torch's sums, the same on both sides
    for name, code in (("old", old_code(tmp_path / "code", BEFORE_SETTINGS)), ("new", REPO)):
        for step in EVERY_VIEW:
            command = [sys.executable, str(code / "build.py"), *step, "--model", MODEL, "--weights", "random",
                       "--images", str(photos), "--store", str(tmp_path / name), "--quiet"]
            if step[0] == "build":
                command += ["--out", str(tmp_path / f"{name}-site")] + (list(QUICK_CARICATURES) if name == "new" else [])
            result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env)
            assert result.returncode == 0, (name, step[0], result.stderr[-2000:])
    old, new = tmp_path / "old", tmp_path / "new"
    files = sorted(str(p.relative_to(old)) for p in old.rglob("*") if p.is_file() and p.name != ".lock")
    for part in ("/examples/", "/featurevis/", "/circuits/", "/sae/", "/atlas/", f"{LAYER}_sae/"):
        assert any(part in name for name in files), part  # every view stored something
    files = [name for name in files if f"{LAYER}_sae" not in name]  # keyed by the SAE's record (issue 27)
    assert files == sorted(str(p.relative_to(new)) for p in new.rglob("*")
                           if p.is_file() and p.name != ".lock" and f"{LAYER}_sae" not in str(p)
                           and p.name != "similar.npz" and "/caricature/" not in str(p)
                           and "/inbrowser/" not in str(p))
    trained = ("W_enc", "b_enc", "W_dec", "b_pre")
    for name in files:
        a, b = comparable(old / name), comparable(new / name)
        if "/sae/" in name and not name.endswith(".npy") and "vectors" not in Path(name).name:
            if name.endswith("weights.npz"):
                assert all(np.array_equal(a[k], b[k]) for k in trained), name
            continue
        if name.endswith("model.json"):  # the SAE's derived layers carry its key and held-out FVU
            for record in (a, b):
                record["layers"] = [layer for layer in record["layers"] if not layer["name"].startswith(f"{LAYER}_sae")]
        if name.endswith("examples/result.json"):  # issue 28's settings and version in its identity
            for record in (a, b):
                record.pop("key")
                record["files"].pop("similar.npz", None)
                record["identity"]["version"] = 2
                for setting in ("concept_images", "concept_min_images", "correlation_positions"):
                    record["identity"]["settings"].pop(setting, None)
        if "/atlas/" in name or name.endswith("examples/result.json"):  # issue 31: the sample's bytes, keyed on
            for record in (a, b):
                uncompressed_sample(name, record)
        if isinstance(a, dict) and name.endswith(".npz"):
            assert a.keys() == b.keys(), name
            assert all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f")
                       for k in a), name
        else:
            assert a == b, name


def uncompressed_sample(name: str, record: dict) -> None:
    """Leave out of a record what names the atlas sample's bytes, or a key made from them (see the docstring)."""
    if name.endswith("examples/result.json"):
        record["files"].pop("atlas_vectors.npz", None)
    elif name.endswith(".json"):  # the atlas's result and its stages
        for field in ("key", "layout_key", "vectors"):
            record.pop(field, None)
        if name.endswith("icons.json"):  # the icon files hold the icons' key
            record.pop("files", None)
    elif "/atlas/icons/" in name:
        record.pop("key", None)
