"""The notebook API reads what the site reads: the same numbers, the same pixels, no torch."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import microscope
from microscope.errors import UsageError
from microscope.store import load_npz
from site_fixtures import (ACTIVATION_MAX, FILES, TOP_K, layer_entry, make_store, patch_colour, render_colour,
                           write_atlas, write_sae)

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("store"))


def test_models_layers_and_units(store):
    reader = microscope.open_store(store.root)
    assert reader.models == ["tiny"]
    model = reader.model("tiny")
    assert model.layers == ["conv1", "mixed_a", 'a<b"c']
    conv = model.layer("conv1")
    assert conv.units == [0, 1, 2, 3] and set(conv.data) == {"featurevis", "examples", "circuits"}
    assert model.layer("mixed_a").summary is None


def test_examples_as_arrays_and_patches_as_images(store):
    summary = load_npz(store.examples_summary_file("tiny", "conv1"))
    files = microscope.open_store(store.root).model("tiny").layer("conv1").data["examples"].dataset.files
    for unit in range(4):
        u = microscope.open_store(store.root).model("tiny").layer("conv1").unit(unit)
        valid = summary["top_index"][unit] >= 0
        assert [e.value for e in u.top] == pytest.approx(summary["top_values"][unit][valid].tolist())
        assert [e.image for e in u.top] == [files[i] for i in summary["top_index"][unit][valid]]
        assert [(e.y, e.x) for e in u.top] == list(zip(summary["top_y"][unit][valid], summary["top_x"][unit][valid]))
        patches = u.patches("top")
        assert len(patches) == valid.sum() <= TOP_K
        for rank, patch in enumerate(patches):
            assert np.abs(np.asarray(patch)[12, 12].astype(int) - patch_colour(unit, 0, rank)).max() <= 2
        counts, edges = u.histogram
        assert np.array_equal(counts, summary["hist_counts"][unit]) and edges.shape == (counts.size + 1,)
        assert u.stats["max"] == pytest.approx(float(summary["top_values"][unit, 0]))


def test_renders_and_their_records(store):
    unit = microscope.open_store(store.root).model("tiny").layer("mixed_a").unit(3)
    assert set(unit.records) == {"channel", "neuron", "negative", "diversity"}
    assert unit.records["channel"].images[0].activation_max == ACTIVATION_MAX
    picture = unit.render("diversity", image=1)
    assert picture.size == (40, 40) and picture.getpixel((5, 5)) == render_colour(2, 3, FILES.index("diversity-1.png"))
    with pytest.raises(UsageError, match="no sparkle render of unit 3"):
        unit.render("sparkle")
    with pytest.raises(UsageError, match="units 0-4"):
        microscope.open_store(store.root).model("tiny").layer("mixed_a").unit(5)


def test_bad_paths_are_one_line(tmp_path):
    with pytest.raises(UsageError, match="no artifact store"):
        microscope.open_store(tmp_path / "nothing")
    empty = microscope.open_store(tmp_path)
    with pytest.raises(UsageError, match="model 'x' is not in the store"):
        empty.model("x")


def test_reading_does_not_import_torch(store):
    code = (f"import sys, microscope; u = microscope.open_store({str(store.root)!r}).model('tiny').layer('conv1').unit(1);"
            "u.render(); u.patches(); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


# ------------------------------------------------------------------------------------------------
# The README's notebook example, run as written against a store with the layers it names


def readme_example() -> str:
    """The README's one Python block that opens a store."""
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.DOTALL | re.MULTILINE)
    found = [block for block in blocks if "open_store(" in block]
    assert len(found) == 1, f"expected one python block calling open_store in README.md, found {len(found)}"
    return found[0]


def run_as_a_notebook(code: str, namespace: dict) -> list:
    """Run the code statement by statement, as notebook cells; the values its expression lines show, in order."""
    shown = []
    for statement in ast.parse(code, "README.md").body:
        if isinstance(statement, ast.Expr):
            shown.append(eval(compile(ast.Expression(statement.value), "README.md", "eval"), namespace))
        else:
            exec(compile(ast.Module([statement], type_ignores=[]), "README.md", "exec"), namespace)
    return shown


README_LAYERS = [layer_entry("inception_3b", "block", 8, 4, 8, 27), layer_entry("inception_3b_sae", "sae", 16, 4, 8, 27),
                 layer_entry("inception_4a", "block", 100, 4, 8, 43), layer_entry("inception_4c", "block", 6, 2, 16, 59)]


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch):
    store = make_store(tmp_path / "artifacts", model="inceptionv1-caffe", layers=README_LAYERS, circuits=(),
                       featurevis_layers=("inception_4a",), featurevis_units=[97], examples_layers=("inception_4a",))
    sae = write_sae(store, "inceptionv1-caffe", README_LAYERS[0], features=16, fvu=0.25)
    atlas = write_atlas(store, "inceptionv1-caffe", README_LAYERS[3])
    monkeypatch.chdir(tmp_path)  # the example opens "artifacts"

    render, top, patches, (stats, histogram), top_values, (fvu, decoder), (units, icons, xy) = \
        run_as_a_notebook(readme_example(), {})

    summary = load_npz(store.examples_summary_file("inceptionv1-caffe", "inception_4a"))
    assert render.getpixel((5, 5)) == render_colour(2, 97, FILES.index("channel.png"))
    assert [e.value for e in top] == pytest.approx(summary["top_values"][97][:5].tolist())
    assert len(patches) == 6 and all(np.abs(np.asarray(patch)[12, 12].astype(int) - patch_colour(97, 0, rank)).max() <= 2
                                     for rank, patch in enumerate(patches))
    assert stats["max"] == pytest.approx(float(summary["top_values"][97, 0]))
    assert np.array_equal(histogram[0], summary["hist_counts"][97]) and top_values.shape == (100, TOP_K)
    assert fvu == 0.25 and np.array_equal(decoder, sae.W_dec)
    assert np.array_equal(units, atlas["cells"]["coarse"].units) and np.array_equal(icons, atlas["icons"]["fine"])
    assert np.array_equal(xy, atlas["layout"].xy)
