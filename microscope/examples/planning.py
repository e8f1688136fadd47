"""The plan of the examples view, all of it: which layers' stored examples are current (stored.py), one
pass over the images for the others (a PassPlan: its key, its shards, and its jobs in the order steps.py
runs them, a shard already stored skipped), a "thumbs" job for the complete layers whose dataset index
or thumbnails need writing again, and the time of the plan on this machine (a short calibration).

steps.py does what each job says; views/examples.py hands this module its settings (ExamplesSettings)
and the request's scanned images.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from microscope.data.images import ImageDataset, Framing, default_workers
from microscope.errors import UsageError
from microscope.examples import thumbs
from microscope.examples.config import SAMPLE_FIELDS, SummarySettings, identity
from microscope.examples.stored import is_current
from microscope.examples.stream import Shard, pass_work
from microscope.jobs import Job, hash_json, make_job, usable_cpus
from microscope.store import DatasetIndex, ExamplesResult, PassShard, Store
from microscope.store.typed import to_json
from microscope.view import ViewPlan

CALIBRATE_FROM = 8  # batches of the pass: below that a timed batch would cost too much of the work


@dataclass(frozen=True)
class PassPlan:
    """What every job of one pass knows (the spec its jobs share), as plain data."""

    model: str
    fingerprint: str
    folder: str
    labels: str | None  # the --labels value the dataset was opened with
    sample: int | None  # the --image-sample value (None: every image)
    view: tuple[int | None, int]  # resize, crop
    key: str  # the pass: its layers' result keys and the batching
    layers: tuple[str, ...]
    results: dict  # layer -> {"key", "identity"}
    shards: tuple[tuple[int, int], ...]
    top_k: int
    settings: dict  # SummarySettings.as_json()
    batch_size: int
    workers: int | None
    checkpoint_every: int

    @classmethod
    def from_spec(cls, spec: dict) -> "PassPlan":
        data = dict(spec["pass"])
        data["view"] = tuple(data["view"])
        data["layers"] = tuple(data["layers"])
        data["shards"] = tuple(tuple(s) for s in data["shards"])
        return cls(**data)

    def summary_settings(self) -> SummarySettings:
        return SummarySettings.from_json(self.settings)

    def shard(self, store: Store, first: int, last: int) -> Shard:
        return Shard(self.key, self.layers, first, last, store.shard_file(self.model, self.key, first, last))


def plan(request, session, settings, images: ImageDataset) -> ViewPlan:
    """The jobs of the request's layers: a pass for those whose stored examples are not current, a thumbnails
    repair for the others. `settings`: the view's ExamplesSettings; `images`: the request's, scanned."""
    network, store = session.network(), session.store
    model, summary = network.spec.name, settings.summary_settings()
    results = {}
    for layer in request.layers:
        found = identity(network, images, layer, settings.top_k, summary)
        results[layer] = with_sample(store, model, layer, {"key": hash_json(found, digits=32), "identity": found})
    todo = [layer for layer in request.layers if not is_current(store, model, layer, results[layer]["key"])]
    jobs = []
    if todo:
        pass_plan = new_pass(request, settings, model, images, {layer: results[layer] for layer in todo},
                             network.device)
        session.memo(("dataset", pass_plan.fingerprint, pass_plan.view), lambda: images)
        jobs = pass_jobs(store, pass_plan)
    current = [layer for layer in request.layers if layer not in todo]
    jobs += thumbs_jobs(store, model, images, request.images, settings.view, summary, current,
                        after=[job.key for job in jobs])
    return ViewPlan(jobs, todo=len(todo), done=len(request.layers) - len(todo), what="layers")


def with_sample(store: Store, model: str, layer: str, wanted: dict) -> dict:
    """The stored result's key and identity where it is the wanted one plus an atlas sample (a build that does
    not ask for a sample keeps the one an earlier run drew, instead of computing the layer again); else `wanted`."""
    if wanted["identity"]["settings"]["atlas_vectors"]:
        return wanted
    stored = store.read(store.examples_result_file(model, layer), ExamplesResult)
    if stored is None or not isinstance(stored.identity.get("settings"), dict):
        return wanted
    without = {**stored.identity, "settings": {**stored.identity["settings"], **{
        name: wanted["identity"]["settings"][name] for name in SAMPLE_FIELDS}}}
    if hash_json(without, digits=32) != wanted["key"]:
        return wanted
    return {"key": stored.key, "identity": stored.identity}


def new_pass(request, settings, model: str, images: ImageDataset, results: dict, device=None) -> PassPlan:
    """The pass that computes the layers of `results` (layer -> {"key", "identity"}), cut into as many
    shards as --shards says (default: as many as the executor runs at once), on `device`'s batches."""
    batch = settings.image_batch_size or default_batch(device)
    return PassPlan(model=model, fingerprint=images.fingerprint(), folder=str(request.images.folder),
                    labels=request.images.labels, sample=request.images.sample, view=tuple(settings.view),
                    key=hash_json({"results": [found["key"] for found in results.values()], "batch_size": batch}),
                    layers=tuple(results), results=results,
                    shards=tuple(shard_ranges(len(images), settings.shards or request.slots, batch)),
                    top_k=settings.top_k, settings=settings.summary_settings().as_json(), batch_size=batch,
                    workers=settings.workers, checkpoint_every=settings.checkpoint_every)


def default_batch(device) -> int:
    """Images per batch of the pass when --image-batch-size is not given. On CUDA a batch's forward takes a few
    milliseconds and the accumulators' updates launch about the same number of kernels whatever its size:
    larger batches share that out (results do not depend on the batch size, see stream.py)."""
    return 256 if getattr(device, "type", "cpu") == "cuda" else 32


def shard_ranges(n_images: int, shards: int, batch_size: int) -> list[tuple[int, int]]:
    """`shards` ranges of whole batches covering the images (a batch never spans two shards)."""
    batches = math.ceil(n_images / batch_size)
    per_shard = math.ceil(batches / max(1, shards)) * batch_size
    return [(first, min(n_images, first + per_shard)) for first in range(0, n_images, per_shard)] or [(0, 0)]


def pass_jobs(store: Store, plan: PassPlan) -> list[Job]:
    """The jobs of one pass, in the order described in microscope/examples/steps.py."""
    spec = {"pass": to_json(plan)}
    per_pack = plan.summary_settings().pack_images
    n_images = plan.shards[-1][1]
    index = make_job("examples", "index", "", spec, gpu=False)
    passes = []
    for first, last in plan.shards:
        if not shard_done(store, plan, first, last):
            passes.append(make_job("examples", "pass", "", {**spec, "first": first, "last": last},
                                   after=[index.key], work=math.ceil((last - first) / plan.batch_size)))
    shard_keys = [make_job("examples", "pass", "", {**spec, "first": f, "last": l}).key for f, l in plan.shards]
    summaries = [make_job("examples", "summary", layer, spec, after=[index.key, *shard_keys], fan_out=True)
                 for layer in plan.layers]  # CPU work, a process per layer where there are cores (see steps.py)
    chunks = [make_job("examples", "patches", "", {**spec, "chunk": chunk}, after=[s.key for s in summaries],
                       work=min(per_pack, n_images - chunk * per_pack), fan_out=True)
              for chunk in range(math.ceil(n_images / per_pack))]
    release = make_job("examples", "release", "", spec, after=[c.key for c in chunks] + [s.key for s in summaries],
                       gpu=False)
    finishes = [make_job("examples", "finish", layer, spec, after=[release.key], gpu=False, pieces=1)
                for layer in plan.layers]
    clean = make_job("examples", "clean", "", spec, after=[f.key for f in finishes], gpu=False)
    return [index, *passes, *summaries, *chunks, release, *finishes, clean]


def shard_done(store: Store, plan: PassPlan, first: int, last: int) -> bool:
    record = store.read(store.shard_file(plan.model, plan.key, first, last), PassShard)
    if record is None:
        return False
    info = record.info()
    return info["key"] == plan.key and info["batches"] == info["total"] and info["layers"] == list(plan.layers)


def thumbs_jobs(store: Store, model: str, images: ImageDataset, source, view: tuple[int, int],
                summary: SummarySettings, layers: list[str], after=()) -> list[Job]:
    """A "thumbs" job if the complete layers' dataset index or any thumbnail they show needs writing again.
    `source`: the request's images (folder, labels, sample), which the job scans again."""
    fingerprint = images.fingerprint()
    wanted = sorted(thumbs.needed(store, model, layers))
    index_ok = store.read(store.dataset_file(model, fingerprint), DatasetIndex) is not None
    damaged = thumbs.to_write(store, model, fingerprint, wanted)  # (each damaged one said, in one line)
    if not layers or (index_ok and not damaged):
        return []
    spec = {"model": model, "fingerprint": fingerprint, "folder": str(source.folder), "labels": source.labels,
            "sample": source.sample, "view": list(view), "settings": summary.as_json(), "indices": wanted}
    return [make_job("examples", "thumbs", "", spec, after=after, work=max(1, len(wanted)), gpu=False)]


def store_bytes(job: Job, layers: dict) -> int:
    """About the bytes a job of a pass needs in the store, on the high side (arrays at their raw size, images
    at a quarter of theirs). `layers`: layer name -> its LayerInfo (channels, grid). The atlas's sample
    dominates: float16 vectors, for each layer, of at most --atlas-vectors positions."""
    if job.step == "thumbs":
        thumb_size = SummarySettings.from_json(job.spec["settings"]).thumb_size
        return 4096 + len(job.spec["indices"]) * thumb_size ** 2 * 3 // 4
    plan = PassPlan.from_spec(job.spec)
    settings, n_images = plan.summary_settings(), plan.shards[-1][1]
    if job.step == "index":
        return 4096 + 256 * n_images
    if job.step == "pass":  # a checkpoint is written beside the previous one before that goes
        images = job.spec["last"] - job.spec["first"]
        return sum(2 * accumulator_bytes(layers[name], settings, plan.top_k, images, n_images) for name in plan.layers)
    if job.step == "summary":
        return accumulator_bytes(layers[job.layer], settings, plan.top_k, n_images, n_images)
    if job.step == "patches":
        images = min(settings.pack_images, n_images - job.spec["chunk"] * settings.pack_images)
        pixels = 0  # of every layer's patches: each its receptive field, at most patch_size on a side
        for name in plan.layers:
            side = min(settings.patch_size, layers[name].rf_size or settings.patch_size)
            pixels += layers[name].channels * (2 * plan.top_k + settings.bottom_patches) * side * side
        return pixels * images // max(1, n_images) * 3 // 4 + images * settings.thumb_size ** 2 * 3 // 4
    return 4096  # release, finish (result.json), clean


def accumulator_bytes(layer, settings: SummarySettings, top_k: int, images: int, n_images: int) -> int:
    """A layer's state after `images` of the dataset's `n_images`: its summary's arrays and the atlas sample."""
    inner = max(1, (layer.height - 2) * (layer.width - 2))  # the sample's positions leave out the grid's edge
    per_image = min(inner, settings.atlas_positions or math.ceil(settings.atlas_vectors / max(1, n_images)))
    sample = min(settings.atlas_vectors, images * per_image) if settings.atlas_vectors else 0
    per_channel = (4 * top_k * 24 + settings.band_bins * settings.band_samples * 24
                   + 3 * settings.histogram_bins * 8 + 256)
    return layer.channels * per_channel + sample * (2 * layer.channels + 24) + 4096


def scanned(session, folder: str, labels: str | None, sample: int | None, view: tuple,
            fingerprint: str) -> ImageDataset:
    """The dataset a job was planned with: the planning process's, or the folder scanned again and checked."""
    def scan():
        dataset = ImageDataset(folder, labels=labels, view=Framing(*view), sample=sample)
        if dataset.fingerprint() != fingerprint:
            raise UsageError(f"the images in {folder} changed since the build was planned; run it again")
        return dataset
    return session.memo(("dataset", fingerprint, tuple(view)), scan)


def pass_dataset(session, plan: PassPlan) -> ImageDataset:
    return scanned(session, plan.folder, plan.labels, plan.sample, plan.view, plan.fingerprint)


def seconds(plan: ViewPlan, session) -> float | None:
    """The plan's time here. The pass: one timed batch of its work (forward and updates) and a few decoded
    images, scaled to the images it reads; the patches: the same decoding again for the images they cut from."""
    passes = [job for job in plan.jobs if job.step == "pass"]
    if not passes:  # thumbnails to write again: quick
        return None
    pass_plan = PassPlan.from_spec(passes[0].spec)
    images = sum(job.spec["last"] - job.spec["first"] for job in passes)
    if images < CALIBRATE_FROM * pass_plan.batch_size:  # the calibration would cost too much of the work
        return None
    work, decode = pass_costs(session, pass_plan)
    decoders = max(1, pass_plan.workers if pass_plan.workers is not None else
                   default_workers(session.network().device))
    cut = sum(job.work for job in plan.jobs if job.step == "patches")
    return images * (work + decode / decoders) + cut * decode / max(1, usable_cpus())


def pass_costs(session, plan: PassPlan, samples: int = 8) -> tuple[float, float]:
    """Seconds per image of the pass's work on the device (forward on its own graph, twins included, and
    every accumulator's update: one warm-up batch, one timed) and of decoding one image (`samples` images
    spread over the dataset). The timed batch is the pass's second: nearly every pair still enters the
    top k, so the CPU's sparse updates cost what they cost early in a pass, somewhat more than later."""
    network, dataset = session.network(), pass_dataset(session, plan)
    crop, size = plan.view[1], plan.batch_size
    extractor, _, update = pass_work(network, list(plan.layers), crop, plan.top_k, plan.summary_settings(),
                                     len(dataset), dataset.labels is not None)
    try:
        with torch.inference_mode():
            for batch in range(2):
                images = torch.rand(size, 3, crop, crop, device=network.device).contiguous(
                    memory_format=torch.channels_last)
                began = time.perf_counter()
                update(extractor(images), torch.arange(batch * size, (batch + 1) * size) % max(1, len(dataset)))
                if network.device.type == "cuda":
                    torch.cuda.synchronize(network.device)
                work = (time.perf_counter() - began) / size
    finally:
        update.close()
    chosen = sorted({int(i) for i in torch.linspace(0, len(dataset) - 1, samples).tolist()})
    began = time.perf_counter()
    for index in chosen:
        dataset.load(index)
    return work, (time.perf_counter() - began) / len(chosen)
