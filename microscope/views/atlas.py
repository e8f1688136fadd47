"""The activation atlas view's compute half: the space a layer uses on real photos, one zoomable page per layer.

Its jobs per layer, after the dataset examples (whose pass draws the sample of activation vectors):
`layout` (UMAP and the two grids, atlas/compute.py), `cells` (nearest units, class attribution and
patches of every shown cell, atlas/describe.py), `icons` (a feature visualization of each cell's
mean, atlas/icons.py; one job per slice of about 32 cells, so a cluster renders them side by side)
and `collect` (icons.json, once every slice is stored). Each stage keys its record on everything before
it, so a new sample, new settings or new weights recompute exactly the stages they change.

`build` does not make atlases (`in_build = False`): a layer's atlas is about as much compute as its
unit renders; `build.py atlas --layers ... --images DIR` makes them after a `build` (or `examples`) run with
`--atlas-vectors N`, which draws the sample (none is drawn unless asked), and later builds
and `site` show them. On the site: a panel on the layer page links to `<layer>/atlas/`, a page of
its own (the show half, atlas/page.py, writes it; templates/atlas.html, static/atlas.js).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from microscope.atlas.cells import CellSettings
from microscope.atlas.compute import GridSettings, lay_out, layout_key, needed_vectors, sample_of
from microscope.atlas.describe import describe
from microscope.atlas.icons import IconSettings, collect_icons, render_slice, slice_cells
from microscope.atlas.layout import LayoutSettings
from microscope.atlas.page import SHOWN
from microscope.atlas.stored import icons_key, is_current, stage_key
from microscope.data.images import ImageDataset, Framing
from microscope.errors import UsageError
from microscope.examples.config import ATLAS_SAMPLE
from microscope.featurevis.batch import featurevis_extractor
from microscope.jobs import make_job
from microscope.settings import Settings, setting
from microscope.store import AtlasLayout, AtlasResult, AtlasStage, ExamplesResult
from microscope.view import Computed, ViewPlan
from microscope.views.examples import VIEW as EXAMPLES


@dataclass(frozen=True)
class AtlasSettings(Settings):
    """The atlas command's settings. Each changes what is stored: the layout (grid, n_neighbors, min_dist),
    the cells (attribution_vectors, patches) or the icons (icon_size, icon_steps, icon_batch_size: the icons
    are stored in batches of that size)."""

    grid: int = setting(20, "--grid", "Atlas cells per side at the top level (the zoomed level has twice as many).",
                        low=1)
    n_neighbors: int = setting(50, "--n-neighbors", "UMAP n_neighbors of the atlas layout.", low=2,
                               old=("--umap-neighbours",))
    min_dist: float = setting(0.05, "--min-dist", "UMAP min_dist of the atlas layout.", low=0, high=1,
                              old=("--umap-min-dist",))
    icon_size: int = setting(96, "--icon-size", "Atlas icon size in pixels.")
    icon_steps: int = setting(128, "--icon-steps", "Optimisation steps of each atlas icon.", low=1)
    icon_batch_size: int | None = setting(None, "--icon-batch-size",
                                          "Icons rendered at once (default 16 on CPU, 128 on GPU).", low=1)
    attribution_vectors: int = setting(8, "--attribution-vectors",
                                       "Vectors per cell whose class attribution is computed.", low=1)
    # `patches`, as CellSettings stores it; the flag says "atlas" because `examples` shares the command line
    patches: int = setting(4, "--atlas-patches", "Photos (receptive-field patches) shown per cell.", low=0)

    def __post_init__(self):
        super().__post_init__()
        self.icons(0, None).check()  # an icon too small to show anything (the hint names Lucid's sizes)

    def layout(self, seed: int) -> GridSettings:
        return GridSettings(layout=LayoutSettings(n_neighbors=self.n_neighbors, min_dist=self.min_dist, seed=seed),
                            coarse=self.grid, fine=2 * self.grid)

    def cells(self, seed: int) -> CellSettings:
        return CellSettings(attribution_vectors=self.attribution_vectors, patches=self.patches, seed=seed)

    def icons(self, seed: int, device) -> IconSettings:
        batch = self.icon_batch_size or (128 if getattr(device, "type", "cpu") == "cuda" else 16)
        return IconSettings(size=self.icon_size, steps=self.icon_steps, batch_size=batch, seed=seed)


class AtlasView(Computed):
    shown = SHOWN
    settings_type = AtlasSettings
    needs = ("network", "images")
    in_build = False

    def layers_of(self, request, session) -> list[str]:
        """The request's layers an atlas can be made of: the model's own layers with a grid."""
        network = session.network()
        return [name for name in request.layers
                if network.derived_key(name) is None and network.layer(name).kind != "logits"]

    def check(self, request, session) -> None:
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
        settings: AtlasSettings = request.settings[self.name]
        if "examples" in request.views:  # the sample is drawn by this very run, if it is asked for
            if not request.settings["examples"].atlas_vectors:
                raise UsageError(f"an atlas is made from a sample its dataset examples draw; add --atlas-vectors "
                                 f"{ATLAS_SAMPLE} (none is drawn unless asked)")
            return
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
        settings: AtlasSettings = request.settings[self.name]
        network, store = session.network(), session.store
        model, seed = network.spec.name, request.run.seed
        after = self.examples_jobs(request, session)
        jobs, done, todo = [], 0, 0
        for layer in self.layers_of(request, session):
            layout, cells, icons = settings.layout(seed), settings.cells(seed), settings.icons(seed, network.device)
            spec = {"layer": layer, "layout": asdict(layout), "cells": asdict(cells), "icons": asdict(icons),
                    "images": {"folder": str(request.images.folder), "labels": request.images.labels,
                               "sample": request.images.sample}}
            examples = store.read(store.examples_result_file(model, layer), ExamplesResult)
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
            last = make_job(self.name, "collect", layer, spec, after=[job.key for job in slices], gpu=False, pieces=1)
            jobs += [first, second, *slices, last]
            todo += 1
        return ViewPlan(jobs, todo=todo, done=done, what="atlases")

    @staticmethod
    def examples_jobs(request, session) -> dict[str, tuple[str, ...]]:
        """layer -> keys of this run's examples jobs that finish its sample (none if it is stored). The sample
        is what the built-in examples view's pass writes, so this asks that view, not the registry."""
        if "examples" not in request.views:
            return {}
        found: dict[str, list[str]] = {}
        for job in EXAMPLES.plan(request, session).jobs:
            if job.step == "finish":
                found.setdefault(job.layer, []).append(job.key)
        return {layer: tuple(keys) for layer, keys in found.items()}

    def run(self, job, session, report) -> None:
        network, store, spec = session.network(), session.store, job.spec
        model, layer = network.spec.name, spec["layer"]
        if job.step == "layout":
            layout = GridSettings(**{**spec["layout"], "layout": LayoutSettings(**spec["layout"]["layout"])})
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


def icon_slices(store, model: str, layer: str, settings: AtlasSettings, icons, laid_out: bool) -> list[tuple]:
    """(level, first, last, batches) of each icons job. The cells a level shows are known once the
    layout is stored; before, its slices cover every cell of the grid (those past the end render
    nothing) and their work is a guess: half the cells shown."""
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
    examples = store.read(store.examples_result_file(model, layer), ExamplesResult)
    if examples is None:
        raise UsageError(f"{layer} has no dataset examples in {store.root}; compute them first")
    view = Framing(examples.view.resize, examples.view.crop)
    dataset = session.memo(("atlas images", images["folder"], images["labels"], images["sample"], view),
                           lambda: ImageDataset(images["folder"], labels=images["labels"], view=view,
                                                sample=images["sample"]))
    if examples.dataset.fingerprint != dataset.fingerprint():
        raise UsageError(f"the atlas sample of {layer} was drawn from other images ({examples.dataset.name}) than "
                         f"{images['folder']}; pass the --images its dataset examples were computed from")
    return dataset


VIEW = AtlasView()
