"""docs/architecture.md, walked: a new view - its settings, its record, its two halves and its partial -
registered from outside the package: computed by the pipeline, skipped when done, shown on every unit page.

A newcomer following the guide touches three files: the view's module (here, this file: settings,
record, show half, compute half), its template partial, and the registration (here, the fixture)."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from microscope.views import registry
from microscope.jobs import make_job
from microscope.network.loaded import load_network
from microscope.run.pipeline import run_views
from microscope.selection import Units
from microscope.site.builder import build_site
from microscope.store import Store
from microscope.store.typed import JsonRecord
from microscope.settings import Settings, setting
from microscope.view import Computed, Panel, Shown, ViewPlan

LAYER = "conv2"
PARTIAL = """{% macro unit_panel(p) %}
<section class="full grey">
  <h2 class="section">Response to grey</h2>
  <p>Mean activation on a mid-grey image: <b class="grey-value">{{ p.mean|number }}</b>.</p>
</section>
{% endmacro %}
"""


@dataclass(frozen=True)
class GreyResponse(JsonRecord):
    """<layer>/grey.json: every unit's mean activation on a mid-grey image."""

    FORMAT = 1
    layer: str
    weights_id: str
    grey: float
    means: list[float]


@dataclass(frozen=True)
class GreySettings(Settings):
    grey: float = setting(0.5, "--grey-level", "Grey level of the image (0 black, 1 white).", low=0, high=1)


def grey_file(store, model: str, layer: str):
    return store.layer_dir(model, layer) / "grey.json"


class GreyShown(Shown):
    name = "grey"
    title = "Response to grey"
    missing = "No response to grey was measured for this layer."

    def read(self, store, model, layer):
        return store.read(grey_file(store, model.name, layer.name), GreyResponse)

    def units(self, data) -> set[int]:
        return set(range(len(data.means)))

    def unit_panel(self, data, unit, page) -> Panel:
        return Panel(data={"mean": data.means[unit]}, json={"mean": data.means[unit]},
                     provenance=[f"Response to grey: a 64 px grey image of level {data.grey}, weights {data.weights_id}."],
                     summary={"grey": {"mean": data.means[unit]}})


class GreyView(Computed):
    shown = GreyShown()
    settings_type = GreySettings
    needs = ("network",)
    runs: list[str] = []

    def plan(self, request, session) -> ViewPlan:
        network, store = session.network(), session.store
        settings = request.settings[self.name]
        jobs = []
        for layer in request.layers:
            found = store.read(grey_file(store, network.spec.name, layer), GreyResponse)
            if found is None or (found.weights_id, found.grey) != (network.weights_id, settings.grey):
                jobs.append(make_job(self.name, "measure", layer, {"weights_id": network.weights_id,
                                                                   **settings.keyed()}, pieces=1))
        return ViewPlan(jobs, todo=len(jobs), done=len(request.layers) - len(jobs), what="layers")

    def run(self, job, session, report) -> None:
        network = session.network()
        with torch.no_grad():
            image = torch.full((1, 3, 64, 64), job.spec["grey"])
            activation = network.activations(image, [job.layer])[job.layer]
        means = [float(v) for v in activation.mean(dim=(0, 2, 3))]
        session.store.write(grey_file(session.store, network.spec.name, job.layer),
                            GreyResponse(job.layer, network.weights_id, job.spec["grey"], means))
        self.runs.append(job.layer)
        report(1)


@pytest.fixture
def grey(tmp_path):
    folder = tmp_path / "templates"
    (folder / "views").mkdir(parents=True)
    (folder / "views" / "grey.html").write_text(PARTIAL)
    view = GreyView()
    view.shown.template_folder = folder
    registry.register(view)
    yield view
    registry.unregister("grey")


def test_a_new_view_is_computed_skipped_when_done_and_shown(grey, tmp_path):
    network = load_network("inceptionv1-caffe", weights="random", seed=0, progress=False)
    store = tmp_path / "store"
    outcome = run_views(network, ["grey", "featurevis"], store=store, layers=[LAYER], units=Units(((0, 1),)),
                        settings={"featurevis": registry.VIEWS["featurevis"].default_settings().__class__(
                            objectives=("channel",), steps=2, size=48)})
    assert grey.runs == [LAYER] and outcome.plans["grey"].todo == 1 and not outcome.failed
    again = run_views(network, ["grey"], store=store, layers=[LAYER])
    assert grey.runs == [LAYER] and again.plans["grey"].done == 1  # done: not run twice
    darker = run_views(network, ["grey"], store=store, layers=[LAYER], settings={"grey": GreySettings(grey=0.25)})
    assert grey.runs == [LAYER, LAYER] and darker.plans["grey"].todo == 1  # a keyed setting changed: redone
    run_views(network, ["grey"], store=store, layers=[LAYER])  # back to the default level

    with torch.no_grad():
        expected = network.activations(torch.full((1, 3, 64, 64), 0.5), [LAYER])[LAYER].mean(dim=(0, 2, 3))
    site = tmp_path / "site"
    build_site(Store(store), site, progress=False)
    layer_dir = site / "models" / "inceptionv1-caffe" / LAYER
    for unit in range(3):
        page = (layer_dir / str(unit) / "index.html").read_text()
        data = json.loads((layer_dir / str(unit) / "unit.json").read_text())
        assert data["grey"]["mean"] == pytest.approx(float(expected[unit]))
        assert 'class="grey-value"' in page and "Response to grey: a 64 px grey image of level 0.5" in page
        # The other views' panels are still there: renders for units 0-1 only, a note elsewhere.
        assert ("channel.webp" in page) == (unit < 2)
    listed = json.loads((layer_dir / "layer.json").read_text())
    assert listed["units"][0]["grey"]["mean"] == pytest.approx(float(expected[0]))
    assert len(listed["units"]) == 192 and set(listed["views"]) == {"featurevis", "grey"}
