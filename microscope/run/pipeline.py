"""From a request to results: check it, write the model's catalogue, plan every view, run the plan.

    request (checked once)  ->  model.json  ->  each view's plan (jobs not done yet)
        ->  an executor runs the jobs (LocalExecutor here)  ->  the site, for `build`

Every command of the command line goes through `request_from` and `compute`; `build` adds the site.
Each view skips what the store already holds for the same inputs, so an interrupted build
continues where it stopped and a rebuild of one layer leaves every other layer's results and
pages as they were.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from microscope.errors import UsageError
from microscope.run.estimate import Estimate, estimate, machine
from microscope.run.executors import LocalExecutor, RunReport
from microscope.selection import Units, resolve_layers
from microscope.run.session import Images, Request, RunSpec, Session
from microscope.store import Store, usable_folder
from microscope.store.lock import sweep_temp_files, writing
from microscope.view import ViewPlan
from microscope.views.registry import VIEWS

log = logging.getLogger("microscope.build")


def default_store_root() -> Path:
    import os

    return Path(os.environ.get("MICROSCOPE_STORE", "artifacts"))


@dataclass
class Outcome:
    """What a run did: per view, how much was computed and reused; per stage, time; what failed."""

    layers: list[str]
    plans: dict[str, ViewPlan] = field(default_factory=dict)
    run: RunReport = field(default_factory=RunReport)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    site: str = ""
    estimate: Estimate | None = None  # made before the work, when the caller asked to be told the plan

    @property
    def failed(self) -> list[str]:
        return self.run.failed

    def summary(self) -> str:
        lines = [f"{len(self.layers)} layer(s): {', '.join(self.layers)}"]
        for name, plan in self.plans.items():
            refused = f", {plan.refused} refused" if plan.refused else ""
            lines.append(f"  {VIEWS[name].title.lower()}: {plan.todo - plan.refused} {plan.what} computed{refused}, "
                         f"{plan.done} reused")
        stages = {name: secs for name, secs in self.seconds.items() if name != "site"}
        stages.update(self.run.seconds)
        if "site" in self.seconds:
            stages["site"] = self.seconds["site"]
        if stages:
            lines.append("  time per stage: " + ", ".join(f"{name} {secs:.0f} s" for name, secs in stages.items()))
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  failed: {failure}" for failure in self.run.failed]
        lines += [f"  not run, as a job they need failed: {job}" for job in self.run.skipped]
        if self.site:
            lines.append(self.site)
        return "\n".join(lines)


def resolve_images(images: str | None, labels: str | None, sample: int | None = None) -> Images | None:
    """--images DIR, or 'imagenette' (downloaded into the cache), with its labels and --image-sample."""
    if images is None:
        return None
    if images == "imagenette":
        from microscope.data.imagenette import imagenette

        folder, found = imagenette()
        return Images(str(folder), labels or str(found), sample)
    if not _exists(images, Path.is_dir, "--images"):
        raise UsageError(f"image folder {images} not found; pass an existing folder or 'imagenette' to --images")
    if not os.access(images, os.R_OK | os.X_OK):
        raise UsageError(f"image folder {images} is not readable; give this user read access or pass another folder")
    if labels not in (None, "folders"):
        if not _exists(labels, Path.is_file, "--labels"):
            raise UsageError(f"labels file {labels} not found; pass a file,class_index CSV or 'folders'")
        if not os.access(labels, os.R_OK):
            raise UsageError(f"labels file {labels} is not readable; give this user read access or pass another file")
    # Absolute: a job may run in another process, from another folder.
    return Images(str(Path(images).resolve()), labels if labels in (None, "folders") else str(Path(labels).resolve()),
                  sample)


def request_from(values: dict, views: list[str], session: Session | None = None,
                 slots: int = 1) -> tuple[Request, Session]:
    """The request a command's option values make, checked, and the session to run it in.

    `values` holds the common options (model, weights, layers, units, store, device, seed, quiet,
    images, labels) and those of the views. Everything that can be checked before loading the
    weights is checked first; nothing is written before every check passed.
    """
    settings = {name: VIEWS[name].settings(values) for name in views}
    images = resolve_images(values.get("images"), values.get("labels"), values.get("image_sample"))
    store = Path(values.get("store") or default_store_root())
    _usable(store, "artifact store", "--store")
    if images is not None:
        _separate({"--store": store, "--images": Path(images.folder)})
    weights = values.get("weights")
    if weights not in (None, "random"):
        if not _exists(Path(weights).expanduser(), Path.is_file, "--weights"):
            raise UsageError(f"weights file {weights} not found; pass an existing file with --weights, "
                             "or leave --weights out to download the model's weights")
        if not os.access(Path(weights).expanduser(), os.R_OK):
            raise UsageError(f"weights file {weights} is not readable; give this user read access or pass another file")
        weights = str(Path(weights).expanduser().resolve())
    from microscope.models.custom import canonical

    run = RunSpec(store=str(store.resolve()), model=canonical(values["model"]), weights=weights, seed=values.get("seed", 0),
                  device=values.get("device", "auto"), progress=not values.get("quiet", False))
    session = session or Session(run)
    network = session.network()
    layers = resolve_layers(network, values.get("layers"))
    units = values.get("units") or Units(None)
    chosen = tuple(name for name in views if "images" not in VIEWS[name].needs or images is not None)
    return Request(run=run, layers=tuple(layers), units=units, views=chosen, images=images, settings=settings,
                   slots=slots), session


def compute(request: Request, session: Session, executor=None, announce: Callable[[str], None] | None = None) -> Outcome:
    """Write the model's catalogue, plan every view of the request, and run the plan. `announce(line)`, if
    given, is told the plan and its estimated time on this machine before the work starts."""
    from microscope.network.catalogue import model_record

    outcome = Outcome(layers=list(request.layers))
    began = time.perf_counter()
    network = session.network()
    for name in request.views:  # every check before the first write
        VIEWS[name].check(request, session)
    usable_folder(session.store.root, "artifact store", "--store")
    with writing(session.store.root) as swept:
        if swept:
            log.info("store: removed %d temp files an interrupted run left behind", swept)
        record = model_record(network)
        if session.store.read_model(network.spec.name) != record:
            session.store.write(session.store.model_file(network.spec.name), record)
        jobs = []
        # Views that read the images go first: one pass over the data, then the rest.
        for name in sorted(request.views, key=lambda name: "images" not in VIEWS[name].needs):
            plan = VIEWS[name].plan(request, session)
            outcome.plans[name] = plan
            jobs += plan.jobs
        executor = executor or LocalExecutor()
        if announce is not None and jobs:  # timed here only if the jobs run here
            outcome.estimate = estimate(outcome.plans, request, session, timed=not executor.distributed)
            announce(outcome.estimate.line(outcome.plans, machine(network)))
        outcome.seconds["plan"] = time.perf_counter() - began
        log.info("model %s (weights %s), layers %s: %d jobs", network.spec.name, network.weights_id[:12],
                 list(request.layers), len(jobs))
        outcome.run = executor.run(jobs, session, progress=request.run.progress)
        if executor.distributed:  # a worker killed mid-write (its job was retried) left a temp file
            sweep_temp_files(session.store.root)
    return outcome


def build(request: Request, session: Session, out: str, unit_labels: dict | None = None, executor=None,
          announce: Callable[[str], None] | None = None) -> Outcome:
    """`compute`, then the site of the request's model and layers in `out`."""
    from microscope.site import build_site

    check_out(out, str(session.store.root), request.images.folder if request.images else None)  # before any work
    warning = size_warning(session.network())
    if warning:
        log.warning(warning)
    outcome = compute(request, session, executor, announce)
    if warning:
        outcome.notes.append(warning)
    began = time.perf_counter()
    site = build_site(session.store.root, out, models=[session.network().spec.name], layers=list(request.layers),
                      labels=unit_labels, progress=request.run.progress)
    outcome.seconds["site"] = time.perf_counter() - began
    outcome.site = site.summary()
    return outcome


def check_out(out: str, store: str | None = None, images: str | None = None) -> None:
    """The site folder `build` and `site` will write, checked before anything is loaded or computed:
    usable, apart from the store and the image folder, and neither it nor the store in use by another run."""
    from microscope.site.builder import check_out_dir

    try:
        check_out_dir(Path(out), create=False)
    except OSError as error:  # e.g. a name longer than the file system allows
        raise UsageError(f"cannot write the site at --out {out} ({error.strerror or error}); "
                         "pass a writable folder") from None
    folders = {"--out": Path(out), "--store": Path(store or default_store_root())}
    if images not in (None, "imagenette"):
        folders["--images"] = Path(images)
    _separate(folders)
    from microscope.site.builder import SITE_LOCK
    from microscope.store.lock import check_free

    check_free(out, "the site", SITE_LOCK, "--out")  # another run writing there: say so now, not after the work
    check_free(folders["--store"])


def _usable(path: Path, what: str, option: str) -> None:
    """usable_folder without creating anything, with an OSError (a name too long...) as one line."""
    try:
        usable_folder(path, what, option, create=False)
    except OSError as error:
        raise UsageError(f"cannot write the {what} at {option} {path} ({error.strerror or error}); "
                         "pass a writable folder") from None


def _exists(path, test, option: str) -> bool:
    """`test(path)` (Path.is_dir, Path.is_file); a path the system cannot even look up is one line."""
    try:
        return test(Path(path))
    except OSError as error:
        raise UsageError(f"cannot use {option} {path} ({error.strerror or error}); pass an existing path") from None
    except ValueError as error:  # a NUL byte
        raise UsageError(f"cannot use {option} {path!r} ({error}); pass an existing path") from None


def _separate(folders: dict[str, Path]) -> None:
    """The site, the store and the image folder must not be one another or inside one another: the site
    builder deletes stale files in its folder, and a store or site inside the images would become images."""
    found = [(option, Path(os.path.abspath(path))) for option, path in folders.items()]
    for at, (one, first) in enumerate(found):
        for two, second in found[at + 1:]:
            if first == second or first in second.parents or second in first.parents:
                raise UsageError(f"{one} {folders[one]} and {two} {folders[two]} overlap (one is inside the other); "
                                 "give them separate folders")


PAGES_LIMIT = 1_000_000_000  # GitHub Pages' limit on a site
UNIT_BYTES = 94_000  # a unit page with all its images, as full builds of InceptionV1 measure it


def size_warning(network) -> str | None:
    """A line if a site of every unit of the model's layers (SAE layers included) would pass 1 GB,
    naming what to leave out - said before the work, not after it."""
    from microscope.network.catalogue import catalogue
    from microscope.site.builder import ESTIMATE_KINDS

    channels = {info.name: info.channels for info in catalogue(network) if info.kind in ESTIMATE_KINDS}
    total = sum(channels.values()) * UNIT_BYTES
    if total <= PAGES_LIMIT:
        return None
    saes = sorted((name for name in channels if network.derived_key(name) is not None), key=lambda n: -channels[n])
    drop, left = [], total
    for name in saes:
        if left <= PAGES_LIMIT:
            break
        drop.append(f"{name} ({channels[name]} features, about {channels[name] * UNIT_BYTES / 1e9:.2f} GB)")
        left -= channels[name] * UNIT_BYTES
    advice = (f"build without {', '.join(drop)}, or give them their own site (--out)" if drop and left <= PAGES_LIMIT
              else "build fewer layers or --units into each site (--out)")
    return (f"a site of every unit of {network.spec.name} ({sum(channels.values())} units, about "
            f"{total / 1e9:.2f} GB at {UNIT_BYTES // 1000} kB a unit) would pass GitHub Pages' 1 GB: {advice}")


def run_views(network, views: list[str], *, store, layers: list[str], units: Units | None = None,
              images: Images | None = None, settings: dict | None = None, seed: int = 0, executor=None,
              progress: bool = False) -> Outcome:
    """Compute `views` with an already loaded network: the library's way in (tests, benches, notebooks).

    `settings`: view name -> its Settings (defaults where missing).
    """
    if not layers:
        raise UsageError("no layers chosen; pass one or more of: " + ", ".join(network.spec.layer_names[:8]) + ", ...")
    run = RunSpec(store=str(Path(store).resolve()), model=network.spec.name, weights=None, seed=seed,
                  progress=progress)
    session = Session(run, network=network)
    settings = dict(settings or {})
    for name in views:
        settings.setdefault(name, VIEWS[name].default_settings())
    request = Request(run=run, layers=tuple(resolve_layers(network, tuple(layers))), units=units or Units(None),
                      views=tuple(views), images=images, settings=settings)
    return compute(request, session, executor)


def check_store(store: str | None) -> Store:
    """The store a read-only command (site, verify) reads: it must exist."""
    root = Path(store or default_store_root())
    if not root.is_dir():
        raise UsageError(f"no artifact store at {root}; compute something first or pass --store")
    return Store(root)
