"""The activation atlas view: the space a layer uses on real photos, on one zoomable page per layer.

Its jobs per layer, after the dataset examples (whose pass draws the sample of activation vectors):
`layout` (UMAP and the two grids, atlas/compute.py), `cells` (nearest units, class attribution and
patches of every shown cell, atlas/describe.py), `icons` (a feature visualization of each cell's
mean, atlas/icons.py; one job per slice of about 32 cells, so a cluster renders them side by side)
and `collect` (icons.json, once every slice is stored). Each stage keys its record on everything before it, so a new sample, new
settings or new weights recompute exactly the stages they change.

`build` does not make atlases (`in_build = False`): a layer's atlas is about as much compute as its
unit renders; `build.py atlas --layers ... --images DIR` makes them after `build`, and later builds
and `site` show them. On the site: a panel on the layer page links to `<layer>/atlas/`, a page of
its own (atlas/page.py writes it; templates/atlas.html, static/atlas.js).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import click

from microscope.atlas.stored import AtlasData
from microscope.errors import UsageError
from microscope.jobs import make_job
from microscope.view import Panel, View, ViewPlan


@dataclass(frozen=True)
class Settings:
    grid: int = 20  # cells per side at the top level; the finer level has twice as many
    neighbours: int = 50
    min_dist: float = 0.05
    icon_size: int = 96
    icon_steps: int = 128
    icon_batch_size: int | None = None  # default 16 on a CPU, 128 on a GPU
    attribution_vectors: int = 8
    patches: int = 4

    def __post_init__(self):
        for name, option, low in (("grid", "--grid", 1), ("neighbours", "--umap-neighbours", 2),
                                  ("icon_steps", "--icon-steps", 1), ("attribution_vectors", "--attribution-vectors", 1),
                                  ("patches", "--atlas-patches", 0)):
            if getattr(self, name) < low:
                raise UsageError(f"{option} must be at least {low}, got {getattr(self, name)}")
        if not 0 <= self.min_dist <= 1:
            raise UsageError(f"--umap-min-dist must be between 0 and 1, got {self.min_dist}")
        if self.icon_batch_size is not None and self.icon_batch_size < 1:
            raise UsageError(f"--icon-batch-size must be at least 1, got {self.icon_batch_size}")
        self.icons(0, None).check()

    def layout(self, seed: int):
        from microscope.atlas.compute import AtlasSettings
        from microscope.atlas.layout import LayoutSettings

        return AtlasSettings(layout=LayoutSettings(n_neighbors=self.neighbours, min_dist=self.min_dist, seed=seed),
                             coarse=self.grid, fine=2 * self.grid)

    def cells(self, seed: int):
        from microscope.atlas.cells import CellSettings

        return CellSettings(attribution_vectors=self.attribution_vectors, patches=self.patches, seed=seed)

    def icons(self, seed: int, device):
        from microscope.atlas.icons import IconSettings

        batch = self.icon_batch_size or (128 if getattr(device, "type", "cpu") == "cuda" else 16)
        return IconSettings(size=self.icon_size, steps=self.icon_steps, batch_size=batch, seed=seed)


@dataclass
class NoGrid:
    """What the page of a layer without positions (the logits) says instead of an atlas."""

    layer: str
    note: str = "No activation atlas: this layer has no spatial grid (one vector per image, no positions to sample)."


class AtlasView(View):
    name = "atlas"
    title = "Activation atlas"
    level = "layer"
    needs = ("network", "images")
    in_build = False
    budget = {}

    def options(self):
        return [
            click.option("--grid", default=20, show_default=True, type=int,
                         help="Atlas cells per side at the top level (the zoomed level has twice as many)."),
            click.option("--umap-neighbours", "neighbours", default=50, show_default=True, type=int,
                         help="UMAP n_neighbors of the atlas layout."),
            click.option("--umap-min-dist", "min_dist", default=0.05, show_default=True, type=float,
                         help="UMAP min_dist of the atlas layout."),
            click.option("--icon-size", default=96, show_default=True, type=int, help="Atlas icon size in pixels."),
            click.option("--icon-steps", default=128, show_default=True, type=int,
                         help="Optimisation steps of each atlas icon."),
            click.option("--icon-batch-size", default=None, type=int, help="Icons rendered at once (default 16 on CPU, 128 on GPU)."),
            click.option("--attribution-vectors", default=8, show_default=True, type=int,
                         help="Vectors per cell whose class attribution is computed."),
            click.option("--atlas-patches", "patches", default=4, show_default=True, type=int,
                         help="Photos (receptive-field patches) shown per cell."),
        ]

    def settings(self, values: dict) -> Settings:
        defaults = Settings()
        return Settings(**{name: values.get(name, getattr(defaults, name)) for name in (
            "grid", "neighbours", "min_dist", "icon_size", "icon_steps", "icon_batch_size", "attribution_vectors",
            "patches")})

    def default_settings(self) -> Settings:
        return Settings()

    def applies(self, layer) -> bool:
        return False

    # Plan and run --------------------------------------------------------------------------------

    def layers_of(self, request, session) -> list[str]:
        """The request's layers an atlas can be made of: the model's own layers with a grid."""
        network = session.network()
        return [name for name in request.layers
                if network.derived_key(name) is None and network.layer(name).kind != "logits"]

    def check(self, request, session) -> None:
        from microscope.atlas.compute import needed_vectors, sample_of

        if request.images is None:
            raise UsageError("an atlas shows photos and their class attributions; pass --images DIR (the images "
                             "its dataset examples were computed from)")
        network = session.network()
        for name in request.layers:
            if network.layer(name).kind == "logits":
                raise UsageError(f"{name} has no spatial grid, so it has no activation atlas; choose a conv or "
                                 "block layer, e.g. inception_4c")
        layers = self.layers_of(request, session)
        if not layers:
            raise UsageError("none of the chosen layers can have an atlas (SAE features have no sample of their own); "
                             "choose conv or block layers, e.g. inception_4c")
        settings: Settings = request.settings[self.name]
        if "examples" in request.views:
            return  # the sample is drawn by this very run
        images = {"folder": str(request.images.folder), "labels": request.images.labels, "sample": request.images.sample}
        for name in layers:
            sample, _ = sample_of(session.store, network.spec.name, name)
            same_images(session, session.store, network.spec.name, name, images)
            needed = needed_vectors(settings.grid)
            if len(sample.keys) < needed:
                raise UsageError(f"the atlas sample of {name} has {len(sample.keys)} vectors, too few for a "
                                 f"{settings.grid} x {settings.grid} grid; it needs at least {needed} (more images, "
                                 f"or a smaller --grid)")

    def plan(self, request, session) -> ViewPlan:
        from microscope.atlas.compute import layout_key
        from microscope.atlas.stored import icons_key, is_current, stage_key
        from microscope.store import AtlasResult, ExamplesResult

        settings: Settings = request.settings[self.name]
        network, store = session.network(), session.store
        model, seed = network.spec.name, request.run.seed
        after = self.examples_jobs(request, session)
        jobs, done, todo = [], 0, 0
        for layer in self.layers_of(request, session):
            layout, cells, icons = settings.layout(seed), settings.cells(seed), settings.icons(seed, network.device)
            spec = {"layer": layer, "layout": asdict(layout), "cells": asdict(cells), "icons": asdict(icons),
                    "images": {"folder": str(request.images.folder), "labels": request.images.labels,
                               "sample": request.images.sample}}
            examples = store.read(store.result_file(model, layer), ExamplesResult)
            stamp = examples.files.get(store.atlas_vectors_file(model, layer).name) if examples else None
            found = store.read(store.atlas_result_file(model, layer), AtlasResult)
            current = found is not None and stamp is not None and found.key == layout_key(stamp, layout) \
                and not after.get(layer)
            cells_key = stage_key(found.key, network.weights_id, cells) if current else None
            if current and is_current(store, model, layer, "cells", cells_key) and is_current(
                    store, model, layer, "icons", icons_key(found.key, network.weights_id, asdict(icons), cells_key)):
                done += 1
                continue
            first = make_job(self.name, "layout", layer, spec, after=after.get(layer, ()), gpu=False)
            second = make_job(self.name, "cells", layer, spec, after=[first.key], work=100)
            slices = [make_job(self.name, "icons", layer, {**spec, "level": level, "first": start, "last": stop},
                               after=[second.key], work=icons.steps * batches)
                      for level, start, stop, batches in icon_slices(store, model, layer, settings, icons, current)]
            last = make_job(self.name, "collect", layer, spec, after=[job.key for job in slices], gpu=False)
            jobs += [first, second, *slices, last]
            todo += 1
        return ViewPlan(jobs, todo=todo, done=done, what="atlases")

    @staticmethod
    def examples_jobs(request, session) -> dict[str, tuple[str, ...]]:
        """layer -> keys of this run's examples jobs that finish its sample (none if it is stored). The sample
        is what the built-in examples view's pass writes, so this asks that view, not the registry."""
        from microscope.views.examples import VIEW as EXAMPLES

        if "examples" not in request.views:
            return {}
        found: dict[str, list[str]] = {}
        for job in EXAMPLES.plan(request, session).jobs:
            if job.step == "finish":
                found.setdefault(job.layer, []).append(job.key)
        return {layer: tuple(keys) for layer, keys in found.items()}

    def run(self, job, session, report) -> None:
        from microscope.atlas.cells import CellSettings
        from microscope.atlas.compute import AtlasSettings, lay_out
        from microscope.atlas.describe import describe
        from microscope.atlas.icons import IconSettings, collect_icons, render_slice
        from microscope.featurevis.batch import featurevis_extractor
        from microscope.atlas.layout import LayoutSettings
        from microscope.store import AtlasStage

        network, store, spec = session.network(), session.store, job.spec
        model, layer = network.spec.name, spec["layer"]
        if job.step == "layout":
            layout = AtlasSettings(**{**spec["layout"], "layout": LayoutSettings(**spec["layout"]["layout"])})
            lay_out(store, model, layer, layout)
            report(1)
        elif job.step == "cells":
            dataset = same_images(session, store, model, layer, spec["images"])
            describe(network, dataset, store, model, layer, CellSettings(**spec["cells"]), percent(report))
        else:
            cells = store.read(store.atlas_stage_file(model, layer, "cells"), AtlasStage)
            if cells is None:
                raise UsageError(f"the atlas cells of {layer} are missing; run `build.py atlas` again")
            icons = IconSettings(**spec["icons"])
            if job.step == "icons":
                extractor = session.memo(("featurevis extractor", layer), lambda: featurevis_extractor(network, [layer]))
                render_slice(network, extractor, store, model, layer, icons, cells, spec["level"], spec["first"],
                             spec["last"], report)
            else:
                collect_icons(store, model, layer, network.weights_id, icons, cells)

    # The site ------------------------------------------------------------------------------------

    def read(self, store, model, layer) -> AtlasData | NoGrid | None:
        from microscope.atlas.stored import read_atlas

        if layer.kind == "logits":
            return NoGrid(layer.name)
        return read_atlas(store, model.name, layer.name)

    def layer_panel(self, data, page) -> Panel | None:
        from microscope.atlas.page import layer_panel

        if isinstance(data, NoGrid):
            return Panel(data={"note": data.note}, json={})
        return layer_panel(data, page)

    def layer_json(self, data) -> dict:
        if isinstance(data, NoGrid):
            return {"note": data.note}
        result = data.result
        return {"n_vectors": result.n_vectors, "sizes": result.sizes, "layout": result.layout,
                "cells": {level: len(cells.row) for level, cells in data.cells.items()},
                "icons": data.icons.settings, "cells_settings": data.cells_stage.settings}


def icon_slices(store, model: str, layer: str, settings: Settings, icons, laid_out: bool) -> list[tuple]:
    """(level, first, last, batches) of each icons job. The cells a level shows are known once the
    layout is stored; before, its slices cover every cell of the grid (those past the end render
    nothing) and their work is a guess: half the cells shown."""
    from microscope.atlas.icons import slice_cells
    from microscope.store import AtlasLayout

    layout = store.read(store.atlas_layout_file(model, layer), AtlasLayout) if laid_out else None
    per_slice, found = slice_cells(icons.batch_size), []
    for level, side in (("coarse", settings.grid), ("fine", 2 * settings.grid)):
        count = getattr(layout, f"count_{level}", None)
        shown = side * side if count is None else int((count > settings.layout(0).min_count).sum())
        for first in range(0, shown, per_slice):
            cells = min(shown, first + per_slice) - first
            found.append((level, first, first + per_slice, -(-cells // (icons.batch_size * (2 if count is None else 1)))))
    return found


def percent(report):
    """report(done, total) as whole percent of a job planned as 100 units of work."""
    told = [0]

    def tell(done: int, total: int) -> None:
        now = 100 * done // max(total, 1)
        if now > told[0]:
            report(now - told[0])
            told[0] = now
    return tell


def same_images(session, store, model: str, layer: str, images: dict):
    """The photos the layer's atlas sample was drawn from, seen as its examples pass saw them; one line if
    `images` are other photos."""
    from microscope.data.images import ImageDataset, View as ImageView
    from microscope.store import ExamplesResult

    examples = store.read(store.result_file(model, layer), ExamplesResult)
    if examples is None:
        raise UsageError(f"{layer} has no dataset examples in {store.root}; compute them first")
    view = ImageView(examples.view.resize, examples.view.crop)
    dataset = session.memo(("atlas images", images["folder"], images["labels"], images["sample"], view),
                           lambda: ImageDataset(images["folder"], labels=images["labels"], view=view,
                                                sample=images["sample"]))
    if examples.dataset.fingerprint != dataset.fingerprint():
        raise UsageError(f"the atlas sample of {layer} was drawn from other images ({examples.dataset.name}) than "
                         f"{images['folder']}; pass the --images its dataset examples were computed from")
    return dataset


VIEW = AtlasView()
