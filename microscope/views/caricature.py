"""The caricature view's compute half: for a set of photos, each chosen layer's caricatures and DeepDreams.

One job per layer (the photos batched), writing the photo as the network saw it, its caricature and its DeepDream
(PNG) and then the layer's `CaricatureResult`. A layer is made again only when its record is missing, damaged,
or was made from other photos, weights or numbers (its `key`). The photos: --photos DIR, or a few of --images
chosen by caricature/photos.py's rule. The show half (the layer page's gallery and the model page's strip) is
microscope/caricature/panel.py.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from microscope.caricature.dream import deepdream
from microscope.caricature.measure import measure
from microscope.caricature.optimise import caricature_seeds, caricatures
from microscope.caricature.panel import IMAGES, SHOWN, images_intact
from microscope.caricature.photos import MAX_PHOTOS, Photo, dataset_photos, folder_photos
from microscope.caricature.recipe import TOP_UNITS, CaricatureRecipe, DeepDreamRecipe
from microscope.data.images import Framing, load_rgb
from microscope.errors import UsageError
from microscope.featurevis.batch import element_seed, featurevis_extractor
from microscope.featurevis.recipe import NO_TRANSFORMS, RECIPES
from microscope.featurevis.render import resolve_precision
from microscope.jobs import hash_json, make_job
from microscope.settings import Settings, setting
from microscope.store import CaricaturePhoto, CaricatureResult
from microscope.store.files import atomic_write_bytes, image_bytes
from microscope.view import Computed, ViewPlan
from microscope.views.examples import request_images

CALIBRATE_FROM = 100  # steps of work: below that a calibration would cost too much of it


@dataclass(frozen=True)
class CaricatureSettings(Settings):
    photos: str | None = setting(None, "--photos", "Caricatures and DeepDreams: a folder of photos (default: "
                                 "--photo-count photos of --images, one per class spread over the classes).",
                                 keyed=False, metavar="DIR")
    photo_count: int = setting(6, "--photo-count", "Caricatures and DeepDreams: photos chosen from --images.",
                               low=1, high=MAX_PHOTOS)
    caricature_recipe: str = setting("lucid", "--caricature-recipe", "Caricatures: the feature-vis recipe of their "
                                     "images (lucid, or fast: a quarter of the steps).", choices=tuple(RECIPES))
    caricature_steps: int | None = setting(None, "--caricature-steps", "Caricatures: optimisation steps (default: "
                                           "the recipe's, 512 for lucid as Lucid's, 128 for fast).", low=1)
    caricature_cossim_pow: float = setting(CaricatureRecipe.cossim_pow, "--caricature-cossim-pow",
                                           "Caricatures: the power of the cosine in dot * cos^p (0, Lucid's: the "
                                           "bare dot product, which exaggerates).", low=0, high=16)
    deepdream_steps: int = setting(DeepDreamRecipe.steps, "--deepdream-steps",
                                   "DeepDreams: gradient steps per octave (4 octaves).", low=1)
    caricature_size: int | None = setting(None, "--caricature-size", "Caricatures and DeepDreams: side of the "
                                          "square the network sees (default: the model's input size).", low=32)

    def recipes(self) -> tuple[CaricatureRecipe, int, DeepDreamRecipe]:
        recipe = CaricatureRecipe.named(self.caricature_recipe, self.caricature_cossim_pow)
        steps = self.caricature_steps or recipe.image.default_steps
        return recipe, steps, DeepDreamRecipe().with_steps(self.deepdream_steps)


class CaricatureView(Computed):
    shown = SHOWN
    settings_type = CaricatureSettings
    needs = ("network",)

    def check(self, request, session) -> None:
        settings: CaricatureSettings = request.settings[self.name]
        alone = request.views == (self.name,)
        if settings.photos is not None:
            _check_photos_folder(settings.photos, request)
        elif request.images is None and alone:
            raise UsageError("caricatures and DeepDreams need photos; pass --photos DIR (or --images DIR: "
                             f"{settings.photo_count} of its photos are chosen)")
        grid, flat = self.layers_of(request, session)
        if flat and alone and not grid:
            raise UsageError(f"{flat[0]} has no spatial grid, so it has no caricature; choose a conv or block "
                             "layer, e.g. inception_4c")
        self.photos(request, session)  # a folder with no readable photo: said now

    def layers_of(self, request, session) -> tuple[list[str], list[str]]:
        """(the request's layers with a spatial grid at the caricature size, those without)."""
        network = session.network()
        size = self.size(request, session)
        grid, flat = [], []
        for name in request.layers:
            shape = session.memo(("caricature shape", name, size), lambda n=name: _shape(network, n, size))
            (grid if shape is not None and len(shape) == 4 else flat).append(name)
        return grid, flat

    def size(self, request, session) -> int:
        settings: CaricatureSettings = request.settings[self.name]
        return settings.caricature_size or session.network().spec.preprocessing.crop

    def photos(self, request, session) -> list[Photo]:
        settings: CaricatureSettings = request.settings[self.name]
        if settings.photos is not None:
            return session.memo(("caricature photos", settings.photos), lambda: folder_photos(settings.photos))
        if request.images is None:
            return []
        classes = list(session.network().spec.categories)
        return session.memo(("caricature photos", request.images, settings.photo_count, request.run.seed),
                            lambda: dataset_photos(request_images(request, session), settings.photo_count,
                                                   request.run.seed, classes))

    def plan(self, request, session) -> ViewPlan:
        settings: CaricatureSettings = request.settings[self.name]
        network, store = session.network(), session.store
        photos = self.photos(request, session)
        grid, flat = self.layers_of(request, session)
        notes = [f"caricatures: {', '.join(flat)} {'has' if len(flat) == 1 else 'have'} no spatial grid, left out"] \
            if flat else []
        if not photos:
            return ViewPlan([], what="", notes=notes + ["no caricatures or DeepDreams: they need photos (--photos DIR, "
                                                         "or --images DIR)"])
        recipe, steps, dream = settings.recipes()
        size = self.size(request, session)
        autocast = resolve_precision("auto", network.device)
        jobs, done = [], 0
        for layer in grid:
            spec = {"model": network.spec.name, "weights_id": network.weights_id, "derived": network.derived_key(layer),
                    "layer": layer, "size": size, "seed": request.run.seed,
                    "precision": "fp32" if autocast is None else "bf16", "steps": steps,
                    "caricature": recipe.as_dict(), "deepdream": dream.as_dict(),
                    "photos": [asdict(photo) for photo in photos]}
            if _is_made(store, spec):
                done += 1
                continue
            work = steps + dream.steps * len(dream.sides(size))
            jobs.append(make_job(self.name, "images", layer, spec, work=work, pieces=1))
        return ViewPlan(jobs, todo=len(jobs), done=done, what="layers", notes=notes)

    def run(self, job, session, report) -> None:
        spec, network = job.spec, session.network()
        photos = [Photo(**photo) for photo in spec["photos"]]
        recipe, dream = CaricatureRecipe.from_dict(spec["caricature"]), DeepDreamRecipe.from_dict(spec["deepdream"])
        layer, seed, device = spec["layer"], spec["seed"], network.device
        autocast = resolve_precision(spec["precision"], device)
        extractor = session.memo(("featurevis extractor", layer), lambda: featurevis_extractor(network, [layer]))
        framing = Framing(resize=spec["size"], crop=spec["size"])
        seen = np.stack([framing.tensor(load_rgb(photo.path)).permute(1, 2, 0).numpy() for photo in photos])
        x = torch.from_numpy(seen).permute(0, 3, 1, 2).float().div(255).to(device)
        seeds = caricature_seeds(seed, layer, [photo.key for photo in photos])
        made = caricatures(extractor, layer, x, recipe, spec["steps"], seeds,
                           element_seed(seed, "caricature transforms"), autocast, on_step=lambda: report(1))
        dreams = deepdream(extractor, layer, x, dream, element_seed(seed, layer, "deepdream"), autocast,
                           on_step=lambda: report(1))
        images = {"photo": seen, "caricature": made.pixels, "deepdream": dreams}
        measured = measure(extractor, layer, images, device, TOP_UNITS)
        write_result(session.store, spec, photos, images, measured)

    def estimate(self, plan, request, session) -> float | None:
        """A few real steps of each layer's job, scaled to its steps (transforms enlarge the image a little)."""
        if sum(job.work for job in plan.jobs) < CALIBRATE_FROM:
            return None
        return sum(_job_seconds(job, session) for job in plan.jobs)

    def store_bytes(self, job, session) -> int:
        side = job.spec["size"]
        return len(job.spec["photos"]) * len(IMAGES) * (side * side * 3 + 1024) + 64 * 1024


def result_key(spec: dict) -> str:
    """What the layer's images depend on: everything in the job's spec but where the photos are and their names."""
    photos = [{"key": photo["key"], "label": photo["label"]} for photo in spec["photos"]]
    return hash_json({**spec, "photos": photos}, digits=24)


def _is_made(store, spec: dict) -> bool:
    path = store.caricature_result_file(spec["model"], spec["layer"])
    record = store.read(path, CaricatureResult)
    return record is not None and record.key == result_key(spec) and images_intact(store, path, record)


def write_result(store, spec: dict, photos: list[Photo], images: dict, measured) -> None:
    """The images, then the record (last: it says they are complete). No timings: the same job gives the same
    bytes, so a killed build resumes to the store an unbroken one makes."""
    model, layer = spec["model"], spec["layer"]
    folder = store.caricature_dir(model, layer)
    files = {}
    for kind in IMAGES:
        for row, photo in enumerate(photos):
            path = store.caricature_image_file(model, layer, photo.key, kind)
            data = image_bytes(Image.fromarray(images[kind][row]), ".png")
            files[store.file_key(path, folder)] = atomic_write_bytes(path, data)
    entries = [CaricaturePhoto(
        photo=photo.key, name=photo.name, label=photo.label, cosine=float(measured.cosines[i, i]),
        cosines=[float(v) for v in measured.cosines[i]], norm_photo=float(measured.norms["photo"][i]),
        norm_caricature=float(measured.norms["caricature"][i]), norm_deepdream=float(measured.norms["deepdream"][i]),
        top_photo=measured.top["photo"][i], top_caricature=measured.top["caricature"][i],
        top_deepdream=measured.top["deepdream"][i]) for i, photo in enumerate(photos)]
    store.write(store.caricature_result_file(model, layer), CaricatureResult(
        key=result_key(spec), model=model, weights_id=spec["weights_id"], layer=layer, size=spec["size"],
        seed=spec["seed"], precision=spec["precision"], caricature={**spec["caricature"], "steps": spec["steps"]},
        deepdream=spec["deepdream"], photos=entries, files=files))


def _shape(network, layer: str, size: int) -> tuple[int, ...] | None:
    """The layer's activation shape at `size` px, or None where it cannot be computed at that size."""
    with torch.no_grad():
        try:
            return tuple(network.activations(torch.zeros(1, 3, size, size), [layer])[layer].shape)
        except RuntimeError:
            return None


def _check_photos_folder(folder: str, request) -> None:
    """--photos: an existing readable folder, apart from the store and the site (a site's stale files are deleted,
    and photos inside the store or site would be overwritten or published)."""
    path = Path(folder)
    if not path.is_dir():
        raise UsageError(f"--photos {folder} is not a folder; pass a folder of photos")
    if not os.access(path, os.R_OK | os.X_OK):
        raise UsageError(f"--photos {folder} is not readable; give this user read access or pass another folder")
    here = path.resolve()
    for option, other in (("--out", request.run.paths.out), ("--store", request.run.paths.store)):
        if other is None:
            continue
        other = Path(other).resolve()
        if here == other or other in here.parents or here in other.parents:
            raise UsageError(f"--photos {folder} and {option} {other} overlap (one is inside the other); "
                             "give them separate folders")


def _job_seconds(job, session) -> float:
    """Seconds of a layer's job: the median of three timed caricature steps without transforms, scaled to its
    caricature steps (transforms enlarge the image a little) and to its DeepDream steps (their pixels)."""
    spec, network = job.spec, session.network()
    layer, size = spec["layer"], spec["size"]
    extractor = session.memo(("featurevis extractor", layer), lambda: featurevis_extractor(network, [layer]))
    recipe = CaricatureRecipe.from_dict(spec["caricature"])
    plain = replace(recipe, image=replace(recipe.image, transforms=NO_TRANSFORMS, polish_share=0.0))
    photos = torch.full((len(spec["photos"]), 3, size, size), 0.5, device=network.device)
    marks = []
    autocast = resolve_precision(spec["precision"], network.device)
    caricatures(extractor, layer, photos, plain, 4, list(range(len(photos))), 0, autocast,
                on_step=lambda: marks.append(time.perf_counter()))
    step = float(np.median(np.diff(marks)))
    dream = DeepDreamRecipe.from_dict(spec["deepdream"])
    pixels = sum(side * side for side in dream.sides(size)) / (size * size)
    # a dream step is a caricature step without the photos' forward pass: about two thirds of one
    return step * spec["steps"] * 1.1 + step * 2 / 3 * dream.steps * pixels


VIEW = CaricatureView()
