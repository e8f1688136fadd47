"""Receptive fields of the catalogue, against hand computation and against the network's own behaviour."""
import pytest
import torch

from microscope.network.catalogue import catalogue
from microscope.network.loaded import load_network



def box(info, y, x):
    """(top, left, bottom, right), inclusive, of the input pixels position (y, x) sees."""
    top, left, side = info.receptive_square(y, x)
    return float(top), float(left), float(top) + side - 1, float(left) + side - 1

@pytest.fixture(scope="module")
def infos():
    network = load_network("inceptionv1-caffe", weights="random", seed=0, progress=False)
    return {info.name: info for info in catalogue(network)}


@pytest.fixture(scope="module")
def network():
    net = load_network("inceptionv1-caffe", weights="random", seed=0, progress=False)
    net.module.double()  # float64, so "unchanged" below can mean exactly equal
    return net


# By hand, (size, stride, centre of position 0) along one axis:
#   conv1 7/2 pad 3          -> 7, 2, 0
#   pool1 3/2                -> 7 + 2*2 = 11, 4, 2
#   conv2_reduce 1x1         -> 11, 4, 2
#   conv2 3x3 pad 1          -> 11 + 2*4 = 19, 4, 2
#   pool2 3/2                -> 19 + 2*4 = 27, 8, 6
#   inception_3a (5x5 pad 2) -> 27 + 4*8 = 59, 8, 6   (the 3x3 and pool branches see 43, same centre)
#   inception_3b (5x5 pad 2) -> 59 + 4*8 = 91, 8, 6
#   pool3 3/2                -> 91 + 2*8 = 107, 16, 14
#   inception_4a (5x5 pad 2) -> 107 + 4*16 = 171, 16, 14
HAND = {
    "conv1": (7, 2, 0), "conv1_pre_relu": (7, 2, 0), "conv2_reduce": (11, 4, 2), "conv2": (19, 4, 2),
    "inception_3a": (59, 8, 6), "inception_3a_pre_relu": (59, 8, 6), "inception_3a_3x3": (43, 8, 6),
    "inception_3a_pool_proj": (43, 8, 6), "inception_3a_1x1": (27, 8, 6),
    "inception_3b": (91, 8, 6), "inception_4a": (171, 16, 14), "inception_4a_5x5_reduce": (107, 16, 14),
}


@pytest.mark.parametrize("name", list(HAND))
def test_fields_match_hand_computation(infos, name):
    info = infos[name]
    assert (info.rf_size, info.stride, info.rf_offset) == HAND[name]


def test_global_layers_have_no_box(infos):
    assert infos["logits"].rf_size is None and infos["logits"].receptive_square(0, 0) is None


def unit_value(network, layer, image, y, x):
    extractor = network.extractor([layer])
    return extractor(image)[layer][0, :, y, x]


def image(size=96):
    return torch.rand(1, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("y, x", [(5, 7), (0, 0), (20, 3)])
def test_conv1_box_is_exactly_the_pixels_that_matter(network, infos, y, x):
    base = image()
    before = unit_value(network, "conv1_pre_relu", base, y, x)
    top, left, bottom, right = (int(v) for v in box(infos["conv1_pre_relu"], y, x))
    assert (bottom - top, right - left) == (6, 6)

    def changes(py, px):
        poked = base.clone()
        poked[0, :, py, px] = 1 - poked[0, :, py, px]
        return not torch.equal(unit_value(network, "conv1_pre_relu", poked, y, x), before)

    inside = [(py, px) for py in (top, bottom) for px in (left, right) if py >= 0 and px >= 0]
    outside = [(top - 1, left), (bottom + 1, right), (top, left - 1), (bottom, right + 1)]
    outside = [(py, px) for py, px in outside if py >= 0 and px >= 0]
    assert all(changes(py, px) for py, px in inside)
    assert not any(changes(py, px) for py, px in outside)


@pytest.mark.parametrize("layer, y, x", [("conv1_pre_relu", 9, 4), ("conv2_pre_relu", 8, 6),
                                         ("inception_3a_pre_relu", 5, 5)])
def test_gradient_stays_inside_the_box(network, infos, layer, y, x):
    # Every input pixel with a non-zero gradient lies in the box; through max pools and ReLUs only a
    # subset does, but for conv1 (one convolution) the support is the whole box.
    x_in = image().requires_grad_(True)
    unit_value(network, layer, x_in, y, x).sum().backward()
    rows, cols = torch.nonzero(x_in.grad[0].abs().sum(0), as_tuple=True)
    top, left, bottom, right = box(infos[layer], y, x)
    assert rows.min() >= top and rows.max() <= bottom and cols.min() >= left and cols.max() <= right
    if layer == "conv1_pre_relu":
        assert (rows.min(), rows.max(), cols.min(), cols.max()) == (top, bottom, left, right)
    else:  # the centre of the box is where most paths cross: it must be seen
        centre = (int((top + bottom) / 2), int((left + right) / 2))
        assert x_in.grad[0, :, centre[0], centre[1]].abs().sum() > 0


class _Upsampled(torch.nn.Module):
    """A conv, then an operation the walk does not know, then a ReLU."""

    def __init__(self, spatial):
        super().__init__()
        self.conv, self.spatial, self.relu = torch.nn.Conv2d(3, 4, 3), spatial, torch.nn.ReLU()

    def forward(self, x):
        return {"out": self.relu(self.spatial(self.conv(x)))}


class _Interpolated(torch.nn.Module):
    def forward(self, x):
        return {"out": torch.nn.functional.interpolate(x, scale_factor=2.0)}


@pytest.mark.parametrize("module, named", [
    (_Upsampled(torch.nn.Upsample(scale_factor=2)), "Upsample (module spatial)"),
    (_Upsampled(torch.nn.PixelShuffle(2)), "PixelShuffle (module spatial)"),
    (_Interpolated(), "interpolate (graph node interpolate)"),
])
def test_an_unknown_operation_is_named_not_passed_through(module, named):
    from torch import fx

    from microscope.errors import UsageError
    from microscope.network.receptive_field import graph_fields

    with pytest.raises(UsageError) as error:
        graph_fields(fx.symbolic_trace(module))
    assert f"does not know {named}" in str(error.value) and "\n" not in str(error.value)
    known = _Upsampled(torch.nn.Dropout2d())  # a position-wise module in the same place walks through
    assert graph_fields(fx.symbolic_trace(known))["out"].size == 3


@pytest.mark.parametrize("model", ["inceptionv1", "inceptionv1-caffe", "googlenet"])
def test_every_pre_relu_twin_of_the_zoo_holds(model):
    """A layer's twin is what feature visualization optimises: ReLU(twin) must be the layer, exactly."""
    import dataclasses

    network = load_network(model, weights="random", seed=1, progress=False)
    claimed = [layer.name for layer in network.layers if layer.pre_relu and layer.relu_of_twin]
    assert len(claimed) > 50 and network.broken_twins() == []
    # The twin of another branch of the same block is caught (by its shape or its values).
    block = next(layer for layer in network.layers if layer.kind == "block")
    first, second = [layer for layer in network.layers if layer.kind == "branch" and layer.pre_relu
                     and layer.name.startswith(block.name)][:2]
    wrong = dataclasses.replace(first, pre_relu=second.pre_relu)
    network.spec = dataclasses.replace(network.spec, layers=tuple(wrong if layer.name == first.name else layer
                                                                  for layer in network.spec.layers))
    network._extractors.clear()
    assert network.broken_twins([first.name, second.name]) == [first.name]
