"""The dataset examples view: for every channel, the images and patches of a dataset that excite it most.

One pass over the images serves every layer asked for; its jobs are described step by step in
microscope/examples/steps.py (index, pass shards, summaries, patch chunks, finish). A layer is
recomputed only when its result.json is missing, damaged, or was made from other inputs (model,
weights, images, labels, view, k, settings). The pass runs as one shard here; shards of any size
merge exactly into the same result, which is what lets other executors spread it out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from microscope.errors import UsageError
from microscope.jobs import hash_json, make_job
from microscope.data.packs import read_patch_index
from microscope.store import DatasetIndex, ExamplesResult, PassShard, Store
from microscope.store import PATCHES
from microscope.store.typed import to_json
from microscope.view import Panel, UnitPage, View, ViewPlan

if TYPE_CHECKING:
    from microscope.examples.config import ExampleSettings

CALIBRATE_FROM = 8  # batches of the pass: below that a timed batch would cost too much of the work
VIEW_SIZE = (224, 224)  # resize, crop: the square the model sees of every photo


@dataclass(frozen=True)
class Settings:
    top_k: int = 48
    image_batch_size: int = 32
    workers: int | None = None  # image decoding processes; default up to 4
    shards: int | None = None  # parts of the pass, each one job (None: as many as the executor runs at once)
    checkpoint_every: int = 50  # batches
    view: tuple[int, int] = VIEW_SIZE  # resize, crop
    examples: ExampleSettings | None = None  # patch sizes, bands, histogram bins...; None: the defaults

    def __post_init__(self):
        for name, least in (("top_k", 1), ("image_batch_size", 1), ("checkpoint_every", 1)):
            if getattr(self, name) < least:
                option = {"top_k": "--top", "image_batch_size": "--image-batch-size"}.get(name, name)
                raise UsageError(f"{option} must be at least {least}, got {getattr(self, name)}")
        if self.shards is not None and self.shards < 1:
            raise UsageError(f"--shards must be at least 1, got {self.shards}")
        if self.workers is not None and self.workers < 0:
            raise UsageError(f"number of loader workers must be 0 or more, got {self.workers}")


class ExamplesView(View):
    name = "examples"
    title = "Dataset examples"
    needs = ("network", "images")
    missing = "No dataset examples were computed for this layer (run with --images)."
    budget = {"48 top patches (56 px strip)": 37_700, "bottom and band samples (cropped from the shared photos)": 0}

    def options(self):
        return [
            click.option("--top", "top_k", default=48, show_default=True, type=click.IntRange(min=1),
                         help="Dataset examples kept per unit."),
            click.option("--image-batch-size", default=32, show_default=True, type=click.IntRange(min=1),
                         help="Images per batch of the dataset pass."),
            click.option("--workers", default=None, type=click.IntRange(min=0),
                         help="Image decoding processes (default: up to 4)."),
            click.option("--atlas-vectors", default=100_000, show_default=True, type=click.IntRange(min=0),
                         help="Activation vectors sampled per layer for its activation atlas (0: none)."),
            click.option("--shards", default=None, type=click.IntRange(min=1),
                         help="Parts of the dataset pass, each a job of its own, merged exactly (default: 1 here, "
                              "one per parallel job slot of a Ray cluster)."),
        ]

    def settings(self, values: dict) -> Settings:
        from microscope.examples.config import ExampleSettings

        return Settings(top_k=values["top_k"], image_batch_size=values["image_batch_size"],
                        workers=values["workers"], shards=values.get("shards"),
                        examples=ExampleSettings(atlas_vectors=values.get("atlas_vectors", 100_000)))

    def default_settings(self) -> Settings:
        return Settings()

    # Plan and run --------------------------------------------------------------------------------

    def check(self, request, session) -> None:
        if request.images is not None:
            request_images(request, session)  # an empty folder, a bad CSV: said now

    def plan(self, request, session) -> ViewPlan:
        from microscope.examples.config import ExampleSettings, identity
        from microscope.examples.steps import PassPlan, shard_ranges

        if request.images is None:
            return ViewPlan([], what="layers")
        settings: Settings = request.settings.get(self.name) or Settings()
        examples = settings.examples or ExampleSettings()
        network, store = session.network(), session.store
        images = request_images(request, session)
        model = network.spec.name
        results = {}
        for layer in request.layers:
            found = identity(network, images, layer, settings.top_k, examples)
            results[layer] = {"key": hash_json(found, digits=32), "identity": found}
        todo = [layer for layer in request.layers if not is_current(store, model, layer, results[layer]["key"])]
        current = [layer for layer in request.layers if layer not in todo]
        if not todo:
            return ViewPlan(thumbs_jobs(request, store, model, images, current), todo=0, done=len(request.layers),
                            what="layers")
        batch = settings.image_batch_size
        plan = PassPlan(model=model, fingerprint=images.fingerprint(), folder=str(request.images.folder),
                        labels=request.images.labels, sample=request.images.sample, view=tuple(settings.view),
                        key=hash_json({"results": [results[layer]["key"] for layer in todo], "batch_size": batch}),
                        layers=tuple(todo), results={layer: results[layer] for layer in todo},
                        shards=tuple(shard_ranges(len(images), settings.shards or request.slots, batch)), top_k=settings.top_k,
                        settings=examples.as_json(), batch_size=batch, workers=settings.workers,
                        checkpoint_every=settings.checkpoint_every)
        session.memo(("dataset", plan.fingerprint, plan.view), lambda: images)
        jobs = pass_jobs(store, plan)
        jobs += thumbs_jobs(request, store, model, images, current, after=[job.key for job in jobs])
        return ViewPlan(jobs, todo=len(todo), done=len(request.layers) - len(todo), what="layers")

    def run(self, job, session, report) -> None:
        from microscope.examples import steps

        if job.step == "thumbs":
            return steps.repair_thumbs(session, job.spec)
        plan = steps.PassPlan.from_spec(job.spec)
        if job.step == "index":
            steps.write_index(session.store, plan.model, scanned(session, plan), plan.example_settings())
        elif job.step == "pass":
            steps.run_pass(session, plan, job.spec["first"], job.spec["last"], report)
        elif job.step == "summary":
            steps.summarize(session, plan, job.layer)
        elif job.step == "patches":
            steps.cut(session, plan, job.spec["chunk"])
        elif job.step == "release":
            steps.release(session, plan)
        elif job.step == "finish":
            steps.finish(session, plan, job.layer)
        elif job.step == "clean":
            steps.clean(session, plan)
        else:
            raise ValueError(f"unknown examples step {job.step!r}")

    def estimate(self, plan, request, session) -> float | None:
        """The pass: one timed forward batch and a few decoded images, scaled to the images it reads;
        the patches: the same decoding again for the images they cut from."""
        from microscope.examples import steps
        from microscope.jobs import usable_cpus
        from microscope.data.images import default_workers

        passes = [job for job in plan.jobs if job.step == "pass"]
        if not passes:  # thumbnails to write again: quick
            return None
        pass_plan = steps.PassPlan.from_spec(passes[0].spec)
        images = sum(job.spec["last"] - job.spec["first"] for job in passes)
        if images < CALIBRATE_FROM * pass_plan.batch_size:  # the calibration would cost too much of the work
            return None
        forward, decode = pass_costs(session, pass_plan)
        decoders = max(1, pass_plan.workers if pass_plan.workers is not None else default_workers())
        cut = sum(job.work for job in plan.jobs if job.step == "patches")
        return images * (forward + decode / decoders) + cut * decode / max(1, usable_cpus())

    # The site ------------------------------------------------------------------------------------

    def read(self, store, model, layer):
        from microscope.examples.panel import read_examples

        return read_examples(store, model, layer)

    def units(self, data) -> set[int]:
        return set(range(data.summary.channels))

    def facts(self, data, unit: int) -> dict:
        best = float(data.summary.top_values[unit, 0]) if unit < data.summary.channels else math.nan
        return {"dataset_max": best} if math.isfinite(best) and best > 0 else {}

    def unit_panel(self, data, unit: int, page: UnitPage) -> Panel:
        from microscope.examples.panel import unit_panel

        return unit_panel(data, unit, page)

    def layer_json(self, data) -> dict:
        result = to_json(data.result)
        return {key: result[key] for key in ("model", "weights_id", "layer", "dataset", "view", "top_k", "n_images",
                                             "skipped", "histogram_of", "patches")}

    def finish_model(self, state: dict, incremental: bool) -> None:
        for photos in state.get("photos", {}).values():
            photos.save(keep_old=incremental)


def request_images(request, session):
    """The request's images, as the examples view sees them (scanned once per session)."""
    from microscope.data.images import ImageDataset, View as ImageView

    settings: Settings = request.settings.get("examples") or Settings()

    def scan():
        found = ImageDataset(request.images.folder, labels=request.images.labels, view=ImageView(*settings.view),
                             sample=request.images.sample)
        if len(found) >= 2**31:
            raise UsageError(f"{len(found)} images is more than the examples view indexes (2**31 - 1); split the folder")
        return found
    return session.memo(("request images", request.images, tuple(settings.view)), scan)


def pass_jobs(store: Store, plan) -> list:
    """The jobs of one pass, in the order described in microscope/examples/steps.py."""
    spec = {"pass": to_json(plan)}
    per_pack = plan.example_settings().pack_images
    n_images = plan.shards[-1][1]
    index = make_job("examples", "index", "", spec, gpu=False)
    passes = []
    for first, last in plan.shards:
        if not shard_done(store, plan, first, last):
            passes.append(make_job("examples", "pass", "", {**spec, "first": first, "last": last},
                                   after=[index.key], work=math.ceil((last - first) / plan.batch_size)))
    shard_keys = [make_job("examples", "pass", "", {**spec, "first": f, "last": l}).key for f, l in plan.shards]
    summaries = [make_job("examples", "summary", layer, spec, after=[index.key, *shard_keys], gpu=False)
                 for layer in plan.layers]
    chunks = [make_job("examples", "patches", "", {**spec, "chunk": chunk}, after=[s.key for s in summaries],
                       work=min(per_pack, n_images - chunk * per_pack), fan_out=True)
              for chunk in range(math.ceil(n_images / per_pack))]
    release = make_job("examples", "release", "", spec, after=[c.key for c in chunks] + [s.key for s in summaries],
                       gpu=False)
    finishes = [make_job("examples", "finish", layer, spec, after=[release.key], gpu=False) for layer in plan.layers]
    clean = make_job("examples", "clean", "", spec, after=[f.key for f in finishes], gpu=False)
    return [index, *passes, *summaries, *chunks, release, *finishes, clean]


def pass_costs(session, plan, samples: int = 8) -> tuple[float, float]:
    """Seconds per image of the pass's forward (one warm-up batch, one timed) and of decoding one image
    (`samples` images spread over the dataset)."""
    import time

    import torch

    network, dataset = session.network(), scanned(session, plan)
    crop = plan.view[1]
    batch = torch.rand(plan.batch_size, 3, crop, crop, device=network.device)
    layers = list(plan.layers)
    with torch.no_grad():
        network.activations(batch[:2], layers)
        began = time.perf_counter()
        network.activations(batch, layers)
        if network.device.type == "cuda":
            torch.cuda.synchronize(network.device)
        forward = (time.perf_counter() - began) / plan.batch_size
    chosen = sorted({int(i) for i in torch.linspace(0, len(dataset) - 1, samples).tolist()})
    began = time.perf_counter()
    for index in chosen:
        dataset.load(index)
    return forward, (time.perf_counter() - began) / len(chosen)


def thumbs_jobs(request, store: Store, model: str, images, layers: list[str], after=()) -> list:
    """A "thumbs" job if the complete layers' dataset index or any thumbnail they show needs writing again."""
    from microscope.examples import thumbs
    from microscope.examples.config import ExampleSettings

    settings: Settings = request.settings.get("examples") or Settings()
    fingerprint = images.fingerprint()
    wanted = sorted(thumbs.needed(store, model, layers))
    index_ok = store.read(store.dataset_file(model, fingerprint), DatasetIndex) is not None
    damaged = thumbs.to_write(store, model, fingerprint, wanted)  # (each damaged one said, in one line)
    if not layers or (index_ok and not damaged):
        return []
    spec = {"model": model, "fingerprint": fingerprint, "folder": str(request.images.folder),
            "labels": request.images.labels, "sample": request.images.sample, "view": list(settings.view),
            "settings": (settings.examples or ExampleSettings()).as_json(), "indices": wanted}
    return [make_job("examples", "thumbs", "", spec, after=after, work=max(1, len(wanted)), gpu=False)]


def shard_done(store: Store, plan, first: int, last: int) -> bool:
    record = store.read(store.shard_file(plan.model, plan.key, first, last), PassShard)
    if record is None:
        return False
    info = record.info()
    return info["key"] == plan.key and info["batches"] == info["total"] and info["layers"] == list(plan.layers)


def scanned(session, plan):
    """The pass's dataset as the planning process saw it, or scanned again and checked."""
    from microscope.data.images import ImageDataset, View as ImageView

    def scan():
        dataset = ImageDataset(plan.folder, labels=plan.labels, view=ImageView(*plan.view), sample=plan.sample)
        if dataset.fingerprint() != plan.fingerprint:
            raise UsageError(f"the images in {plan.folder} changed since the build was planned; run it again")
        return dataset
    return session.memo(("dataset", plan.fingerprint, plan.view), scan)


def is_current(store: Store, model: str, layer: str, key: str) -> bool:
    """Whether the layer's stored examples were made from these inputs and are intact."""
    path = store.result_file(model, layer)
    result = store.read(path, ExamplesResult)
    if result is None or result.key != key:
        return False
    damaged = False
    for name, stamp in result.files.items():  # every damaged file said, though one is enough to recompute
        problem = stamp.problem(path.parent / name)
        if problem:
            store.damaged(path.parent / name, problem)
            damaged = True
    packs = {name.split("/", 1)[1]: stamp for name, stamp in result.files.items() if name.startswith(f"{PATCHES}/")}
    packed = read_patch_index(store, store.patches_dir(model, layer), packs) is not None  # each pack against its index
    return packed and not damaged


VIEW = ExamplesView()
