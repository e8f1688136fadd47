"""The feature visualization view: for every unit, images optimised to excite it (Lucid's recipe).

Jobs: one per batch of units and objective ("render"), each writing the units' images and then one
`RenderRecord` per unit and objective (featurevis/<unit>/<objective>.json), which says the render
is done. A unit is rendered again only when its record is missing, damaged, or holds another
configuration (model, weights, recipe, seed, steps, size, precision, format). The unit page shows
the channel objective large and the others small, each with how much more it excites the unit than
the best dataset image does - a number only the site can compute, where both results are known.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import click

from microscope.errors import UsageError
from microscope.featurevis.registry import UNIT_OBJECTIVES
from microscope.featurevis.recipe import PRECISIONS, RECIPES, Recipe
from microscope.jobs import make_job
from microscope.selection import objectives_type, parse_objectives
from microscope.store import RenderConfig, RenderImage, RenderRecord, Store
from microscope.store.typed import from_json, to_json
from microscope.view import Panel, Thumb, UnitPage, View, ViewPlan

CALIBRATE_FROM = 100  # steps of work: below that the calibration's few steps would cost too much of it
MIN_SIZE = 32  # below this the deepest layers of the zoo shrink to nothing
IMAGE_FORMATS = ("png", "webp")


@dataclass(frozen=True)
class Settings:
    objectives: tuple[str, ...] = tuple(UNIT_OBJECTIVES)
    steps: int | None = None  # None: the recipe's own (512 for Lucid's, 128 for the fast one)
    size: int = 224
    batch_size: int | None = None  # units per batch; default 8 on a CPU, 64 on a GPU
    image_format: str = "png"
    precision: str = "auto"
    recipe: Recipe = field(default_factory=Recipe)

    def __post_init__(self):
        if self.steps is None:
            object.__setattr__(self, "steps", self.recipe.default_steps)
        parse_objectives(",".join(self.objectives), UNIT_OBJECTIVES)
        if self.steps < 1:
            raise UsageError(f"--steps must be a positive number of optimisation steps, not {self.steps}")
        if self.size < MIN_SIZE:
            raise UsageError(f"--size {self.size} is too small; use at least {MIN_SIZE} px (Microscope uses 224)")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"--batch-size must be positive, not {self.batch_size}")
        if self.image_format not in IMAGE_FORMATS:
            raise UsageError(f"unknown image format {self.image_format!r}; use png or webp")
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {self.precision!r}; use one of: {', '.join(PRECISIONS)}")


@dataclass
class LayerRenders:
    """A layer's stored renders: unit -> objective -> record (only records whose files check out)."""

    folder: Path
    units: dict[int, dict[str, RenderRecord]]


class FeatureVisView(View):
    name = "featurevis"
    title = "Feature visualization"
    needs = ("network",)
    missing = "No feature visualizations were computed for this layer (run the featurevis stage)."
    budget = {"channel render (224 px, q85)": 23_800, "neuron + negative (112 px)": 9_400,
              "4 diversity renders (112 px)": 18_400, "grid thumbnail (96 px)": 3_200}

    def options(self):
        return [
            click.option("--objectives", default=",".join(UNIT_OBJECTIVES), show_default=True,
                         type=objectives_type(UNIT_OBJECTIVES), help=f"Comma-separated, of: {', '.join(UNIT_OBJECTIVES)}."),
            click.option("--recipe", "recipe_name", default="lucid", show_default=True, type=click.Choice(list(RECIPES)),
                         help="Feature-vis recipe: Lucid's, or 'fast' (a quarter of the compute, as strong; "
                              "see the README)."),
            click.option("--steps", default=None, type=click.IntRange(min=1),
                         help="Feature-vis optimisation steps (default: the recipe's, 512 for lucid, 128 for fast)."),
            click.option("--size", default=224, show_default=True, type=click.IntRange(min=MIN_SIZE),
                         help="Feature-vis image size in pixels."),
            click.option("--batch-size", default=None, type=click.IntRange(min=1),
                         help="Units rendered at once (default: 8 on CPU, 64 on GPU)."),
            click.option("--format", "image_format", default="png", show_default=True,
                         type=click.Choice(IMAGE_FORMATS), help="Image format of stored renders."),
        ]

    def settings(self, values: dict) -> Settings:
        objectives = values["objectives"]
        if isinstance(objectives, str):  # a caller other than the command line
            objectives = parse_objectives(objectives, UNIT_OBJECTIVES)
        name = values.get("recipe_name") or "lucid"
        if name not in RECIPES:
            raise UsageError(f"unknown recipe {name!r}; use one of: {', '.join(RECIPES)}")
        recipe = RECIPES[name]
        return Settings(objectives=tuple(objectives), steps=values.get("steps"),
                        size=values["size"], batch_size=values["batch_size"], image_format=values["image_format"],
                        recipe=recipe)

    def default_settings(self) -> Settings:
        return Settings()

    # Plan and run --------------------------------------------------------------------------------

    def check(self, request, session) -> None:
        from microscope.network.catalogue import catalogue
        from microscope.featurevis.render import resolve_precision

        settings: Settings = request.settings[self.name]
        network = session.network()
        resolve_precision(settings.precision, network.device)
        for info in catalogue(network, list(request.layers)):
            request.units.resolve(info.channels, info.name)
            _check_size(network, info.name, settings.size)

    def plan(self, request, session):
        from microscope.featurevis.batch import optimised_layer
        from microscope.featurevis.render import resolve_precision

        settings: Settings = request.settings[self.name]
        network, store = session.network(), session.store
        model = network.spec.name
        autocast = resolve_precision(settings.precision, network.device)
        batch_size = settings.batch_size or (64 if network.device.type == "cuda" else 8)
        catalogue = store.read_model(model)
        jobs, reused, todo_count = [], 0, 0
        for layer in request.layers:
            units = request.units.resolve(catalogue.layer(layer).channels, layer)
            config = RenderConfig(model=model, weights_id=network.weights_id, layer=layer,
                                  optimised_layer=optimised_layer(network, layer), recipe=settings.recipe.as_dict(),
                                  seed=request.run.seed, steps=settings.steps, size=settings.size,
                                  precision="fp32" if autocast is None else "bf16", image_format=settings.image_format,
                                  derived=network.derived_key(layer))
            for start in range(0, len(units), batch_size):
                chunk = units[start:start + batch_size]
                for name in settings.objectives:
                    objective = UNIT_OBJECTIVES[name]
                    todo = [u for u in chunk if not is_rendered(store, config, u, name)]
                    reused += len(chunk) - len(todo)
                    todo_count += len(todo)
                    per_batch = max(1, batch_size // objective.images(settings.recipe))
                    for i in range(0, len(todo), per_batch):
                        spec = {"config": to_json(config), "objective": name, "units": todo[i:i + per_batch]}
                        jobs.append(make_job(self.name, "render", layer, spec, work=settings.steps))
        return ViewPlan(jobs, todo=todo_count, done=reused, what="renders")

    def run(self, job, session, report) -> None:
        from microscope.featurevis.batch import render_batch

        config, extractor, batch = _job_batch(job, session)
        rendered = render_batch(session.network(), extractor, batch, on_step=lambda: report(1))
        write_renders(session.store, config, batch, rendered)

    def estimate(self, plan, request, session) -> float | None:
        """A few real steps of each layer's (and size's) largest batch, scaled to every job's steps and
        elements (a step's time grows with the images in the batch)."""
        from microscope.featurevis.batch import step_seconds

        if sum(job.work for job in plan.jobs) < CALIBRATE_FROM:
            return None
        calibrated: dict[tuple, tuple[float, int]] = {}  # (layer, size) -> (seconds per step, elements)
        for job in sorted(plan.jobs, key=lambda job: -_elements(job)):
            key = (job.layer, job.spec["config"]["size"])
            if key not in calibrated:
                _, extractor, batch = _job_batch(job, session)
                calibrated[key] = (step_seconds(session.network(), extractor, batch), _elements(job))
        return sum(job.work * calibrated[key][0] * _elements(job) / calibrated[key][1]
                   for job in plan.jobs for key in [(job.layer, job.spec["config"]["size"])])

    # The site ------------------------------------------------------------------------------------

    def read(self, store, model, layer) -> LayerRenders | None:
        folder = store.featurevis_dir(model.name, layer.name)
        if not folder.is_dir():
            return None
        units: dict[int, dict[str, RenderRecord]] = {}
        for unit, path in store.render_files(model.name, layer.name):
            record = store.read(path, RenderRecord)
            if record is None or record.unit != unit:
                continue
            if all(image.stamp.problem(path.parent / image.file) is None for image in record.images):
                units.setdefault(record.unit, {})[record.objective] = record
            else:
                store.damaged(path.parent, f"a render of {record.objective} is missing or changed")
        return LayerRenders(folder, units) if units else None

    def units(self, data: LayerRenders) -> set[int]:
        return set(data.units)

    def unit_panel(self, data: LayerRenders, unit: int, page: UnitPage) -> Panel:
        from microscope.web import charts
        from microscope.web.images import SIZES, render_webp

        records = data.units.get(unit)
        if not records:
            return Panel(data={"renders": []}, json={}, provenance=[])
        folder = data.folder / str(unit)
        best = page.facts.get("dataset_max")  # the unit's best dataset example (examples view)
        renders, thumb = [], None
        for record in sorted(records.values(), key=lambda r: _order(r.objective)):
            for image in record.images:
                name = Path(image.file).stem
                big = name == "channel"
                side, quality = (SIZES.hero, SIZES.hero_quality) if big else (SIZES.render, SIZES.render_quality)
                source = folder / image.file
                meta = page.produce(f"{name}.webp", [source], {"side": side, "quality": quality},
                                    lambda s=source, d=side, q=quality: render_webp(s, d, q))
                curve = [-v for v in image.loss_curve]
                renders.append({"objective": name, "file": f"{name}.webp", "width": meta["width"],
                                "height": meta["height"], "value": image.objective_final,
                                "ratio": image.activation_max / best if best else None,
                                "spark": charts.sparkline(curve)})
                if thumb is None:
                    thumb = Thumb(source, 0, "feature visualization")
        config = next(iter(records.values())).config
        json_block = {
            "renders": {r["objective"]: r["file"] for r in renders},
            "objective_final": {r["objective"]: r["value"] for r in renders},
            "activation_ratio": {r["objective"]: r["ratio"] for r in renders if r["ratio"] is not None},
            "config": {k: v for k, v in to_json(config).items() if k != "recipe"},
            "recipe": config.recipe,
        }
        itself = config.optimised_layer == config.layer and page.layer.kind in ("conv", "block")
        line = (f"Feature visualizations: recipe {config.recipe.get('name', 'lucid')} "
                f"({config.recipe.get('version')}), seed {config.seed}, "
                f"{config.steps} steps at {config.size} px, optimising {config.optimised_layer}"
                + (" itself: the graph has no pre-ReLU value of this layer (a branch without a ReLU), so a "
                   "unit that is zero on the starting image gets no gradient." if itself else "."))
        return Panel(data={"renders": renders}, json=json_block, provenance=[line],
                     settings={"featurevis": {**to_json(config), "objectives": sorted(records)}}, thumb=thumb,
                     summary={"featurevis": {r["objective"]: r["file"] for r in renders}})

    def layer_json(self, data: LayerRenders) -> dict:
        some = next(iter(next(iter(data.units.values())).values()))
        return {"config": to_json(some.config), "units": len(data.units)}


def _job_batch(job, session):
    """A render job's config, the network truncated for it (kept in the session), and its batch."""
    from microscope.featurevis.batch import UnitBatch, featurevis_extractor
    from microscope.featurevis.render import resolve_precision

    network = session.network()
    config = from_json(RenderConfig, job.spec["config"])
    layers = [config.optimised_layer, config.layer] if config.optimised_layer != config.layer else [config.layer]
    extractor = session.memo(("featurevis extractor", *layers), lambda: featurevis_extractor(network, layers))
    autocast = resolve_precision("bf16" if config.precision == "bf16" else "fp32", network.device)
    batch = UnitBatch(config.layer, config.optimised_layer, UNIT_OBJECTIVES[job.spec["objective"]],
                      tuple(job.spec["units"]), config.steps, config.size, config.seed,
                      Recipe.from_dict(config.recipe), autocast)
    return config, extractor, batch


def _elements(job) -> int:
    """Images a render job optimises at once."""
    objective = UNIT_OBJECTIVES[job.spec["objective"]]
    return len(job.spec["units"]) * objective.images(Recipe.from_dict(job.spec["config"]["recipe"]))


def _order(objective: str) -> tuple:
    names = list(UNIT_OBJECTIVES)
    return (names.index(objective), objective) if objective in names else (len(names), objective)


def _check_size(network, layer: str, size: int) -> None:
    import torch

    with torch.no_grad():
        try:
            network.activations(torch.zeros(1, 3, size, size), [layer])
        except RuntimeError as error:
            raise UsageError(f"layer {layer} cannot be computed at {size} px ({str(error).splitlines()[0]}); "
                             "use a larger --size") from None


def is_rendered(store: Store, config: RenderConfig, unit: int, objective: str) -> bool:
    """Whether the store holds this unit's render of `objective` made with `config`, intact."""
    path = store.render_file(config.model, config.layer, unit, objective)
    record = store.read(path, RenderRecord)
    if record is None or record.config != config:
        return False
    expected = UNIT_OBJECTIVES[objective].files(Recipe.from_dict(config.recipe), config.image_format)
    if [image.file for image in record.images] != expected:
        return False
    for image in record.images:
        problem = image.stamp.problem(path.parent / image.file)
        if problem:
            store.damaged(path.parent / image.file, problem)
            return False
    return True


def write_renders(store: Store, config: RenderConfig, batch, rendered) -> None:
    """Each unit's images, then its record (last: the record says the images are complete)."""
    from PIL import Image

    from microscope.store.files import atomic_write_bytes, image_bytes

    recipe = batch.recipe
    per_unit = batch.objective.images(recipe)
    steps = rendered.values.shape[0]
    curve_steps = sorted(set(range(0, steps, recipe.curve_every)) | {steps - 1})
    save_args = {"lossless": True} if config.image_format == "webp" else {}
    for position, unit in enumerate(batch.units):
        folder = store.unit_dir(config.model, config.layer, unit)
        images = []
        for i, name in enumerate(batch.objective.files(recipe, config.image_format)):
            row = position * per_unit + i
            data = image_bytes(Image.fromarray(rendered.pixels[row]), Path(name).suffix, **save_args)
            images.append(RenderImage(
                file=name, stamp=atomic_write_bytes(folder / name, data),
                objective_final=float(rendered.values[-1, row]),
                loss_curve=[float(-rendered.values[step, row]) for step in curve_steps],
                activation_mean=float(rendered.activation_mean[row]),
                activation_max=float(rendered.activation_max[row])))
        store.write(store.render_file(config.model, config.layer, unit, batch.objective.name),
                    RenderRecord(unit=unit, objective=batch.objective.name, config=config,
                                 loss_curve_steps=curve_steps, images=images))


VIEW = FeatureVisView()
