"""Your own model (`--model FILE.py:factory`): the README's example, written by the test, built into a
browsable site with a state_dict of its own; and what goes wrong said in one line."""
import re
import textwrap

import pytest
import torch

from generated import blob_photos, cli, QUICK_CARICATURES
from microscope.errors import UsageError
from microscope.models import get_spec
from test_site import parse

# The README's example, as a user would write it.
MODEL = textwrap.dedent('''
    import torch
    from torch import nn


    class TinyNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 16, 5, stride=2, padding=2), nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
            self.head = nn.Linear(32, 10)

        def forward(self, x):
            return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


    def tiny():
        return TinyNet(), {"preprocessing": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
                                             "resize": 72, "crop": 64},
                           "categories": [f"shape {i}" for i in range(10)]}
''')


def your_own_model(folder, seed: int, name: str = "tiny.py"):
    """The README's example written to folder/name, and a seeded state_dict of its own."""
    (folder / name).write_text(MODEL)
    namespace = {}
    exec(compile(MODEL, "tinynet", "exec"), namespace)  # the user's class, to make weights of its own
    torch.manual_seed(seed)
    return folder / name, namespace["TinyNet"]().state_dict()


def model_and_photos(root, seed: int):
    """root/tiny.py (the README's example), root/tiny.pth (its seeded weights) and 8 photos in root/photos."""
    torch.save(your_own_model(root, seed)[1], root / "tiny.pth")
    (root / "photos").mkdir()
    blob_photos(root / "photos", 8, seed=seed)
    return root


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mine")
    (folder / "tinynet.py").write_text(MODEL)
    (folder / "broken.py").write_text("def not_a_module():\n    return 42\n\ndef fails():\n    raise OSError('no GPU')\n")
    return folder / "tinynet.py"


def test_your_own_model_builds_into_a_site(tmp_path, model_file):
    (tmp_path / "photos").mkdir()
    photos = blob_photos(tmp_path / "photos", 6, seed=2)
    layers = cli("layers", "--model", f"{model_file}:tiny").stdout
    # Found in the graph: both ReLUs (named by their nodes), the head as logits, with fields by hand:
    # features_1: 5x5 / 2 -> 5, 2; features_4: max pool 2/2 (5 + 2 = 7, 4), 3x3 (7 + 2*4 = 15, 4).
    rows = {line.split()[0]: line.split() for line in layers.splitlines()[2:]}
    assert rows["features_1"][1:3] == ["conv", "16"] and rows["features_1"][5:7] == ["5", "px"]
    assert rows["features_4"][1:3] == ["conv", "32"] and rows["features_4"][5:7] == ["15", "px"]
    assert rows["logits"][1:3] == ["logits", "10"]

    weights = tmp_path / "tiny.pth"
    torch.save(your_own_model(tmp_path, seed=7)[1], weights)
    site = tmp_path / "site"
    result = cli("build", *QUICK_CARICATURES, "--model", f"{model_file}:tiny", "--weights", weights, "--layers", "features_1,features_4",
                 "--units", "0-3", "--steps", "3", "--size", "48", "--objectives", "channel", "--top-k", "3",
                 "--images", photos, "--store", tmp_path / "store", "--out", site, "--quiet")
    assert "dataset examples: 2 layers computed" in result.stdout and "failed" not in result.stdout
    assert ("a", "models/tinynet-tiny/index.html") in parse(site / "index.html").links
    unit = site / "models" / "tinynet-tiny" / "features_4" / "0" / "index.html"
    text = unit.read_text(encoding="utf-8")
    assert "optimising features_4_pre_relu" in text  # its twin was found and checked
    assert str(tmp_path) not in text and str(model_file.parent) not in (site / "models" / "tinynet-tiny" /
                                                                         "index.html").read_text()


def test_mistakes_with_your_own_model_are_one_line(tmp_path, model_file):
    other = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(8, 3, 5, 5)}, other)
    folder = model_file.parent
    for model, expected in [(f"{folder}/missing.py:tiny", "model file"),
                            (f"{model_file}:nothing", "has no function 'nothing'"),
                            (f"{folder}/broken.py:not_a_module", "returned int, not a torch nn.Module"),
                            (f"{folder}/broken.py:fails", "failed (OSError: no GPU)")]:
        with pytest.raises(UsageError, match=re.escape(expected)):  # what the command line prints in one line
            get_spec(model)
    cases = [
        (f"{model_file}:tiny", ["--weights", other], "features.0.weight has shape (8, 3, 5, 5), expected (16, 3, 5, 5)"),
        (f"{model_file}:tiny", [], "no downloadable weights file; pass one with --weights PATH"),
        (f"{model_file}:tiny", ["--weights", "random", "--layers", "features_9"], "unknown layer 'features_9'"),
    ]
    for model, extra, expected in cases:
        result = cli("featurevis", "--model", model, "--units", "0", "--store", tmp_path / "store", *extra, code=2)
        assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


GELU_MODEL = textwrap.dedent('''
    import torch
    from torch import nn


    def gelu():
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.GELU(),
                             nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(8, 4))
''')


def test_circuits_that_cannot_be_linearised_are_skipped_and_said_on_the_pages(tmp_path):
    """A GELU between two layers: no expanded weights between them (the page names the module), the rest
    of the build - and the circuits from the later layer into the logits - goes on."""
    (tmp_path / "gelu.py").write_text(GELU_MODEL)
    (tmp_path / "photos").mkdir()
    photos = blob_photos(tmp_path / "photos", 4, seed=3)
    namespace = {}
    exec(compile(GELU_MODEL, "gelu", "exec"), namespace)
    torch.manual_seed(3)
    torch.save(namespace["gelu"]().state_dict(), tmp_path / "gelu.pth")
    site, args = tmp_path / "site", ("build", *QUICK_CARICATURES, "--model", f"{tmp_path / 'gelu.py'}:gelu", "--weights",
                                     tmp_path / "gelu.pth", "--layers", "1,5",
                                     "--units", "0-1", "--steps", "2", "--size", "32", "--objectives", "channel",
                                     "--top-k", "2", "--images", photos, "--store", tmp_path / "store",
                                     "--out", tmp_path / "site", "--quiet")
    first = cli(*args)
    assert "cannot linearise module 3 (GELU) between 1 and 5" in first.stderr
    assert "failed" not in first.stdout
    layer_page = " ".join(" ".join(parse(site / "models" / "gelu-gelu" / "5" / "index.html").text).split())
    assert re.search(r"No expanded weights from 1 into this layer: .*cannot linearise module 3 \(GELU\)", layer_page)
    unit_page = " ".join(" ".join(parse(site / "models" / "gelu-gelu" / "5" / "1" / "index.html").text).split())
    assert "No expanded weights from 1: " in unit_page and "(GELU)" in unit_page
    assert "Classes it pushes up most" in unit_page  # 5 -> logits is linear: computed
    earlier = " ".join(" ".join(parse(site / "models" / "gelu-gelu" / "1" / "0" / "index.html").text).split())
    assert "No expanded weights into 5: " in earlier and "(GELU)" in earlier
    assert not (tmp_path / "store" / "gelu-gelu" / "5" / "circuits" / "result.json").exists()

    again = cli(*args)  # the refusal is stored: nothing to redo
    assert "circuit: 0 layer pairs computed, 2 reused" in again.stdout


def test_the_circuits_command_says_which_pair_it_refused(tmp_path):
    """`circuits` alone: one warning line naming the module, the refusal stored and counted as refused."""
    (tmp_path / "gelu.py").write_text(GELU_MODEL)
    namespace = {}
    exec(compile(GELU_MODEL, "gelu", "exec"), namespace)
    torch.manual_seed(3)
    torch.save(namespace["gelu"]().state_dict(), tmp_path / "gelu.pth")
    args = ("circuits", "--model", f"{tmp_path / 'gelu.py'}:gelu", "--weights", tmp_path / "gelu.pth", "--layers", "5",
            "--store", tmp_path / "store", "--quiet")
    first = cli(*args)
    warnings = [line for line in first.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "cannot linearise module 3 (GELU) between 1 and 5" in warnings[0], first.stderr
    assert "circuit: 1 layer pairs computed, 1 refused, 0 reused" in first.stdout  # 5 -> logits; 1 -> 5 refused
    folder = tmp_path / "store" / "gelu-gelu"
    assert (folder / "5" / "circuits" / "refused.json").is_file()
    assert (folder / "logits" / "circuits" / "result.json").is_file()
    again = cli(*args)
    assert "circuit: 0 layer pairs computed, 2 reused" in again.stdout
