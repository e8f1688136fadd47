"""What several test modules make the same way: small generated photos, the real command line run, and stored
files compared."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


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
    `code`, never a traceback."""
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
