"""`--executor ray` on a real local Ray cluster (`ray start --head`, two CPUs: two worker processes).

One small build (dataset examples in shards, feature visualizations, circuits) is made by the local
executor as the reference; the Ray builds must write the same store, byte for byte - also when a
worker process is killed mid-build (Ray retries its task) and when the driver is killed and the
command run again (it skips every finished job). The reference runs with one thread, as each Ray
worker does: a CPU render is deterministic for a given thread count, not across thread counts. A local
build on two threads agrees with the Ray build as README's "When two results are equal" says.
"""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from generated import assert_agree, blob_photos, cli, command, comparable, QUICK_CARICATURES
from microscope.jobs import usable_cpus
from test_build import snapshot

RAY = Path(sys.executable).with_name("ray")
BUILD = ["build", *QUICK_CARICATURES, "--model", "inceptionv1-caffe", "--weights", "random", "--layers", "conv1,conv2", "--units", "0-5",
         "--steps", "40", "--size", "64", "--objectives", "channel", "--batch-size", "2", "--top-k", "4", "--try-page", "off", "--quiet"]
RENDERS = 12  # 6 units x 2 layers


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The address of a Ray head on this machine with two CPUs; the token it wants is in the env."""
    port = free_port()
    env = ray_env()
    subprocess.run([str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                    "--include-dashboard=false", "--disable-usage-stats"], env=env, check=True, capture_output=True)
    yield f"127.0.0.1:{port}"
    subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return blob_photos(tmp_path_factory.mktemp("photos"), 24, seed=3)


def build(store: Path, photos: Path, *extra) -> list:
    """The arguments of the small build into `store`."""
    return [*BUILD, "--images", photos, "--store", store, "--out", store.parent / f"{store.name}-site", *extra]


TOKEN = secrets.token_hex(32)  # this test run's cluster token (Ray no longer makes one when it is missing)


def ray_env() -> dict:
    return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, photos):
    store = tmp_path_factory.mktemp("local") / "store"
    cli(*build(store, photos), env={**os.environ, "OMP_NUM_THREADS": "1"})
    return snapshot(store)


@pytest.fixture(scope="module")
def ray_build(tmp_path_factory, cluster, photos):
    """The small build on the cluster (workers of one CPU: one thread each), its pass in 3 shards."""
    store = tmp_path_factory.mktemp("ray") / "store"
    result = cli(*build(store, photos, "--executor", "ray", "--ray-address", cluster, "--shards", "3"), env=ray_env())
    return store, result


def test_ray_build_writes_the_local_executors_store(cluster, photos, reference, ray_build):
    store, result = ray_build
    assert "dataset examples: 2 layers computed" in result.stdout and "  failed:" not in result.stdout
    # The plan is said, but not timed on this machine: its jobs run on the cluster.
    assert f"feature visualization {RENDERS} renders (not timed)" in result.stdout.splitlines()[0]
    found = snapshot(store)
    assert sorted(found) == sorted(reference)  # no shard states, view caches or temp files left
    assert found == reference  # arrays, images, records: byte for byte, the pass cut in 3 shards merged exactly
    again = cli(*build(store, photos, "--executor", "ray", "--ray-address", cluster), env=ray_env())
    assert f"feature visualization: 0 renders computed, {RENDERS} reused" in again.stdout
    assert snapshot(store) == reference


def test_a_local_build_on_two_threads_agrees_with_the_ray_build(tmp_path, photos, ray_build):
    """Indices and selections identical, values within README's tolerances - not byte for byte: a render
    on two threads is another path of its optimisation (here 2 of 12 differ, by 0.1 and 0.9 of 255 on
    average); the examples and circuits came out the same bytes."""
    if usable_cpus() < 2:
        pytest.skip("one CPU: a local build runs one thread, as the Ray workers do")
    store = tmp_path / "store"
    result = cli(*build(store, photos), env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert "(cpu, 2 threads)" in result.stdout.splitlines()[0]  # what the plan's timing ran on
    assert_agree(store, ray_build[0])


def ray_tasks(name: str) -> list[int]:
    """PIDs of Ray worker processes now running a microscope task of this stage."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split(None, 1)[0]) for line in out.splitlines() if f"ray::microscope {name}" in line]


def test_a_killed_worker_is_retried_and_the_result_is_the_same(tmp_path, cluster, photos, reference):
    store = tmp_path / "store"
    driver = subprocess.Popen(command(*build(store, photos, "--executor", "ray", "--ray-address", cluster)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ray_env())
    killed, deadline = None, time.time() + 240
    while killed is None and time.time() < deadline and driver.poll() is None:
        workers = ray_tasks("featurevis render")
        if workers:
            os.kill(workers[0], signal.SIGKILL)
            killed = workers[0]
        time.sleep(0.05)
    out, err = driver.communicate(timeout=600)
    assert killed is not None, "no render task was seen running; make the renders longer"
    assert driver.returncode == 0, err[-3000:]
    assert "will be retried" in out + err  # Ray saw the worker die
    assert "  failed:" not in out and "Traceback" not in err
    assert snapshot(store) == reference


def test_a_killed_driver_resumes_without_redoing_finished_jobs(tmp_path, cluster, photos, reference):
    store = tmp_path / "store"
    driver = subprocess.Popen(command(*build(store, photos, "--executor", "ray", "--ray-address", cluster)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ray_env())
    renders = store / "inceptionv1-caffe"
    deadline = time.time() + 240
    while time.time() < deadline and driver.poll() is None:
        if len(list(renders.glob("*/featurevis/*/channel.json"))) >= 2:
            break
        time.sleep(0.05)
    assert driver.poll() is None, "the build finished before it could be killed; make it longer"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    time.sleep(1)  # Ray stops the dead driver's tasks; a render it was writing may still land
    finished = {path: path.stat().st_mtime_ns for path in renders.glob("*/featurevis/*/channel.*")}
    done = len([path for path in finished if path.suffix == ".json"])
    assert 2 <= done < RENDERS

    again = cli(*build(store, photos, "--executor", "ray", "--ray-address", cluster), env=ray_env())
    assert f"feature visualization: {RENDERS - done} renders computed, {done} reused" in again.stdout
    assert all(path.stat().st_mtime_ns == when for path, when in finished.items())  # not written again
    assert snapshot(store) == reference


def test_ray_mistakes_are_one_line(tmp_path, cluster, photos):
    cases = [
        (["--executor", "ray", "--ray-address", f"127.0.0.1:{free_port()}"], ray_env(), "cannot reach the Ray cluster"),
        (["--executor", "ray", "--ray-address", cluster, "--gpus-per-job", "0.5"], ray_env(), "has no GPUs"),
        (["--gpus-per-job", "0.5"], None, "add --executor ray"),
    ]
    hidden = tmp_path / "no-ray" / "ray"  # a Python without Ray: its import fails as when it is missing
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    cases.append((["--executor", "ray"], {**os.environ, "PYTHONPATH": str(hidden.parent)}, "microscope[ray]"))
    for extra, env, expected in cases:
        result = cli(*build(tmp_path / "store", photos, *extra), code=2, env=env)
        assert expected in result.stderr
        assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


def planned_icon_slices(args: list) -> list[tuple]:
    """(level, first, last) of the icons jobs `build.py atlas ARGS` plans now: its options read by the real
    command's parser, its plan made by the atlas view on the store as it is."""
    from microscope.cli import main, renamed
    from microscope.run.pipeline import request_from
    from microscope.views.registry import VIEWS

    values = main.commands["atlas"].make_context("atlas", renamed([str(arg) for arg in args])).params
    request, session = request_from(values, ["atlas"])
    return [(job.spec["level"], job.spec["first"], job.spec["last"])
            for job in VIEWS["atlas"].plan(request, session).jobs if job.step == "icons"]


def test_ray_atlas_renders_the_local_atlas(tmp_path, cluster, photos):
    """The atlas's icons run as one Ray task per slice of cells; icons.json collects them. Before the layout
    exists the slices cover every cell of both grids (those past the last shown cell render nothing): 2 + 5
    slices of 32 cells (4 batches of 8) for the 6 x 6 and 12 x 12 grids. 750 vectors are more than min_count
    (5) times the 144 fine cells, so each level shows a cell whatever UMAP does: at least two slices render
    icons. The batch files are then exactly those the stored counts call for."""
    local, remote = tmp_path / "local", tmp_path / "ray"
    common = ["--model", "inceptionv1-caffe", "--weights", "random", "--layers", "inception_3a", "--images", photos,
              "--quiet"]
    cli("examples", *common, "--top-k", "3", "--atlas-vectors", "750", "--store", local)
    shutil.copytree(local, remote)
    atlas = [*common, "--grid", "6", "--icon-steps", "4", "--icon-size", "32", "--icon-batch-size", "8",
             "--umap-neighbours", "10", "--attribution-vectors", "3", "--atlas-patches", "2"]
    every_cell = [(level, first, first + 32) for level, side in (("coarse", 6), ("fine", 12))
                  for first in range(0, side * side, 32)]
    assert planned_icon_slices([*atlas, "--store", remote]) == every_cell  # what the Ray run below plans
    cli("atlas", *atlas, "--store", local, env={**os.environ, "OMP_NUM_THREADS": "1"})
    result = cli("atlas", *atlas, "--store", remote, "--executor", "ray", "--ray-address", cluster, env=ray_env())
    assert "atlas of inceptionv1-caffe" in result.stdout and "  failed:" not in result.stdout

    folder = Path("inceptionv1-caffe", "inception_3a", "atlas")
    with np.load(remote / folder / "layout.npz") as layout:
        counts = {level: layout[f"count_{level}"] for level in ("coarse", "fine")}
    stored = json.loads((remote / folder / "result.json").read_text())
    assert stored["n_vectors"] == 750 and stored["min_count"] == 5
    shown = {level: int((count > stored["min_count"]).sum()) for level, count in counts.items()}
    assert all(count.sum() == 750 for count in counts.values()) and all(shown.values())  # every level shows a cell
    batches = {f"icons/{level}-{first:05d}.npz" for level, n in shown.items() for first in range(0, n, 8)}
    for store in (local, remote):
        assert {str(p.relative_to(store / folder)) for p in (store / folder / "icons").iterdir()} == batches
        assert set(json.loads((store / folder / "icons.json").read_text())["files"]) == batches

    files = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(remote)) for p in remote.rglob("*") if p.is_file())
    for name in files:
        a, b = comparable(local / name), comparable(remote / name)
        if name.endswith("icons.json"):
            a.pop("files"), b.pop("files")  # stamps of the icon files, whose values differ in the last bits
        if "/atlas/icons/" in name:  # the pixels are the same; the objective's value within float rounding
            np.testing.assert_allclose(a.pop("value"), b.pop("value"), rtol=1e-4, atol=1e-4)
        if isinstance(a, dict) and name.endswith(".npz"):
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a), name
        else:
            assert a == b, name
