"""Circuits: expanded weights exact in closed form, equal to an independent brute force on the real
weights, ranked exactly, planned and resumed like every view, and refused for what cannot be linearised."""
from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from microscope.circuits.expanded import expanded_weights
from microscope.circuits.ranking import ranked
from microscope.circuits.linear import linearise
from microscope.errors import UsageError
from microscope.run.executors import LocalExecutor
from microscope.models.spec import LayerSpec, ModelSpec, Preprocessing
from microscope.network.loaded import Network, load_network
from microscope.run.pipeline import run_views
from microscope.site.layer_pages import TILES_PER_PIECE, page_name
from microscope.store import CircuitArrays, CircuitResult, Store
from microscope.views.circuits import CircuitSettings

C0, C1, C2 = 3, 4, 5


class Tiny(nn.Module):
    """conv p (the previous layer) -> ReLU -> 1x1 conv r -> ReLU [-> max pool 2/2] -> 3x3 conv l (the layer)."""

    def __init__(self, pool: bool, middle: nn.Module | None = None):
        super().__init__()
        self.p = nn.Conv2d(3, C0, 3, padding=1)
        self.p_relu = nn.ReLU()
        self.r = nn.Conv2d(C0, C1, 1)
        self.r_relu = middle or nn.ReLU()
        self.pool = nn.MaxPool2d(2, 2) if pool else nn.Identity()
        self.l = nn.Conv2d(C1, C2, 3, padding=1)
        self.l_relu = nn.ReLU()
        generator = torch.Generator().manual_seed(0)
        for conv in (self.p, self.r, self.l):  # small integers: every product and sum exact in float64
            conv.weight.data = torch.randint(-3, 4, conv.weight.shape, generator=generator).double()
            conv.bias.data = torch.randint(-3, 4, conv.bias.shape, generator=generator).double()

    def forward(self, x):
        x = self.p_relu(self.p(x))
        return self.l_relu(self.l(self.pool(self.r_relu(self.r(x)))))


def tiny_network(pool: bool, middle: nn.Module | None = None) -> Network:
    layers = (LayerSpec("p", ("p_relu",), "conv", "p_pre_relu"), LayerSpec("p_pre_relu", ("p",), "pre_relu"),
              LayerSpec("l", ("l_relu",), "conv", "l_pre_relu"), LayerSpec("l_pre_relu", ("l",), "pre_relu"))
    spec = ModelSpec(name="tiny", title="tiny", description="", build=lambda: Tiny(pool, middle),
                     load_weights=lambda module, path: None, weights=None, preprocessing=Preprocessing(),
                     categories=(), layers=layers, input_size=16)
    return Network(spec, Tiny(pool, middle).eval().requires_grad_(False), "test")


def closed_form(module: Tiny, pool: bool) -> np.ndarray:
    """(C2, C0, K, K): sum_j L[o, j] R[j, i], spread over each 2x2 pool window / 4 when pooled."""
    product = torch.einsum("ojyx,ji->oiyx", module.l.weight, module.r.weight[:, :, 0, 0]).numpy()
    if not pool:
        return product
    spread = np.zeros((C2, C0, 6, 6))
    for dy in range(3):
        for dx in range(3):
            spread[:, :, 2 * dy:2 * dy + 2, 2 * dx:2 * dx + 2] += product[:, :, dy:dy + 1, dx:dx + 1] / 4
    return spread


@pytest.mark.parametrize("pool", [False, True])
def test_expanded_weights_equal_the_closed_form_exactly(pool):
    network = tiny_network(pool)
    pair = linearise(network, "p", "l")
    found = expanded_weights(pair, C0, 16, top=C0, batch=2)
    expected = closed_form(network.module, pool)
    assert found.maps.shape[2:] == expected.shape[2:] == ((6, 6) if pool else (3, 3))
    for o in range(C2):
        for rank, i in enumerate(found.top_index[o]):
            assert np.array_equal(found.maps[o, rank], expected[o, i]), (o, i)  # bit for bit
        assert np.array_equal(found.sums[o], expected[o].sum(axis=(1, 2)))
    assert ("1 x MaxPool2d -> AvgPool2d" in pair.replaced) == pool


def test_a_module_that_cannot_be_linearised_is_named_in_one_line():
    with pytest.raises(UsageError) as error:
        linearise(tiny_network(False, middle=nn.Sigmoid()), "p", "l")
    assert "r_relu (Sigmoid) between p and l" in str(error.value) and "\n" not in str(error.value)


@pytest.fixture(scope="module")
def caffe(shared_dir):
    return load_network("inceptionv1-caffe", weights=str(shared_dir / "weights" / "bvlc_googlenet.npz"),
                        progress=False)


@pytest.fixture(scope="module")
def stored(caffe, tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    outcome = run_views(caffe, ["circuits"], store=root, layers=["inception_3b"], settings={"circuits": CircuitSettings(top=6)})
    assert outcome.plans["circuits"].todo == 2 and not outcome.failed  # 3a -> 3b and 3b -> 4a
    return Store(root)


def linear_block(block, x):
    """One Caffe inception block with every ReLU the identity and its max pool an average pool."""
    pooled = F.avg_pool2d(x, 3, stride=1, padding=1, ceil_mode=True, count_include_pad=False)
    return torch.cat([block.conv_1x1(x), block.conv_3x3(block.conv_3x3_reduce(x)),
                      block.conv_5x5(block.conv_5x5_reduce(x)), block.conv_pool_proj(pooled)], 1)


@pytest.mark.parametrize("previous, layer, pooled", [("inception_3a", "inception_3b", False),
                                                     ("inception_3b", "inception_4a", True)])
def test_stored_maps_equal_an_independent_brute_force(caffe, stored, previous, layer, pooled):
    result = stored.read(stored.circuits_dir(caffe.spec.name, layer) / "result.json", CircuitResult)
    arrays = stored.read(stored.circuits_dir(caffe.spec.name, layer) / "weights.npz", CircuitArrays)
    assert (result.previous, result.layer, result.target) == (previous, layer, f"{layer}_pre_relu")
    block = getattr(caffe.module, layer)
    side, (cy, cx) = result.input_size, result.centre
    channels = arrays.sums.shape[1]
    t = result.top
    branch_starts = np.cumsum([0, block.conv_1x1.out_channels, block.conv_3x3.out_channels,
                               block.conv_5x5.out_channels])
    for o in [int(start) + 3 for start in branch_starts]:  # a unit of each branch
        x = torch.zeros(1, channels, side, side, requires_grad=True)
        source = F.avg_pool2d(x, 3, stride=2, ceil_mode=True, count_include_pad=False) if pooled else x
        linear_block(block, source)[0, o, cy, cx].backward()
        grads = x.grad[0].numpy()
        rows, cols = np.nonzero(np.abs(grads).sum(0))
        canvas = grads[:, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        top, left, height, width = arrays.box[o]
        assert (height, width) == (np.ptp(rows) + 1, np.ptp(cols) + 1)  # the branch's support: 1, 3, 5 (x2 + 1 pooled)
        for rank in (0, 1, t, t + 1):  # the two strongest excitatory and inhibitory inputs
            i = arrays.top_index[o, rank]
            stored_map = arrays.maps[o, rank, top:top + height, left:left + width]
            np.testing.assert_allclose(stored_map, canvas[i], atol=1e-5, rtol=0)
        # Ranking is exact: the stored top inputs are a brute-force sort of every input's sum.
        sums = grads.astype(np.float64).sum(axis=(1, 2))
        np.testing.assert_allclose(arrays.sums[o], sums, atol=1e-5)
        order = np.lexsort((np.arange(channels), -arrays.sums[o]))
        assert arrays.top_index[o, :t].tolist() == order[:t].tolist()
        assert arrays.top_index[o, t:].tolist() == np.lexsort((np.arange(channels), arrays.sums[o]))[:t].tolist()
        assert np.array_equal(arrays.top_value[o], arrays.sums[o, arrays.top_index[o]])
    # And for every output unit: the sum of a map is the effect of the input channel raised by one everywhere,
    # so one backward per output unit of the block, fed a constant map per channel, gives every sum.
    level = torch.zeros(channels, requires_grad=True)
    constant = level[None, :, None, None].expand(1, channels, side, side)
    source = F.avg_pool2d(constant, 3, stride=2, ceil_mode=True, count_include_pad=False) if pooled else constant
    centre = linear_block(block, source)[0, :, cy, cx]
    for o in range(centre.numel()):
        brute = torch.autograd.grad(centre[o], level, retain_graph=True)[0].double().numpy()
        expected = ranked(brute, t)
        for stored_index, expected_index in zip(arrays.top_index[o], expected):  # equal, up to exact ties
            assert stored_index == expected_index or abs(brute[stored_index] - brute[expected_index]) < 1e-6, o


def test_map_sizes_follow_the_branches(caffe, stored):
    arrays = stored.read(stored.circuits_dir(caffe.spec.name, "inception_3b") / "weights.npz", CircuitArrays)
    sizes = [tuple(box[2:]) for box in arrays.box]
    assert sizes[:128] == [(1, 1)] * 128 and sizes[128:320] == [(3, 3)] * 192  # 1x1, 3x3 branches
    assert sizes[320:416] == [(5, 5)] * 96 and sizes[416:] == [(3, 3)] * 64  # 5x5 and the pool branch


def test_done_pairs_are_skipped_and_damaged_ones_recomputed(caffe, stored, caplog):
    ran = []
    again = run_views(caffe, ["circuits"], store=stored.root, layers=["inception_3b"],
                      settings={"circuits": CircuitSettings(top=6)}, executor=LocalExecutor(on_progress=lambda j, n: ran.append(j)))
    assert again.plans["circuits"].done == 2 and ran == []
    weights = stored.circuits_dir(caffe.spec.name, "inception_4a") / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:-100])
    redo = run_views(caffe, ["circuits"], store=stored.root, layers=["inception_3b"],
                     settings={"circuits": CircuitSettings(top=6)})
    assert redo.plans["circuits"].todo == 1 and any("weights.npz" in r.getMessage() for r in caplog.records)
    assert stored.read(weights, CircuitArrays) is not None


def test_logits_maps_are_the_classifier_weights(caffe, tmp_path):
    from microscope.site.builder import build_site

    run_views(caffe, ["circuits"], store=tmp_path / "store", layers=["logits"], settings={"circuits": CircuitSettings(top=4)})
    store = Store(tmp_path / "store")
    arrays = store.read(store.circuits_dir(caffe.spec.name, "logits") / "weights.npz", CircuitArrays)
    weight = caffe.module.classifier.weight.double().numpy()  # through global average pooling: W[c, i]
    np.testing.assert_allclose(arrays.sums, weight, rtol=1e-5, atol=1e-7)
    assert arrays.maps.shape[2:] == (1, 1)
    # The last block's pages name the classes each unit pushes up and down most, strongest first.
    build_site(store, tmp_path / "site", layers=["inception_5b"], progress=False)
    unit = 7
    page = (tmp_path / "site" / "models" / caffe.spec.name / "inception_5b" / str(unit) / "index.html").read_text()
    names = caffe.spec.categories
    up, down = np.argsort(-weight[:, unit], kind="stable")[:4], np.argsort(weight[:, unit], kind="stable")[:4]
    pushes_up = page.split("Classes it pushes up most")[1].split("Classes it pushes down most")[0]
    pushes_down = page.split("Classes it pushes down most")[1].split("</ol>")[0]
    shown = [html.unescape(re.sub("<[^>]+>", "", item)).strip()
             for item in re.findall(r"<li>(.*?)<span class=\"val\">", pushes_up)]
    assert shown == [names[c] for c in up]  # no pages for the logits here: names without links
    shown = [html.unescape(re.sub("<[^>]+>", "", item)).strip()
             for item in re.findall(r"<li>(.*?)<span class=\"val\">", pushes_down)]
    assert shown == [names[c] for c in down]
    unit_json = tmp_path / "site" / "models" / caffe.spec.name / "inception_5b" / str(unit) / "unit.json"
    outputs = json.loads(unit_json.read_text())["circuits"]["outputs"]
    assert [entry["class"] for entry in outputs[:4]] == [names[c] for c in up]
    # Its weights from inception_5a were not computed: the page and its provenance both say so.
    assert "No expanded weights from inception_5a were computed" in page
    assert "Circuit: no expanded weights from inception_5a were computed" in page
    assert "Circuit: expanded weights from inception_5a" not in page


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Random weights: renders of a few units of inception_3a, circuits around conv1, 3a and 3b, the site."""
    from microscope.site.builder import build_site
    from microscope.views.featurevis import FeatureVisSettings

    network = load_network("inceptionv1-caffe", weights="random", seed=0, progress=False)
    root = tmp_path_factory.mktemp("circuit-site")
    run_views(network, ["featurevis", "circuits"], store=root / "store", layers=["conv1", "inception_3a", "inception_3b"],
              units=__import__("microscope.selection", fromlist=["Units"]).Units(((0, 3),)),
              settings={"featurevis": FeatureVisSettings(objectives=("channel",), steps=2, size=48),
                        "circuits": CircuitSettings(top=5)})
    store = Store(root / "store")
    arrays = store.read(store.circuits_dir(network.spec.name, "inception_3b") / "weights.npz", CircuitArrays)
    labelled = int(arrays.top_index[330, 0])  # the strongest input of unit 330 (a 5x5-branch unit)
    labels = {"inception_3a": {labelled: "a labelled input"}}
    # As `build --layers` does: only these layers' pages (inception_4a, where 3b's outputs go, has none).
    build_site(store, root / "site", layers=["conv1", "inception_3a", "inception_3b"], labels=labels,
               progress=False)
    return root / "site", arrays, labelled


def test_unit_pages_show_inputs_outputs_and_their_maps(site):
    from PIL import Image

    from test_site import check_links, parse

    site, arrays, labelled = site
    layer = site / "models" / "inceptionv1-caffe" / "inception_3b"
    page = (layer / "330" / "index.html").read_text()
    assert 'id="circuit"' in page and "Units of inception_3a that excite it most" in page
    assert "Units of inception_4a it excites most" in page
    inputs = [int(i) for i in arrays.top_index[330]]
    links = [url for tag, url in parse(layer / "330" / "index.html").links if "/inception_3a/" in url]
    assert f"../../inception_3a/{inputs[0]}/index.html" in links  # inputs link to their pages
    assert "a labelled input" in page
    assert "/inception_4a/" not in page  # no pages there: unit numbers, no links
    # The map strip: one tile per input, 5x5 for this branch, red where it excites and blue where it inhibits.
    strip = np.asarray(Image.open(layer / "330" / "circuit.png").convert("RGB")).astype(int)
    assert strip.shape == (5, 5 * 10, 3)
    top, left = arrays.box[330, :2]
    maps = arrays.maps[330][:, top:top + 5, left:left + 5]
    scale = np.abs(maps).max()
    for tile in range(10):
        y, x = np.unravel_index(np.abs(maps[tile]).argmax(), (5, 5))
        pixel = strip[y, tile * 5 + x]
        if maps[tile, y, x] > 0:
            assert pixel[0] > pixel[2]  # red
        else:
            assert pixel[2] > pixel[0]  # blue
        if np.abs(maps[tile, y, x]) == scale:
            assert tuple(pixel) in ((178, 24, 43), (33, 102, 172))  # the full colour at the unit's largest value
    unit = json.loads((layer / "330" / "unit.json").read_text())
    assert [entry["unit"] for entry in unit["circuits"]["inputs"]] == inputs
    check_links(site)


def test_the_first_layer_says_it_reads_pixels_and_layers_offer_their_weights(site):
    site, arrays, _ = site
    model = site / "models" / "inceptionv1-caffe"
    assert "conv1 is the first layer: its inputs are the image's pixels" in (model / "conv1" / "0" / "index.html").read_text()
    with np.load(model / "inception_3b" / "weights.npz") as export:
        assert str(export["previous"]) == "inception_3a" and export["maps"].dtype == np.float16
        assert np.array_equal(export["top_index"], arrays.top_index)
        np.testing.assert_allclose(export["maps"], arrays.maps, atol=1e-3, rtol=1e-2)
    assert 'href="weights.npz"' in (model / "inception_3b" / "index.html").read_text()
    piece = model / "inception_3b" / page_name(330 // TILES_PER_PIECE + 1)  # the grid's piece holding unit 330
    assert 'href="330/index.html#circuit"' in piece.read_text()


def test_inputs_show_their_feature_visualization(site):
    """Units 0-3 of inception_3a were rendered: a 3b unit fed by one of them shows its thumbnail, linked."""
    site, arrays, _ = site
    t = arrays.top_index.shape[1] // 2
    for unit in range(arrays.top_index.shape[0]):
        shown = [int(i) for rank, i in enumerate(arrays.top_index[unit])
                 if (arrays.top_value[unit, rank] > 0) == (rank < t) and arrays.top_value[unit, rank] != 0]
        rendered = [i for i in shown if i < 4]
        if rendered:
            break
    assert rendered, "no unit of inception_3b has a rendered unit among its inputs"
    model = site / "models" / "inceptionv1-caffe"
    page = (model / "inception_3b" / str(unit) / "index.html").read_text()
    for i in rendered:
        thumb = f"../../inception_3a/{i}/thumb.webp"
        assert re.search(rf'<a href="../../inception_3a/{i}/index.html"><img class="fv" src="{re.escape(thumb)}"', page)
        assert (model / "inception_3a" / str(i) / "thumb.webp").is_file()
    others = [i for i in shown if i >= 4]
    assert all(f'inception_3a/{i}/thumb.webp' not in page for i in others)  # not rendered: no thumbnail


def test_outputs_link_to_the_next_layer_with_its_labels(site, tmp_path):
    """Built with inception_4a's pages and labels, a 3b unit's outputs link there and carry the labels."""
    from microscope.site.builder import build_site
    from test_site import check_links

    site, _, _ = site
    store = Store(site.parent / "store")
    outgoing = store.read(store.circuits_dir("inceptionv1-caffe", "inception_4a") / "weights.npz", CircuitArrays)
    column = outgoing.sums[:, 330]
    chosen = ranked(column, 5)
    strongest, weakest = int(chosen[0]), int(chosen[5])
    labels = {"inception_4a": {strongest: "an output label", weakest: "an inhibited label"}}
    build_site(store, tmp_path / "site", layers=["inception_3b", "inception_4a"], labels=labels, progress=False)
    page = (tmp_path / "site" / "models" / "inceptionv1-caffe" / "inception_3b" / "330" / "index.html").read_text()
    excites = page.split("Units of inception_4a it excites most")[1].split("</ol>")[0]
    inhibits = page.split("Units of inception_4a it inhibits most")[1].split("</ol>")[0]
    linked = re.findall(r'<a href="../../inception_4a/(\d+)/index.html">', excites)
    assert [int(u) for u in linked] == [int(u) for u in chosen[:5] if column[u] > 0]
    assert re.search(rf'inception_4a/{strongest}/index.html">{strongest}</a> <span class="lab">an output label', excites)
    assert re.search(rf'inception_4a/{weakest}/index.html">{weakest}</a> <span class="lab">an inhibited label', inhibits)
    check_links(tmp_path / "site")
