"""`pip install .` (not editable) into a fresh virtual environment, then `microscope build` run from
another folder: the templates and static files must travel inside the wheel."""
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
from PIL import Image
from generated import QUICK_CARICATURES

REPO = Path(__file__).resolve().parents[1]


def test_installed_wheel_builds_a_site_from_another_folder(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(wheels), str(REPO)], check=True, capture_output=True)
    [wheel] = wheels.glob("microscope-*.whl")
    fresh = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(fresh)], check=True)
    python = fresh / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True)
    # torch and the other dependencies come from the test environment (installing a second torch would
    # take gigabytes): its site-packages go after the fresh one, and no checkout is on the path.
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run([str(python), "-c", "import microscope, sys; print(microscope.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip()
    assert where.startswith(purelib), where  # the installed copy, not this checkout

    work = tmp_path / "elsewhere"
    (work / "photos").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(
            work / "photos" / f"{i}.png")
    result = subprocess.run([str(fresh / "bin" / "microscope"), "build", *QUICK_CARICATURES, "--model", "inceptionv1-caffe",
                             "--weights", "random", "--layers", "conv1", "--units", "0-1", "--steps", "2",
                             "--size", "48", "--objectives", "channel", "--images", "photos", "--top-k", "2",
                             "--quiet", "--out", "site", "--store", "store"],
                            capture_output=True, text=True, cwd=work)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1].startswith("preview: ")
    site = work / "site"
    assert (site / "static" / "microscope.css").is_file() and not (site / "static" / "__init__.py").exists()
    page = (site / "models" / "inceptionv1-caffe" / "conv1" / "1" / "index.html").read_text()
    assert "Feature visualization" in page and "Dataset examples" in page and 'src="channel.webp"' in page


def test_every_package_of_the_source_is_in_the_wheel():
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(path.parent.relative_to(REPO).parts) for path in (REPO / "microscope").rglob("__init__.py")}
    assert found <= listed, f"add to pyproject.toml's packages: {sorted(found - listed)}"


def test_every_template_travels_in_the_wheel():
    """A template of a new kind (layer_tiles.js, views/sae_rows.js) is only in the wheel if package-data names it."""
    import fnmatch
    import tomllib

    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for package, folder in (("microscope.templates", REPO / "templates"),
                            ("microscope.templates.views", REPO / "templates" / "views")):
        for path in folder.iterdir():
            if path.is_file() and path.name != "__init__.py":
                assert any(fnmatch.fnmatch(path.name, pattern) for pattern in data[package]), \
                    f"{path.relative_to(REPO)} is not in pyproject.toml's package-data of {package}"
