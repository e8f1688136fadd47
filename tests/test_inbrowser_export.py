"""The network exported to ONNX for the "Try an image" page (issue 30): onnxruntime's outputs on the normalised
image equal the network's own on the photo (float32 file within 1e-5 of each output's largest value, the float16
file within half.TOLERANCE, the same top 5), an SAE's TopK code included; on the real weights too; the float16 file
is half the float32 one; the record round-trips, is checked when read and a damaged file is exported again; the
key follows the layers; a network the exporter refuses leaves the page out in one line and the build goes on."""
import json
import textwrap
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch

from generated import QUICK_CARICATURES, blob_photos, cli
from microscope.data.images import Framing, load_rgb
from microscope.inbrowser.export import LOGITS, NotExportable, export_onnx
from microscope.inbrowser.half import CODE_CHANGES, TOLERANCE, compare, run_onnx, to_float16, top_units
from microscope.inbrowser.stored import read_exported
from microscope.models import LayerSpec
from microscope.network.loaded import load_network
from microscope.sae.layer import SaeEncoder
from microscope.store import ExportedModel, Store
from microscope.store.typed import RecordError
from test_custom_model import your_own_model

F32_TOLERANCE = 1e-5  # the same float32 sums in another order


def photos_of(network, folder, count=None) -> tuple[torch.Tensor, np.ndarray]:
    """(the photos as RGB in [0, 1] framed as the model's evaluation view, the same normalised as the page does)."""
    pre = network.spec.preprocessing
    files = sorted(folder.iterdir())[:count]
    rgb = torch.stack([Framing(pre.resize, pre.crop).tensor(load_rgb(path)).float() / 255 for path in files])
    return rgb, pre(rgb).numpy()


def relative_errors(found, expected) -> list[float]:
    """Per output: max |found - expected| / max |expected|, over every image."""
    return [max(float(np.abs(got[i] - want[i]).max() / np.abs(want[i]).max()) for got, want in zip(found, expected))
            for i in range(len(expected[0]))]


def torch_outputs(network, rgb, names) -> list[list[np.ndarray]]:
    """The network's own activations of each photo (its preprocessing included): what the site's pages show."""
    with torch.no_grad():
        found = network.activations(rgb, names)
    return [[found[name][i:i + 1].numpy() for name in names] for i in range(len(rgb))]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The README's own model (two conv layers and a head) with seeded weights, and 6 photos."""
    folder = tmp_path_factory.mktemp("tiny")
    model_file, state = your_own_model(folder, seed=5)
    torch.save(state, folder / "tiny.pth")
    (folder / "photos").mkdir()
    blob_photos(folder / "photos", 6, seed=3)
    return SimpleNamespace(model=f"{model_file}:tiny", weights=folder / "tiny.pth", photos=folder / "photos")


def random_sae(network, layer: str, features: int, k: int) -> str:
    """A TopK SAE with seeded random weights derived as `<layer>_sae`, as sae/layer.py attaches a trained one."""
    channels = network.activations(torch.zeros(1, 3, 64, 64), [layer])[layer].shape[1]
    rng = np.random.default_rng(0)
    weights = SimpleNamespace(W_enc=rng.normal(size=(features, channels)).astype(np.float32),
                              b_enc=rng.normal(size=features).astype(np.float32) * 0.1,
                              b_pre=np.zeros(channels, np.float32))
    name = f"{layer}_sae"
    network.derive(LayerSpec(name, (), "sae", relu_of_twin=False), layer, SaeEncoder(weights, 1.0, k, False, 1), key="s")
    return name


def test_onnx_outputs_are_the_networks_on_the_normalised_image(tiny):
    network = load_network(tiny.model, weights=str(tiny.weights))
    code = random_sae(network, "features_4", features=48, k=4)
    layers = ["features_1", "features_4", code]
    exported = export_onnx(network, layers)
    assert [(o.name, o.kind, o.channels, o.height, o.width) for o in exported.outputs] == [
        ("features_1", "conv", 16, 32, 32), ("features_4", "conv", 32, 16, 16), (code, "sae", 48, 16, 16),
        ("logits", "logits", 10, 1, 1)]
    model = onnx.load_from_string(exported.onnx)
    assert [i.name for i in model.graph.input] == ["image"] and model.opset_import[0].version == 17
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 64, 64]
    rgb, normalised = photos_of(network, tiny.photos)
    expected = torch_outputs(network, rgb, [*layers, "logits"])
    found = run_onnx(exported.onnx, "image", normalised)
    assert max(relative_errors(found, expected)) <= F32_TOLERANCE
    for got, want in zip(found, expected):  # the code: the same k features at every inner position, zero elsewhere
        assert np.array_equal(got[2] != 0, want[2] != 0) and ((got[2] != 0).sum(1) <= 4).all()
        assert (want[2][..., 0, :] == 0).all() and (want[2][..., 1:-1, 1:-1] != 0).sum(1).max() == 4
    half = to_float16(exported.onnx)
    stored = onnx.load_from_string(half).graph.initializer
    assert {t.data_type for t in stored if np.prod(t.dims) >= 256} == {onnx.TensorProto.FLOAT16}
    halved = sum(int(np.prod(t.dims)) for t in stored if t.data_type == onnx.TensorProto.FLOAT16)
    assert halved > 7000  # every weight but the biases; each value's 2 bytes saved, less a Cast node per tensor
    assert 2 * halved - 1000 < len(exported.onnx) - len(half) <= 2 * halved
    assert max(value.nbytes for value in constants(exported.onnx)) < 4096  # no folded tensor of zeros
    halved = compare(half, "image", [(o.name, o.kind) for o in exported.outputs], normalised, expected)
    assert max(halved.max_error.values()) <= TOLERANCE and halved.agrees()
    assert set(halved.changed) == {code} and halved.changed[code] <= CODE_CHANGES  # (measured: 0.09 %)
    # the float16 file computes in float32: its outputs are float32, and it is not exact (its weights were rounded)
    assert all(value.dtype == np.float32 for value in run_onnx(half, "image", normalised[:1])[0])
    assert max(halved.max_error.values()) > F32_TOLERANCE


def constants(model_bytes: bytes) -> list[np.ndarray]:
    """Every constant tensor of a model: its Constant nodes' values."""
    model = onnx.load_from_string(model_bytes)
    return [onnx.numpy_helper.to_array(a.t) for n in model.graph.node if n.op_type == "Constant"
            for a in n.attribute if a.name == "value"]


def test_the_top_units_rule():
    a = np.zeros((1, 8, 2, 2))
    a[0, [3, 1, 6], 0, 1] = [5.0, 4.0, 3.0]
    assert top_units(a) == {3, 1, 6}  # silent units tie at zero: left out
    assert top_units(np.arange(10.0)[None]) == {9, 8, 7, 6, 5}


def test_real_weights_inception_4c_and_logits(shared_dir):
    weights = shared_dir / "weights" / "bvlc_googlenet.npz"
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    network = load_network("inceptionv1-caffe", weights=str(weights))
    folder = shared_dir / "data" / "imagenet-sample"
    photos = [path for i, path in enumerate(sorted(folder.iterdir())) if i in (1, 207, 430, 812)]
    pre = network.spec.preprocessing
    rgb = torch.stack([Framing(pre.resize, pre.crop).tensor(load_rgb(path)).float() / 255 for path in photos])
    exported = export_onnx(network, ["inception_4c"])
    expected = torch_outputs(network, rgb, ["inception_4c", "logits"])
    normalised = pre(rgb).numpy()
    found = run_onnx(exported.onnx, "image", normalised)
    assert max(relative_errors(found, expected)) <= F32_TOLERANCE
    half = to_float16(exported.onnx)
    assert 0.49 < len(half) / len(exported.onnx) < 0.52  # 7 M weights: the file is their bytes
    halved = compare(half, "image", [("inception_4c", "block"), ("logits", "logits")], normalised, expected)
    assert halved.agrees() and max(halved.max_error.values()) <= TOLERANCE
    for got, want, path in zip(run_onnx(half, "image", normalised), expected, photos):
        assert list(np.argsort(-got[1][0])[:5]) == list(np.argsort(-want[1][0])[:5])  # the same top 5, in order
        assert int(np.argmax(got[1][0])) == sorted(folder.iterdir()).index(path)  # and the photo's own class first


def export_cli(tiny, store, *extra, code=0):
    return cli("export-onnx", "--model", tiny.model, "--weights", tiny.weights, "--images", tiny.photos,
               "--store", store, "--quiet", *extra, code=code)


def test_the_view_stores_reuses_and_re_exports(tiny, tmp_path):
    store = Store(tmp_path / "store")
    first = export_cli(tiny, store.root)
    assert "try an image: 1 models computed, 0 reused" in first.stdout
    model = next(name for name in store.models())
    record, onnx_file = read_exported(store, model)
    assert [o.name for o in record.outputs] == ["features_1", "features_4", LOGITS]
    assert record.weights_dtype == "float16" and record.check_photos == 4 and record.opset == 17
    assert record.onnx_bytes == onnx_file.stat().st_size and set(record.max_error) == {"features_1", "features_4", "logits"}
    assert max(record.max_error.values()) <= record.tolerance == TOLERANCE
    assert (record.input_name, record.input_size, record.preprocessing.mean, record.preprocessing.std) == \
        ("image", 64, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    raw = json.loads(store.inbrowser_record_file(model).read_text())
    assert ExportedModel.from_json(raw) == record  # the record round-trips
    bad = {**raw, "outputs": raw["outputs"][::-1]}
    with pytest.raises(RecordError, match="logits last"):
        ExportedModel.from_json(bad)
    assert (store.inbrowser_record_file(model), ExportedModel) in store.record_files()  # what verify checks

    network = load_network(tiny.model, weights=str(tiny.weights))
    rgb, normalised = photos_of(network, tiny.photos, 2)  # the stored file, run as the page runs it
    found = run_onnx(onnx_file.read_bytes(), record.input_name, normalised)
    assert max(relative_errors(found, torch_outputs(network, rgb, ["features_1", "features_4", "logits"]))) <= TOLERANCE

    assert "0 models computed, 1 reused" in export_cli(tiny, store.root).stdout
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a damaged download: never published, said once, exported again
    onnx_file.write_bytes(bytes(data))
    assert read_exported(Store(store.root), model) is None
    again = export_cli(tiny, store.root)
    assert "1 models computed" in again.stdout and "model.onnx is damaged" in again.stderr
    assert read_exported(store, model)[0] == record

    fewer = export_cli(tiny, store.root, "--layers", "features_1")  # another layer set: another key, another file
    smaller = read_exported(store, model)[0]
    assert "1 models computed" in fewer.stdout and smaller.key != record.key
    assert [o.name for o in smaller.outputs] == ["features_1", LOGITS]
    export_cli(tiny, store.root, "--layers", "features_1", "--try-page", "float32")
    exact = read_exported(store, model)[0]
    assert exact.key not in (record.key, smaller.key) and exact.weights_dtype == "float32"
    assert exact.onnx_bytes > 1.6 * smaller.onnx_bytes and max(exact.max_error.values()) <= F32_TOLERANCE
    off = export_cli(tiny, store.root, "--layers", "features_1", "--try-page", "off")  # no page: no export left
    assert "try an image: off, its stored export removed" in off.stdout
    assert read_exported(store, model) is None and not store.inbrowser_onnx_file(model).exists()


ODD_MODELS = textwrap.dedent('''
    import torch
    from torch import nn


    class RunningMax(nn.Module):
        """The running maximum along each row: an operator ONNX has no word for."""

        def forward(self, x):
            return torch.cummax(x, dim=3).values


    def cummax():
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), RunningMax(), nn.Conv2d(8, 8, 3, padding=1),
                             nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)), \\
            {"preprocessing": {"resize": 40, "crop": 32}}


    def pooled():
        """A head pooled to 3x3 from 32x32: a grid ONNX's pools cannot cut (3 does not divide 32)."""
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                             nn.AdaptiveMaxPool2d(3), nn.Flatten(), nn.Linear(72, 4)), \\
            {"preprocessing": {"resize": 40, "crop": 32}}
''')


def test_an_unexportable_model_leaves_the_page_out_in_one_line(tmp_path, capfd):
    (tmp_path / "odd.py").write_text(ODD_MODELS)
    network = load_network(f"{tmp_path / 'odd.py'}:cummax", weights="random")
    with pytest.raises(NotExportable, match=r"^ONNX export \(opset 17\) does not support aten::cummax$"):
        export_onnx(network, [layer.name for layer in network.spec.layers if layer.kind == "conv"])
    assert capfd.readouterr().out == ""  # the exporter's dump of its graph is not shown

    (tmp_path / "photos").mkdir()
    photos = blob_photos(tmp_path / "photos", 4, seed=4, side=48)
    store, model = Store(tmp_path / "store"), "odd-pooled"
    result = cli("build", *QUICK_CARICATURES, "--try-page", "auto", "--model", f"{tmp_path / 'odd.py'}:pooled", "--weights", "random",
                 "--units", "0-1", "--steps", "2", "--size", "32", "--objectives", "channel", "--top-k", "2",
                 "--images", photos, "--store", store.root, "--out", tmp_path / "site", "--quiet")
    line = (f"the Try-an-image page of {model} is left out: ONNX export (opset 17) does not support "
            "adaptive_max_pool2d (output size that are not factor of input size)")
    assert result.stderr.count(line) == 1 and f"note: {line}" in result.stdout, (result.stdout, result.stderr)
    assert "failed" not in result.stdout and "Torch IR" not in result.stdout + result.stderr
    assert not store.inbrowser_dir(model).exists()
    assert all(store.examples_result_file(model, layer).is_file() for layer in ("1", "3"))  # the rest is built
    assert (tmp_path / "site" / "models" / model / "3" / "0" / "index.html").is_file()
    assert not (tmp_path / "site" / "models" / model / "try.html").exists()  # no page, no link, no runtime
    assert "try.html" not in (tmp_path / "site" / "models" / model / "index.html").read_text()
    assert not (tmp_path / "site" / "static" / "ort").exists()
