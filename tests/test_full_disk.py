"""A store, a site folder and publish's folders that run out of space, through the real command line.

A real tiny filesystem (a tmpfs mount; skipped where mounting is not allowed) and, without a mount, a disk
that fills up at the OS interface: tests/faults/nospace.c, preloaded, makes write(2) fail with ENOSPC once
the process has written a given number of bytes under the store (skipped without a C compiler). Either
way: the summary counts only what finished, the jobs left are said in one line naming the folder, the
space they need and that a rerun keeps what finished; with space freed the same command finishes,
reusing the finished jobs, and `verify` finds nothing damaged.
"""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from generated import REPO, blob_photos, cli, command, QUICK_CARICATURES
from site_fixtures import make_store

BUILD = ["build", *QUICK_CARICATURES, "--model", "inceptionv1-caffe", "--weights", "random", "--layers", "conv2", "--units", "0-1",
         "--steps", "4", "--size", "48", "--objectives", "channel", "--batch-size", "1", "--top-k", "3",
         "--atlas-vectors", "64", "--quiet"]
# This build's store peaks at 3.1 MB in the dataset pass (its state is written beside the checkpoint before)
# and holds 2.4 MB when done. On a 1.8 MB filesystem the pass finishes and the examples' patches do not fit,
# as in the issue: nothing of the views is complete, three jobs are. Writes of 2.9 MB (the preload below)
# let all but the last job finish, the expanded weights into inception_3a (1 MB).
TINY = "1800k"
WRITES = "2900000"
# The store's pieces as `build` counts them (renders, layers, layer pairs) and the records that mark each done.
PIECES = {"dataset examples": "*/*/examples/result.json", "feature visualization": "*/*/featurevis/*/channel.json",
          "circuit": "*/*/circuits/result.json"}
COUNT = re.compile(r"^  (dataset examples|feature visualization|circuit): (.*), (\d+) reused$", re.M)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return blob_photos(tmp_path_factory.mktemp("photos"), 6, seed=3, side=64)


@pytest.fixture
def tmpfs():
    """mount(folder, size) mounts a tmpfs there (skipping the test where that is not allowed), remount(folder,
    size) resizes it; all are unmounted after the test."""
    mounted = []

    def mount(folder: Path, size: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        if shutil.which("mount") is None or os.geteuid() != 0:
            pytest.skip("mounting a tiny tmpfs needs root (or CAP_SYS_ADMIN) and mount(8); the preload test covers it")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}); the preload test covers it")
        mounted.append(folder)
        return folder

    def remount(folder: Path, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True, capture_output=True)

    yield mount, remount
    for folder in reversed(mounted):
        subprocess.run(["umount", "--lazy", str(folder)], capture_output=True)


def counts(stdout: str) -> dict[str, dict[str, int]]:
    """view -> {"computed", "failed", "not run", "refused", "reused"} from a summary's lines."""
    found = {}
    for view, parts, reused in COUNT.findall(stdout):
        numbers = {"reused": int(reused)}
        for part in parts.split(", "):
            number, what = part.split(" ", 1)
            numbers[what.rsplit(" ", 1)[-1] if what.endswith(("computed", "failed", "refused")) else what] = int(number)
        found[view] = numbers
    return found


def stored(store: Path) -> dict[str, int]:
    """view -> the pieces the store holds complete (their records)."""
    return {view: len(list(store.glob(pattern))) for view, pattern in PIECES.items()}


def check_full_store(result, store: Path) -> int:
    """The run that found the store full: what its summary may say. Returns the bytes its line asks for."""
    summary = counts(result.stdout)
    assert set(summary) == set(PIECES), result.stdout
    done = stored(store)
    for view, numbers in summary.items():
        assert numbers["computed"] == done[view], (view, result.stdout)  # never "computed" for what is not there
    assert sum(numbers.get("failed", 0) + numbers.get("not run", 0) for numbers in summary.values()) >= 1
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "space" in line.lower()]
    assert len(lines) == 1, lines
    line = lines[0]
    assert f"no space left in the store {store}" in line and "it keeps the" in line and "run the same command" in line
    assert "  failed:" not in result.stdout and "not run, as a job" not in result.stdout
    assert result.stderr.strip() == "", result.stderr  # no line per job
    needed = re.search(r"need about ([\d.]+) MB", line)
    assert needed, line
    return int(float(needed.group(1)) * 1e6)


def check_rerun(first, again, store: Path, site: Path) -> None:
    """The same command with space freed: it finishes, reusing what the first run finished; nothing is damaged."""
    before, after = counts(first.stdout), counts(again.stdout)
    for view, numbers in after.items():
        assert numbers["reused"] == before[view]["computed"] + before[view]["reused"], (view, again.stdout)
        assert numbers["computed"] == before[view].get("failed", 0) + before[view].get("not run", 0), view
    assert "no space" not in again.stdout
    verified = cli("verify", "--store", store, "--out", site)
    assert ", 0 damaged; site" in verified.stdout and verified.stdout.rstrip().endswith("0 damaged")


def test_a_store_on_a_tiny_filesystem(tmp_path, tmpfs, photos):
    mount, remount = tmpfs
    disk = mount(tmp_path / "disk", TINY)
    store, site = disk / "store", tmp_path / "site"
    first = cli(*BUILD, "--images", photos, "--store", store, "--out", site, code=1)
    needed = check_full_store(first, store)
    assert counts(first.stdout) == {"dataset examples": {"computed": 0, "failed": 1, "reused": 0},
                                    "feature visualization": {"computed": 0, "not run": 2, "reused": 0},
                                    "circuit": {"computed": 0, "not run": 2, "reused": 0}}
    assert "it keeps the 3 jobs that finished" in first.stdout  # the images' index, the pass, the summary
    assert not site.exists()  # the pages come with the run that finishes the jobs
    used = shutil.disk_usage(disk).used
    remount(disk, f"{(used + needed) // 1024 + 64}k")  # exactly what the line asked for (and the site stays out)
    again = cli(*BUILD, "--images", photos, "--store", store, "--out", site)
    check_rerun(first, again, store, site)


@pytest.fixture(scope="module")
def preload(tmp_path_factory):
    """tests/faults/nospace.c built as a shared library (skips without a C compiler)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (cc) to build tests/faults/nospace.c")
    library = tmp_path_factory.mktemp("faults") / "nospace.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(REPO / "tests/faults/nospace.c"),
                    "-ldl"], check=True, capture_output=True)
    return library


def test_a_store_whose_disk_fills_up_without_a_mount(tmp_path, preload, photos):
    store, site = tmp_path / "store", tmp_path / "site"
    full = {**os.environ, "LD_PRELOAD": str(preload), "FULL_DISK_UNDER": str(store), "FULL_DISK_AFTER": WRITES}
    first = cli(*BUILD, "--images", photos, "--store", store, "--out", site, code=1, env=full)
    check_full_store(first, store)
    assert counts(first.stdout) == {"dataset examples": {"computed": 1, "reused": 0},
                                    "feature visualization": {"computed": 2, "reused": 0},
                                    "circuit": {"computed": 1, "failed": 1, "reused": 0}}
    again = cli(*BUILD, "--images", photos, "--store", store, "--out", site)  # the disk has room again
    check_rerun(first, again, store, site)


def test_a_disk_full_before_anything_finished_is_one_line_and_exit_code_2(tmp_path, preload, photos):
    store = tmp_path / "store"
    full = {**os.environ, "LD_PRELOAD": str(preload), "FULL_DISK_UNDER": str(store), "FULL_DISK_AFTER": "0"}
    result = cli(*BUILD, "--images", photos, "--store", store, "--out", tmp_path / "site", code=2, env=full)
    assert result.stdout == ""  # not even the plan: the catalogue it is made from could not be written
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: no space left in the store {store}")
    assert "make room there and run the same command again" in result.stderr


def test_a_site_folder_on_a_tiny_filesystem(tmp_path, tmpfs):
    mount, remount = tmpfs
    store = make_store(tmp_path / "store").root
    disk = mount(tmp_path / "disk", "256k")
    site = disk / "site"
    result = cli("site", "--store", store, "--out", site, "--quiet", code=2)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: no space left in the site folder {site}")
    assert "unit pages need about" in result.stderr and "writes only the pages that are missing" in result.stderr
    remount(disk, "64m")
    cli("site", "--store", store, "--out", site, "--quiet")
    assert cli("verify", "--store", store, "--out", site).stdout.rstrip().endswith("site " + str(site) + ": 0 damaged")


def test_publish_to_a_full_disk_is_one_line_and_commits_nothing(tmp_path, tmpfs):
    mount, _ = tmpfs
    site = tmp_path / "site"
    cli("site", "--store", make_store(tmp_path / "store").root, "--out", site, "--quiet")
    repo = mount(tmp_path / "disk", "256k") / "repo"
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                                               "--allow-empty", "-m", "init"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    cases = [("the git folder", f"{repo}/.git", {}),  # git's objects do not fit
             ("the temporary folder", str(repo.parent), {"TMPDIR": str(repo.parent)})]  # nor does the worktree
    for where, folder, env in cases:
        result = subprocess.run(command("publish", "--out", site), cwd=repo, capture_output=True, text=True,
                                env={**os.environ, **env})
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"error: no space left in {where} {folder}"), result.stderr
        assert "publishing needs about" in result.stderr and "nothing was committed" in result.stderr
        assert subprocess.run(["git", "rev-parse", "--verify", "--quiet", "gh-pages"], cwd=repo).returncode != 0
