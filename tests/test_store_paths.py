"""The store owns every path: no store file is named outside microscope/store/, the names are the ones
stores on disk already have, and no model, layer or other name leads a Store path outside its root."""
import ast
import inspect
import re
from pathlib import Path

import pytest

from microscope.store import Store

PACKAGE = Path(__file__).resolve().parents[1] / "microscope"
EXTENSIONS = ("json", "npz", "npy", "bin", "jpg", "png", "webp")
# A file name is something, then an extension. A string starting with "." is a suffix (a check of what
# kind a file is, e.g. ".npz"), not a name. In an f-string each field reads "{}": f"{stem}.train.npy".
FILE_NAME = re.compile(r"[^.\s][^\s]*\.(?:%s)" % "|".join(EXTENSIONS))

# Modules that write the site, not the store: the names they spell are the site's pages, images and
# downloads. The site package as a whole writes the site and reads the store through Store.
SITE_PACKAGE = "microscope/site/"
SITE_FILES = {
    "microscope/atlas/page.py": {"preview.webp", "atlas/preview.webp", "icons-{}.webp", "atlas/icons-{}.webp",
                                 "icons-coarse.webp", "patches/{}-{}.webp", "atlas/patches/{}-{}.webp"},
    "microscope/caricature/panel.py": {"{}/{}-{}.webp"},  # a layer's photo, caricature or DeepDream
    "microscope/circuits/panel.py": {"circuit.png", "weights.npz"},  # a unit's strip; the layer's download
    "microscope/examples/panel.py": {"{}.webp"},  # a strip of patches
    "microscope/featurevis/panel.py": {"{}.webp"},  # a render as the site shows it
    "microscope/names.py": {"model.json", "layer.json", "unit.json"},  # the site's names no layer folder may take
    "microscope/web/images.py": {"unit.json", "{}/.assets.json", "{}/{}.jpg"},  # a page budget; a site photo
}


def spelled_names(tree: ast.AST):
    """(line, text) of every string constant and f-string in the tree, an f-string's fields as "{}"."""
    parts_of_fstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts_of_fstrings.update(id(part) for part in node.values)
            yield node.lineno, "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in parts_of_fstrings:
            yield node.lineno, node.value


def test_no_store_file_is_named_outside_the_store():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE.parent).as_posix()
        if module.startswith(("microscope/store/", SITE_PACKAGE)):
            continue
        allowed = SITE_FILES.get(module, set())
        found += [f"{module}:{line}: {text!r}" for line, text in spelled_names(ast.parse(path.read_text()))
                  if FILE_NAME.fullmatch(text) and text not in allowed]
    assert not found, "store paths belong to microscope/store/store.py (a Store method):\n" + "\n".join(found)


def test_the_scan_sees_names_in_strings_and_f_strings():
    source = 'a = folder / "result.json"\nb = folder / f"{stem}.train.npy"\nc = name.endswith(".idx.npz")\n'
    names = [text for _, text in spelled_names(ast.parse(source)) if FILE_NAME.fullmatch(text)]
    assert sorted(names) == ["result.json", "{}.train.npy"]


def test_the_layout_is_the_one_stores_already_have(tmp_path):
    store, vectors = Store(tmp_path), Path("v")
    patches = store.patches_dir("m", "L")
    expected = {
        store.thumbs_dir("m", "f"): "m/datasets/f/thumbs",
        store.thumb_file("m", "f", 7): "m/datasets/f/thumbs/7.jpg",
        Store.patch_index_file(patches, 3): "m/L/examples/patches/000003.idx.npz",
        Store.patch_pack_file(Store.patch_index_file(patches, 3)): "m/L/examples/patches/000003.bin",
        store.render_file("m", "L", 5, "neuron"): "m/L/featurevis/5/neuron.json",
        store.circuit_weights_file("m", "L"): "m/L/circuits/weights.npz",
        store.circuit_result_file("m", "L"): "m/L/circuits/result.json",
        store.circuit_refusal_file("m", "L"): "m/L/circuits/refused.json",
        store.atlas_layout_file("m", "L"): "m/L/atlas/layout.npz",
        store.atlas_result_file("m", "L"): "m/L/atlas/result.json",
        store.atlas_cells_file("m", "L", "fine"): "m/L/atlas/cells_fine.npz",
        store.atlas_patch_index_file("m", "L"): "m/L/atlas/patches/000000.idx.npz",
        store.atlas_icons_file("m", "L", "coarse", 16): "m/L/atlas/icons/coarse-00016.npz",
        store.atlas_stage_file("m", "L", "cells"): "m/L/atlas/cells.json",
        store.atlas_stage_file("m", "L", "icons"): "m/L/atlas/icons.json",
        store.sae_checkpoint_file("m", "L", "0123456789abcdef99"): "m/L/sae/0123456789abcdef/checkpoint.npz",
        store.sae_weights_file("m", "L", "0123456789abcdef99"): "m/L/sae/0123456789abcdef/weights.npz",
        store.sae_result_file("m", "L", "0123456789abcdef99"): "m/L/sae/0123456789abcdef/result.json",
        store.sae_vectors_dir("m", "L", "0123456789abcdef99", "fedcba9876543210ff"):
            "m/L/sae/0123456789abcdef/vectors/fedcba9876543210",
    }
    assert [path.relative_to(tmp_path).as_posix() for path in expected] == list(expected.values())
    assert Store.sae_vectors_file(vectors) == vectors / "vectors.json"
    assert Store.vector_shard_file(vectors, 0, 256, "held") == vectors / "000000000-000000256.held.npy"
    assert Store.patch_pack_file(vectors / "000003.idx.npz") == vectors / "000003.bin"


def test_the_store_finds_the_files_it_names(tmp_path):
    store = Store(tmp_path)
    assert [Store.patch_index_chunk(name) for name in ("000003.idx.npz", "1234567.idx.npz", "000003.bin", "x.idx.npz",
                                                       ".000003.idx.npz.abc.tmp", "sub/000003.idx.npz")] == \
        [3, 1234567, None, None, None, None]
    assert [Store.patch_pack_chunk(name) for name in ("000003.bin", "000003.idx.npz", "x.bin")] == [3, None, None]

    assert not store.has_thumbs("m", "f")
    thumb = store.thumb_file("m", "f", 7)
    thumb.parent.mkdir(parents=True)
    thumb.write_bytes(b"jpeg")
    assert store.has_thumbs("m", "f")

    for unit, objective in [(12, "neuron"), (2, "neuron"), (2, "channel")]:
        record = store.render_file("m", "L", unit, objective)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text("{}")
    (store.featurevis_dir("m", "L") / "notes").mkdir()
    (store.featurevis_dir("m", "L") / "notes" / "x.json").write_text("{}")
    assert store.render_files("m", "L") == [(12, store.render_file("m", "L", 12, "neuron")),  # in path order
                                            (2, store.render_file("m", "L", 2, "channel")),
                                            (2, store.render_file("m", "L", 2, "neuron"))]
    assert store.render_files("m", "other") == []


HOSTILE = ["..", "../..", "../../etc/passwd", "/etc", "a/../../b", "", ".", "~", "..\\..\\x", "C:\\x", "a\x00b",
           " ", "x" * 300, "model.json", "-", "%2e%2e"]
INTEGERS = {"index": 7, "unit": 3, "first": 0, "last": 9, "chunk": 2}


def path_methods() -> list[str]:
    return sorted(name for name, _ in inspect.getmembers(Store, inspect.isfunction)
                  if not name.startswith("_") and name.endswith(("_dir", "_file")))


def arguments(store: Store, method, hostile: str) -> dict:
    """Every argument the path method takes: the hostile name for each name, a folder from a hostile path."""
    values = {"stage": "cells", **INTEGERS,
              "vectors_dir": store.sae_vectors_dir(hostile, hostile, hostile, hostile),
              "patches_dir": store.patches_dir(hostile, hostile),
              "index_file": store.atlas_patch_index_file(hostile, hostile)}
    return {name: values.get(name, hostile) for name in inspect.signature(method).parameters}


@pytest.mark.parametrize("hostile", HOSTILE)
def test_every_path_stays_inside_the_root(tmp_path, hostile):
    root = tmp_path / "store"
    store = Store(root)
    assert len(path_methods()) > 30
    for name in path_methods():
        method = getattr(store, name)
        path = method(**arguments(store, method, hostile))
        assert root.resolve() in path.resolve().parents, (name, hostile, path)
        assert not {"..", "."} & set(path.relative_to(root).parts), (name, hostile, path)


def test_an_atlas_has_no_other_stage_records(tmp_path):
    with pytest.raises(ValueError):
        Store(tmp_path).atlas_stage_file("m", "L", "../result")
