"""The feature visualization view's compute half: for every unit, images optimised to excite it (Lucid's
recipe).

Jobs: one per batch of units and objective ("render"), each writing the units' images and then one
`RenderRecord` per unit and objective (featurevis/<unit>/<objective>.json), which says the render
is done. A unit is rendered again only when its record is missing, damaged, or holds another
configuration (model, weights, recipe, seed, steps, size, precision, format). The show half (the unit
panel) is microscope/featurevis/panel.py, the reading of stored renders microscope/featurevis/stored.py.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from PIL import Image

from microscope.errors import UsageError
from microscope.featurevis.batch import UnitBatch, featurevis_extractor, optimised_layer, render_batch, step_seconds
from microscope.featurevis.compiled import COMPILE_CHOICES, compiled_extractor, compiles
from microscope.featurevis.panel import SHOWN
from microscope.featurevis.recipe import PRECISIONS, RECIPES, Recipe
from microscope.featurevis.registry import DEFAULT_OBJECTIVES, UNIT_OBJECTIVES
from microscope.featurevis.render import resolve_precision
from microscope.featurevis.sizing import measured_batch_size
from microscope.featurevis.stored import is_rendered
from microscope.jobs import make_job
from microscope.network.catalogue import catalogue
from microscope.selection import parse_objectives
from microscope.settings import Settings, setting
from microscope.store import RenderConfig, RenderImage, RenderRecord, Store
from microscope.store.files import atomic_write_bytes, image_bytes
from microscope.store.typed import from_json, to_json
from microscope.view import Computed, ViewPlan

CALIBRATE_FROM = 100  # steps of work: below that the calibration's few steps would cost too much of it
MIN_SIZE = 32  # below this the deepest layers of the zoo shrink to nothing
IMAGE_FORMATS = ("png", "webp")


@dataclass(frozen=True)
class FeatureVisSettings(Settings):
    """What to render and how: `recipe` names one of RECIPES (`chosen_recipe` is the recipe itself)."""

    objectives: tuple[str, ...] = setting(
        DEFAULT_OBJECTIVES, "--objectives", f"Comma-separated, of: {', '.join(UNIT_OBJECTIVES)} (default: "
        f"{','.join(DEFAULT_OBJECTIVES)}).",
        parse=lambda text: parse_objectives(text, UNIT_OBJECTIVES), metavar="OBJECTIVES")
    recipe: str = setting("lucid", "--recipe", "Feature-vis recipe: Lucid's, or 'fast' (a quarter of the compute, "
                          "as strong; see the README).", choices=tuple(RECIPES))
    steps: int | None = setting(None, "--steps", "Feature-vis optimisation steps (default: the recipe's, 512 for "
                                "lucid, 128 for fast).", low=1)
    size: int = setting(224, "--size", "Feature-vis image size in pixels.", low=MIN_SIZE)
    batch_size: int | None = setting(None, "--batch-size", "Images optimised at once (default: 8 on CPU; on a GPU "
                                     "the most whose step fits in half its memory, measured per layer, up to 512).",
                                     low=1, keyed=False)
    compile: str = setting("off", "--compile", "Compile the network of feature-vis renders with torch.compile "
                           "(tens of seconds per layer and image size; see bench/gpu.py).", choices=COMPILE_CHOICES,
                           keyed=False)
    image_format: str = setting("png", "--image-format", "Image format of stored renders.", choices=IMAGE_FORMATS,
                                old=("--format",))
    # The network's precision while optimising (PRECISIONS). No flag: "auto" takes bf16 on CUDA and fp32
    # elsewhere (render.resolve_precision); the stored record says which was used.
    precision: str = "auto"

    def __post_init__(self):
        super().__post_init__()
        parse_objectives(",".join(self.objectives), UNIT_OBJECTIVES)  # a tuple given by a caller other than click
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {self.precision!r}; use one of: {', '.join(PRECISIONS)}")

    @property
    def chosen_recipe(self) -> Recipe:
        """The recipe `recipe` names: every number of the optimisation."""
        return RECIPES[self.recipe]

    @property
    def steps_to_run(self) -> int:
        """`steps`, or the recipe's own when none was given (512 for lucid, 128 for fast)."""
        return self.chosen_recipe.default_steps if self.steps is None else self.steps


class FeatureVisView(Computed):
    shown = SHOWN
    settings_type = FeatureVisSettings
    needs = ("network",)

    def check(self, request, session) -> None:
        settings: FeatureVisSettings = request.settings[self.name]
        network = session.network()
        resolve_precision(settings.precision, network.device)
        for info in catalogue(network, list(request.layers)):
            request.units.resolve(info.channels, info.name)
            _check_size(network, info.name, settings.size)

    def plan(self, request, session):
        settings: FeatureVisSettings = request.settings[self.name]
        network, store = session.network(), session.store
        model = network.spec.name
        autocast = resolve_precision(settings.precision, network.device)
        recipe, steps = settings.chosen_recipe, settings.steps_to_run
        model_record = store.read_model(model)
        compiled = compiles(settings.compile, network.device)
        jobs, reused, todo_count = [], 0, 0
        for layer in request.layers:
            units = request.units.resolve(model_record.layer(layer).channels, layer)
            # The stored configuration says what made a render, in its own terms (the recipe's numbers,
            # the steps run, the precision used), not in the settings' (a recipe's name, "auto").
            config = RenderConfig(model=model, weights_id=network.weights_id, layer=layer,
                                  optimised_layer=optimised_layer(network, layer), recipe=recipe.as_dict(),
                                  seed=request.run.seed, steps=steps, size=settings.size,
                                  precision="fp32" if autocast is None else "bf16", image_format=settings.image_format,
                                  derived=network.derived_key(layer))
            for name in settings.objectives:
                objective_config = _for_objective(config, recipe, name)
                missing = {u for u in units if not is_rendered(store, objective_config, u, name)}
                reused += len(units) - len(missing)
                todo_count += len(missing)
                if not missing:
                    continue  # nothing to cut: a finished layer costs no measurement of its batch size
                batch_size = settings.batch_size or _batch_size(session, config, model_record.layer(layer).channels)
                # Batches are cut from the whole unit list, and a partly stored batch is rendered whole (only
                # its missing units written): a unit's pixels depend on the batch it shares (its kernels'
                # summation order), so a resumed build must batch it exactly as an unbroken one did.
                per_batch = max(1, batch_size // UNIT_OBJECTIVES[name].images(recipe))
                for start in range(0, len(units), per_batch):
                    batch = units[start:start + per_batch]
                    write = [u for u in batch if u in missing]
                    if write:
                        spec = {"config": to_json(objective_config), "objective": name, "units": batch, "write": write}
                        if compiled:  # only then: the jobs' keys (their spec's hash) stay as they were elsewhere
                            spec["compile"] = True
                        jobs.append(make_job(self.name, "render", layer, spec, work=steps, pieces=len(write)))
        return ViewPlan(jobs, todo=todo_count, done=reused, what="renders")

    def run(self, job, session, report) -> None:
        config, extractor, batch = _job_batch(job, session)
        step_extractor = None
        if job.spec.get("compile"):  # one compiled module per extractor, kept: its compiled shapes are reused
            key = ("featurevis compiled", config.optimised_layer, config.layer)
            step_extractor = session.memo(key, lambda: compiled_extractor(extractor))
        rendered = render_batch(session.network(), extractor, batch, on_step=lambda: report(1),
                                step_extractor=step_extractor)
        write_renders(session.store, config, batch, rendered, only=job.spec.get("write"))

    def estimate(self, plan, request, session) -> float | None:
        """A few real steps of each layer's (and size's) largest batch, scaled to every job's steps and
        elements (a step's time grows with the images in the batch)."""
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

    def store_bytes(self, job, session) -> int:
        """Each image written at its raw RGB size (a render compresses little) and each unit's record (its
        curves); a batch resumed whole writes only its missing units."""
        size = job.spec["config"]["size"]
        written = len(job.spec.get("write", job.spec["units"]))
        planes = 4 if UNIT_OBJECTIVES[job.spec["objective"]].transparent else 3
        return _elements(job) * written // len(job.spec["units"]) * (size * size * planes + 1024) + written * 4096


def _for_objective(config: RenderConfig, recipe: Recipe, name: str) -> RenderConfig:
    """The layer's configuration as an objective's renders record it: a transparent objective's recipe
    carries the transparency numbers too (the other objectives' records stay as they always were)."""
    if not UNIT_OBJECTIVES[name].transparent:
        return config
    return replace(config, recipe=recipe.as_dict(transparent=True))


def _job_batch(job, session):
    """A render job's config, the network truncated for it (kept in the session), and its batch."""
    config = from_json(RenderConfig, job.spec["config"])
    return config, _extractor(session, config), _unit_batch(session, config, job.spec["objective"],
                                                           tuple(job.spec["units"]))


def _extractor(session, config: RenderConfig):
    """The network truncated after the config's layers, made once per session."""
    network = session.network()
    layers = [config.optimised_layer, config.layer] if config.optimised_layer != config.layer else [config.layer]
    return session.memo(("featurevis extractor", *layers), lambda: featurevis_extractor(network, layers))


def _unit_batch(session, config: RenderConfig, objective: str, units: tuple[int, ...]) -> UnitBatch:
    autocast = resolve_precision("bf16" if config.precision == "bf16" else "fp32", session.network().device)
    return UnitBatch(config.layer, config.optimised_layer, UNIT_OBJECTIVES[objective], units, config.steps,
                     config.size, config.seed, Recipe.from_dict(config.recipe), autocast)


def _batch_size(session, config: RenderConfig, channels: int) -> int:
    """Images per batch for a layer's renders (featurevis/sizing.py): measured once per layer, size and
    precision in a session (two real steps on CUDA), like the estimate's calibration."""
    network = session.network()
    key = ("featurevis batch size", config.layer, config.optimised_layer, config.size, config.precision)
    return session.memo(key, lambda: measured_batch_size(
        network, _extractor(session, config), _unit_batch(session, config, "channel", (0,)), channels))


def _elements(job) -> int:
    """Images a render job optimises at once."""
    objective = UNIT_OBJECTIVES[job.spec["objective"]]
    return len(job.spec["units"]) * objective.images(Recipe.from_dict(job.spec["config"]["recipe"]))


def _check_size(network, layer: str, size: int) -> None:
    with torch.no_grad():
        try:
            network.activations(torch.zeros(1, 3, size, size), [layer])
        except RuntimeError as error:
            raise UsageError(f"layer {layer} cannot be computed at {size} px ({str(error).splitlines()[0]}); "
                             "use a larger --size") from None


def write_renders(store: Store, config: RenderConfig, batch, rendered, only=None) -> None:
    """Each unit's images, then its record (last: the record says the images are complete); `only` names
    the units to write when the rest of the batch is already stored."""
    recipe = batch.recipe
    per_unit = batch.objective.images(recipe)
    steps = rendered.values.shape[0]
    curve_steps = sorted(set(range(0, steps, recipe.curve_every)) | {steps - 1})
    # `exact`: keep the colour under transparent pixels (libwebp would otherwise change it to compress better).
    save_args = {"lossless": True, "exact": True} if config.image_format == "webp" else {}
    for position, unit in enumerate(batch.units):
        if only is not None and unit not in only:
            continue
        folder = store.renders_dir(config.model, config.layer, unit)
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
