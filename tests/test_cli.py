"""Every command through the real command line: its success path in a subprocess (as a user runs it,
reading its last line), and its bad input in-process (the same `main`): one line, exit code 2."""
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from microscope.cli import main
from generated import QUICK_CARICATURES

REPO = Path(__file__).resolve().parents[1]
MODEL = ["--model", "inceptionv1-caffe", "--weights", "random"]
TINY = [*MODEL, "--layers", "conv1", "--quiet"]


def cli(*args, cwd=None, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(REPO / "build.py"), *map(str, args)], capture_output=True, text=True,
                            cwd=cwd)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
    return result


def last_line(result) -> str:
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    (folder / "labels.csv").write_text("".join(f"p{i}.png,{i}\n" for i in range(5)))
    return folder


@pytest.fixture(scope="module")
def store(tmp_path_factory, photos):
    """A store made by the `examples` and `featurevis` commands."""
    root = tmp_path_factory.mktemp("store")
    examples = cli("examples", *TINY, "--images", photos, "--labels", photos / "labels.csv", "--top-k", "3",
                   "--store", root)
    assert "dataset examples: 1 layers computed, 0 reused" in examples.stdout
    assert last_line(examples) == f"store: {root}"
    featurevis = cli("featurevis", *TINY, "--units", "0-1", "--steps", "3", "--size", "48", "--objectives", "channel",
                     "--store", root)
    assert "feature visualization: 2 renders computed, 0 reused" in featurevis.stdout
    again = cli("featurevis", *TINY, "--units", "0-1", "--steps", "3", "--size", "48", "--objectives", "channel",
                "--store", root)
    assert "feature visualization: 0 renders computed, 2 reused" in again.stdout
    return root


@pytest.fixture(scope="module")
def site(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    result = cli("site", "--store", store, "--out", out, "--quiet")
    assert re.match(r"  per-unit budget: \d+ kB", last_line(result))
    assert (out / "models" / "inceptionv1-caffe" / "conv1" / "0" / "index.html").is_file()
    unit = json.loads((out / "models" / "inceptionv1-caffe" / "conv1" / "1" / "unit.json").read_text())
    assert unit["featurevis"]["renders"] == {"channel": "channel.webp"} and len(unit["examples"]["top_examples"]) == 3
    return out


def test_models_and_layers_print_their_tables():
    models = cli("models")
    assert {"inceptionv1", "inceptionv1-caffe", "googlenet"} <= {line.split()[0] for line in models.stdout.splitlines()[2:]}
    layers = cli("layers", "--model", "inceptionv1-caffe")
    rows = {line.split()[0]: line.split() for line in layers.stdout.splitlines()[2:]}
    assert rows["inception_4a"][1:4] == ["block", "512", "14x14"] and "inception_4a_1x1" not in rows
    assert "inception_4a_1x1" in cli("layers", "--model", "inceptionv1-caffe", "--all").stdout
    assert last_line(layers).startswith("logits")


def test_circuits_prints_what_it_computed(tmp_path):
    result = cli("circuits", *TINY, "--circuit-top", "3", "--store", tmp_path)
    assert "circuit: 1 layer pairs computed, 0 reused" in result.stdout  # conv1 -> conv2_reduce (conv1 has no inputs)
    assert (tmp_path / "inceptionv1-caffe" / "conv2_reduce" / "circuits" / "result.json").is_file()


def test_evaluate_prints_accuracy_as_its_last_line(photos):
    result = cli("evaluate", *MODEL, "--images", photos, "--labels", photos / "labels.csv", "--quiet")
    assert re.fullmatch(r"inceptionv1-caffe: top-1 [\d.]+ %  top-5 [\d.]+ %  on 5 images \(0 unreadable, skipped\)",
                        last_line(result))


def test_site_and_serve(site):
    server = subprocess.Popen([sys.executable, str(REPO / "build.py"), "serve", "--out", str(site), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
        with urllib.request.urlopen(url + "models/inceptionv1-caffe/conv1/0/") as response:
            assert response.status == 200 and b"conv1" in response.read()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_publish_commits_and_pushes_the_site(site, tmp_path):
    repo, remote = tmp_path / "repo", tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "README").write_text("project\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-qm", "start"], check=True)
    subprocess.run([*git, "remote", "add", "origin", str(remote)], check=True)
    result = cli("publish", "--out", site, "--push", cwd=repo)
    assert re.fullmatch(r"gh-pages: committed at [0-9a-f]{12}, pushed to origin", last_line(result))
    files = subprocess.run(["git", "-C", str(remote), "ls-tree", "-r", "--name-only", "gh-pages"], capture_output=True,
                           text=True, check=True).stdout.split()
    assert "index.html" in files and "models/inceptionv1-caffe/conv1/0/index.html" in files


def test_build_end_to_end_from_another_folder(photos, tmp_path):
    result = cli("build", *TINY, *QUICK_CARICATURES, "--units", "0", "--steps", "2", "--size", "48", "--objectives", "channel",
                 "--images", photos, "--top-k", "2", "--store", "store", "--out", "site", cwd=tmp_path)
    assert last_line(result) == "preview: python build.py serve --out site    publish: python build.py publish --out site"
    assert (tmp_path / "site" / "models" / "inceptionv1-caffe" / "conv1" / "0" / "channel.webp").is_file()
    assert (tmp_path / "store" / "inceptionv1-caffe" / "conv1" / "examples" / "result.json").is_file()


# ------------------------------------------------------------------------------------------------
# Bad input: one line, exit code 2, nothing computed first


@pytest.fixture(scope="module")
def files(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("bad")
    (root / "afile").write_text("not a folder")
    (root / "latin1.csv").write_bytes("p0.png,1\n\xe9t\xe9.png,2\n".encode("latin-1"))
    (root / "huge.csv").write_text("p0.png,99999999999999999999\n")
    (root / "labels.yaml").write_bytes(b"conv1:\n  1: \xe9t\xe9\n")
    (root / "notasite").mkdir()
    (root / "notasite" / "thesis.tex").write_text("precious")
    from test_custom_model import your_own_model  # with weights gone wrong

    _, weights = your_own_model(root, seed=0)
    weights["features.3.bias"][2] = float("nan")
    torch.save(weights, root / "nan.pth")
    return root


BAD = [
    (["models", "--nope"], "no such option"),
    (["layers", "--model", "alexnet9"], "unknown model 'alexnet9'"),
    (["evaluate", *MODEL, "--images", "/no/such/folder"], "no images found in /no/such/folder"),
    (["evaluate", *MODEL, "--images", "{photos}", "--labels", "/no/labels.csv"], "labels file /no/labels.csv not found"),
    (["evaluate", *MODEL, "--images", "{photos}", "--labels", "{files}/latin1.csv"], "is not UTF-8"),
    (["evaluate", *MODEL, "--images", "{photos}", "--labels", "{files}/huge.csv"], "is too large"),
    (["evaluate", *MODEL, "--images", "{photos}", "--image-batch-size", "0"], "--image-batch-size"),
    (["evaluate", "--model", "inceptionv1-caffe", "--weights", "/no/weights.npz", "--images", "{photos}"],
     "weights file /no/weights.npz not found"),
    (["examples", *TINY, "--images", "/no/such/folder"], "image folder /no/such/folder not found"),
    (["examples", *TINY, "--images", "{photos}", "--top-k", "0"], "--top-k"),
    (["examples", *MODEL, "--layers", "inception_9z", "--images", "{photos}"], "unknown layer 'inception_9z'"),
    (["examples", *TINY], "missing option '--images'"),
    (["examples", *TINY, "--images", "{photos}", "--store", "/proc/nostore"], "cannot write the artifact store"),
    (["examples", *TINY, "--images", "{photos}", "--store", "{files}/afile"], "is a file, not a folder"),
    (["featurevis", *TINY, "--objectives", "channel,dream"], "unknown objective 'dream'"),
    (["featurevis", *TINY, "--steps", "0"], "--steps"),
    (["featurevis", *TINY, "--size", "8"], "--size"),
    (["featurevis", *TINY, "--units", "64"], "valid units of conv1 are 0-63"),
    (["featurevis", *TINY, "--units", "5-2"], "runs backwards"),
    (["featurevis", *TINY, "--layers", ","], "--layers is empty"),
    (["featurevis", *TINY, "--device", "tpu"], "unknown device 'tpu'"),
    (["featurevis", *TINY, "--image-format", "gif"], "'gif' is not one of"),
    (["circuits", *MODEL, "--layers", "inception_9z"], "unknown layer 'inception_9z'"),
    (["circuits", *TINY, "--circuit-top", "0"], "--circuit-top"),
    (["site", "--store", "/no/store"], "no artifact store at /no/store"),
    (["site", "--store", "{store}", "--out", "/proc/x"], "cannot write the site at --out /proc/x"),
    (["site", "--store", "{store}", "--out", "{files}/afile"], "is a file, not a folder"),
    (["site", "--store", "{store}", "--out", "{files}/notasite"], "not a microscope site"),
    (["site", "--store", "{store}", "--layers", "mixed9"], "layer 'mixed9' is in none of the models"),
    (["site", "--store", "{store}", "--labels-file", "{files}/labels.yaml"], "is not UTF-8"),
    (["serve", "--out", "/no/site"], "no site at /no/site"),
    (["serve", "--out", "{files}", "--port", "70000"], "--port"),
    (["publish", "--out", "/no/site"], "no site at /no/site"),
    (["verify", "--store", "/no/store"], "no artifact store at /no/store"),
    (["verify", "--store", "{store}", "--out", "/no/site"], "no site at /no/site"),
    (["build", *TINY, "--out", "/proc/x"], "cannot write the site at --out /proc/x"),
    (["build", *TINY, "--labels-file", "/no/labels.yaml"], "cannot read labels file"),
    (["build", *TINY, "--images", "{photos}", "--out", "{photos}/site"], "overlap (one is inside the other)"),
    (["build", *TINY, "--images", "{photos}", "--store", "{photos}"], "overlap (one is inside the other)"),
    (["examples", *TINY, "--images", "{photos}", "--top-k", "1000"], "more examples per unit than the 5 images"),
    (["featurevis", "--model", "{files}/tiny.py:tiny", "--weights", "{files}/nan.pth", "--quiet"],
     "holds NaN values in features.3.bias"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a[:1] + [m[:20]]) for a, m in BAD])
def test_bad_input_is_one_line_and_exit_code_2(args, message, photos, store, files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written here: no store, no site
    args = [a.format(photos=photos, store=store, files=files) for a in args]
    result = CliRunner().invoke(main, args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: ") and message.lower() in lines[0].lower(), result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert list(tmp_path.iterdir()) == []
    assert (files / "notasite" / "thesis.tex").read_text() == "precious"


def test_an_older_flag_spelling_still_works_with_a_note(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["featurevis", *TINY, "--format=gif"])  # now --image-format
    note, error = result.stderr.strip().splitlines()
    assert note == "note: --format is now --image-format; the old name still works for now"
    assert error.startswith("error: ") and "'gif' is not one of" in error and result.exit_code == 2


def test_the_older_top_flag_still_works_with_a_note(photos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["examples", *TINY, "--images", str(photos), "--top", "1000"])
    note, error = result.stderr.strip().splitlines()
    assert note == "note: --top is now --top-k; the old name still works for now"
    assert error.startswith("error: --top-k 1000 asks for more examples per unit") and result.exit_code == 2
