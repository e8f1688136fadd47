"""What several test modules make the same way: small generated photos, the real command line run, and stored
files compared."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# `build` makes caricatures and DeepDreams of the photos: tests of other things keep them to a few small steps.
QUICK_CARICATURES = ("--caricature-steps", "2", "--deepdream-steps", "1", "--caricature-size", "32", "--photo-count", "2")


def blob_photos(root: Path, count: int, seed: int, side: int = 96) -> Path:
    """`count` photos of a coloured blob on noise: activations that differ from photo to photo."""
    rng = np.random.default_rng(seed)
    grid = np.mgrid[0:side, 0:side].transpose(1, 2, 0)
    for i in range(count):
        blob = np.exp(-((grid - rng.uniform(0, side, size=2)) ** 2).sum(-1) / rng.uniform(40, 400))
        image = blob[..., None] * rng.uniform(0, 255, size=3) + rng.uniform(0, 60, size=(side, side, 3))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / f"p{i:02d}.png")
    return root


def cli(*args, code: int = 0, env: dict | None = None) -> subprocess.CompletedProcess:
    """build.py with these arguments, in a process of its own (with `env`, if given); it must exit with
    `code`, never a traceback. A `build` leaves the Try page out unless the test asks for it (`--try-page`):
    its runtime and network would add some 60 MB to every site the suite builds (tests/test_try_page.py and
    tests/test_inbrowser_export.py build it)."""
    if args and args[0] == "build" and "--try-page" not in args:
        args = (*args, "--try-page", "off")
    result = subprocess.run(command(*args), capture_output=True, text=True, env=env)
    assert result.returncode == code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return result


def lock_holder(folder: Path, *lock_args) -> subprocess.Popen:
    """Another process holding `folder`'s write lock (microscope/store/lock.py) until killed; returned once
    it holds it. `lock_args`: what, name and option, as for a site folder."""
    holder = subprocess.Popen([sys.executable, "-c", "import time\nfrom microscope.store.lock import writing\n"
                               f"with writing({str(folder)!r}, *{list(lock_args)!r}):\n"
                               "    print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert holder.stdout.readline().strip() == "held"
    return holder


def command(*args) -> list[str]:
    """The command line of build.py with these arguments (for a process the test watches or kills)."""
    return [sys.executable, str(REPO / "build.py"), *map(str, args)]


def comparable(path: Path):
    """A stored file as tests compare two stores: JSON without timings, arrays by name, other files' bytes."""
    if path.suffix == ".json":
        def strip(value):
            if isinstance(value, dict):
                return {key: strip(item) for key, item in value.items() if key != "seconds"}
            return [strip(item) for item in value] if isinstance(value, list) else value
        return strip(json.loads(path.read_text()))
    if path.suffix == ".npz":
        with np.load(path) as arrays:
            return {name: arrays[name] for name in arrays.files}
    return path.read_bytes()


# How two stores of one build made with different thread counts may differ (README, "When two results are
# equal"): float values of the dataset examples and circuits in their last bits (measured: not at all here),
# feature visualizations as another path of the optimisation to the same picture (measured on 2 threads
# against 1: objectives within 0.1 %, mean pixel differences up to 12 of 255).
VALUE_RTOL = 1e-5  # float32 and float64 arrays and record values; float16 ones: their own rounding
RENDER_RTOL = 0.01  # a render's objective and loss curve
RENDER_STATS_RTOL = 0.1  # the activations of its saved image (its max moves with a few pixels)
RENDER_PIXELS = 16  # mean absolute difference of a render's pixels, of 255
STAMPS = {"sha256", "size"}  # what a record says of a file's bytes, which may differ where its values do


def assert_agree(a_root: Path, b_root: Path) -> None:
    """The two stores hold the same files; every integer array (indices, positions, selections) is identical
    except histogram counts, which may differ by one per bin with the same totals; float values agree within
    VALUE_RTOL; renders as RENDER_* say; every other file is the same bytes."""
    files = sorted(str(p.relative_to(a_root)) for p in a_root.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(b_root)) for p in b_root.rglob("*") if p.is_file())
    for name in files:
        a, b = comparable(a_root / name), comparable(b_root / name)
        if name.endswith(".npz"):
            assert a.keys() == b.keys(), name
            for key in a:
                arrays_agree(a[key], b[key], f"{name} {key}")
        elif name.endswith("/inbrowser/record.json"):  # the ONNX file's measured error (about 1e-6 to 1e-3 of
            # each output's largest value) is a difference of torch's sums, which another thread count rounds otherwise
            errors = a.pop("max_error"), b.pop("max_error")
            assert errors[0].keys() == errors[1].keys(), name
            assert all(abs(errors[0][key] - errors[1][key]) <= 1e-5 for key in errors[0]), (name, errors)
            values_agree(a, b, name, VALUE_RTOL, VALUE_RTOL)
        elif name.endswith(".json"):
            render = "/featurevis/" in name
            values_agree(a, b, name, RENDER_RTOL if render else VALUE_RTOL, RENDER_STATS_RTOL if render else VALUE_RTOL)
        elif "/featurevis/" in name and a != b:  # a render's image
            with Image.open(a_root / name) as first, Image.open(b_root / name) as second:
                difference = np.abs(np.asarray(first, np.int16) - np.asarray(second, np.int16))
            assert difference.mean() <= RENDER_PIXELS, (name, difference.mean())
        else:
            assert a == b, name


def arrays_agree(a: np.ndarray, b: np.ndarray, what: str) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype, what
    if a.dtype.kind == "f":
        tolerance = max(VALUE_RTOL, 2 * float(np.finfo(a.dtype).eps))
        scale = float(np.nanmax(np.abs(a))) if a.size and not np.isnan(a).all() else 0.0
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance * scale, err_msg=what)
    elif what.endswith("hist_counts"):  # a value at a bin's edge may fall on either side
        assert np.abs(a - b).max(initial=0) <= 1 and np.array_equal(a.sum(-1), b.sum(-1)), what
    else:
        assert np.array_equal(a, b), what


def values_agree(a, b, where: str, rtol: float, stats_rtol: float) -> None:
    """JSON values: the same structure and text, numbers within `rtol` (a render's image activations within
    `stats_rtol`), stamps of files left out."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a.keys() - STAMPS:
            values_agree(a[key], b[key], f"{where}/{key}", rtol, stats_rtol)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            values_agree(x, y, f"{where}[{i}]", rtol, stats_rtol)
    elif isinstance(a, float) and not isinstance(a, bool):
        tolerance = stats_rtol if where.rsplit("/", 1)[-1].startswith("activation_") else rtol
        assert b == pytest.approx(a, rel=tolerance, abs=tolerance), where
    else:
        assert a == b, where
