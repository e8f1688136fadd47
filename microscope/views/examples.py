"""The dataset examples view's compute half: for every channel, the images and patches of a dataset that
excite it most.

One pass over the images serves every layer asked for. microscope/examples/planning.py plans it (which
layers are current, the pass, its shards and jobs, their time here) and microscope/examples/steps.py
runs its jobs. A layer is recomputed only when its result.json is missing, damaged, or was made from
other inputs (model, weights, images, labels, view, k, settings). The pass is cut into one shard per
job the executor runs at once (or --shards); shards of any size merge exactly into the same result.
The show half is microscope/examples/panel.py.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from microscope.data.images import ImageDataset, Framing
from microscope.errors import UsageError
from microscope.examples import planning, steps
from microscope.examples.config import ATLAS_SAMPLE, SummarySettings
from microscope.examples.panel import SHOWN
from microscope.network.catalogue import catalogue
from microscope.settings import Settings, setting
from microscope.view import Computed, ViewPlan

VIEW_SIZE = (224, 224)  # resize, crop: the square the model sees of every photo


@dataclass(frozen=True)
class ExamplesSettings(Settings):
    top_k: int = setting(48, "--top-k", "Dataset examples kept per unit.", low=1, old=("--top",))
    image_batch_size: int | None = setting(None, "--image-batch-size", "Images per batch of the dataset pass "
                                           "(default: 32 on a CPU, 256 on CUDA).", low=1)
    workers: int | None = setting(None, "--workers", "Image decoding processes (default: up to 4; on CUDA, "
                                  "all cores but one, up to 16).", low=0, keyed=False)
    atlas_vectors: int = setting(SummarySettings.atlas_vectors, "--atlas-vectors",
                                 "Activation vectors sampled per layer for its activation atlas (default 0: none; "
                                 f"`build.py atlas` needs one: ask for {ATLAS_SAMPLE:,}).", low=0)
    concept_min_images: int = setting(SummarySettings.concept_min_images, "--concept-min-images",
                                      "Concept labels: images a concept needs in each half of a labelled dataset "
                                      "(one chooses a unit's concepts, the other scores them).", low=1)
    shards: int | None = setting(None, "--shards", "Parts of the dataset pass, each a job of its own, merged exactly "
                                 "(default: 1 here, one per parallel job slot of a Ray cluster).", low=1, keyed=False)
    checkpoint_every: int = 50  # batches
    view: tuple[int, int] = VIEW_SIZE  # resize, crop
    summary: SummarySettings | None = None  # the rest of what a result holds (patch sizes, bands...); None: defaults

    def __post_init__(self):
        super().__post_init__()
        if self.checkpoint_every < 1:
            raise UsageError(f"checkpoint_every must be at least 1, got {self.checkpoint_every}")
        for name in ("atlas_vectors", "concept_min_images"):
            if self.summary is not None and getattr(self.summary, name) not in (getattr(SummarySettings, name),
                                                                                getattr(self, name)):
                raise UsageError(f"{name} is set on the examples settings (--{name.replace('_', '-')}), "
                                 f"not on summary.{name}")

    def summary_settings(self) -> SummarySettings:
        """What each layer's result holds beyond k, with this record's atlas sample and concept settings."""
        return dataclasses.replace(self.summary or SummarySettings(), atlas_vectors=self.atlas_vectors,
                                   concept_min_images=self.concept_min_images)


class ExamplesView(Computed):
    shown = SHOWN
    settings_type = ExamplesSettings
    needs = ("network", "images")

    def check(self, request, session) -> None:
        if request.images is not None:
            request_images(request, session)  # an empty folder, a bad CSV: said now
        check_memory(request, session)

    def plan(self, request, session) -> ViewPlan:
        if request.images is None:
            return ViewPlan([], what="layers")
        return planning.plan(request, session, settings_of(request), request_images(request, session))

    def run(self, job, session, report) -> None:
        if job.step == "thumbs":
            return steps.repair_thumbs(session, job.spec)
        plan = planning.PassPlan.from_spec(job.spec)
        if job.step == "index":
            steps.index_images(session, plan)
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

    def store_bytes(self, job, session) -> int:
        model = session.store.read_model(session.network().spec.name)
        return planning.store_bytes(job, {info.name: info for info in model.layers})

    def estimate(self, plan, request, session) -> float | None:
        return planning.seconds(plan, session)


def settings_of(request) -> ExamplesSettings:
    return request.settings.get("examples") or ExamplesSettings()


def request_images(request, session) -> ImageDataset:
    """The request's images, as the examples view sees them (scanned once per session)."""
    settings = settings_of(request)

    def scan():
        found = ImageDataset(request.images.folder, labels=request.images.labels, view=Framing(*settings.view),
                             sample=request.images.sample)
        if len(found) >= 2**31:
            raise UsageError(f"{len(found)} images is more than the examples view indexes (2**31 - 1); split the folder")
        return found
    return session.memo(("request images", request.images, tuple(settings.view)), scan)


ACCUMULATOR_BYTES = 200  # per unit and kept example: the pass peaks at about 70 (top and bottom, with their
# merge temporaries); the rest covers checkpoint copies and the summary


def check_memory(request, session, available: int | None = None) -> None:
    """Refuse a --top-k whose examples cannot be kept in memory (or exceed the dataset), before any work:
    the pass keeps the top and bottom examples of every unit of every chosen layer at once.
    `available`: the bytes free (default: measured on the network's device)."""
    settings = request.settings.get("examples")
    if "examples" not in request.views or request.images is None or settings is None:
        return
    images = len(request_images(request, session))
    top = settings.top_k
    if top > images and top > ExamplesSettings().top_k:  # above both the dataset and the default
        raise UsageError(f"--top-k {top} asks for more examples per unit than the {images} images of "
                         f"{request.images.folder}; pass --top-k {images} or less")
    units = sum(info.channels for info in catalogue(session.network(), list(request.layers)))
    need = units * top * ACCUMULATOR_BYTES
    have = available if available is not None else _memory(session.network().device)
    if have is not None and need > have:
        most = max(1, have // (units * ACCUMULATOR_BYTES))
        raise UsageError(f"--top-k {top} for {units} units needs about {_bytes(need)} of memory to keep the "
                         f"examples, more than the {_bytes(have)} available; pass --top-k {most} or less, "
                         "or fewer --layers")


def _bytes(count: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


def _memory(device) -> int | None:
    """Bytes free for the accumulators on `device`: the GPU's free memory, else the least of the
    machine's available memory and this process's cgroup (container, batch job) allowance; None if unknown."""
    if getattr(device, "type", "cpu") == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            found += [int(line.split()[1]) * 1024 for line in info if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    try:  # cgroup v2: memory.max is "max" when unlimited
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


VIEW = ExamplesView()
