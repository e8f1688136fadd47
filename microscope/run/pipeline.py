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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from microscope.errors import DiskFull, UsageError, megabytes, no_space, no_space_line
from microscope.models.custom import canonical
from microscope.run.estimate import Estimate, estimate, machine, store_need
from microscope.run.executors import LocalExecutor, RunReport
from microscope.selection import Units, resolve_layers
from microscope.site.builder import build_site
from microscope.site.estimate import size_warning
from microscope.network.catalogue import catalogue, model_record
from microscope.run.folders import resolve_images, resolve_paths
from microscope.run.session import Images, Paths, Request, RunSpec, Session
from microscope.store.lock import sweep_temp_files, writing
from microscope.view import ViewPlan
from microscope.views.registry import VIEWS

log = logging.getLogger("microscope.build")


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
    no_space: str = ""  # the one line of a folder that ran out of space (the store, or the site for `build`)

    @property
    def failed(self) -> list[str]:
        """Every job that did not finish: failed, skipped as a job it needs failed, or held back by a full disk."""
        return self.run.failed + self.run.no_space + self.run.skipped + self.run.not_run

    @property
    def exit_code(self) -> int:
        """1 if anything of the request did not finish (what did is kept), else 0."""
        return 1 if self.failed or self.no_space else 0

    def summary(self) -> str:
        lines = [f"{len(self.layers)} layer(s): {', '.join(self.layers)}"]
        for name, plan in self.plans.items():
            if not plan.what:  # a view with nothing to count (concepts without labels): its note said why
                continue
            computed, *others = plan.counts(self.run.finished, self.run.broken)
            counts = [f"{computed} {plan.what} computed"] + [f"{count} {what}" for count, what in
                                                            zip(others, ("refused", "failed", "not run")) if count]
            lines.append(f"  {VIEWS[name].title.lower()}: {', '.join(counts)}, {plan.done} reused")
        stages = {name: secs for name, secs in self.seconds.items() if name != "site"}
        stages.update(self.run.seconds)
        if "site" in self.seconds:
            stages["site"] = self.seconds["site"]
        if stages:
            lines.append("  time per stage: " + ", ".join(f"{name} {secs:.0f} s" for name, secs in stages.items()))
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  failed: {failure}" for failure in self.run.failed]
        if self.no_space:  # one line for the jobs a full disk failed or held back, not one per job
            lines.append(f"  {self.no_space}")
        else:
            lines += [f"  not run, as a job they need failed: {job}" for job in self.run.skipped]
        if self.site:
            lines.append(self.site)
        return "\n".join(lines)


def request_from(values: dict, views: list[str], session: Session | None = None,
                 out: str | None = None) -> tuple[Request, Session]:
    """The request a command's option values make, checked, and the session to run it in.

    `values` holds the common options (model, weights, layers, units, store, device, seed, quiet,
    images, labels, image_sample) and those of the views, by name; `out`, the site folder of a build.
    Everything that can be checked before loading the weights is checked first; nothing is written
    before every check passed.
    """
    settings = {name: VIEWS[name].settings(values) for name in views}
    images = resolve_images(values.get("images"), values.get("labels"), values.get("image_sample"))
    paths = resolve_paths(values.get("store"), out, images, values.get("weights"))
    run = RunSpec(paths=paths, model=canonical(values["model"]), seed=values.get("seed", 0),
                  device=values.get("device", "auto"), progress=not values.get("quiet", False))
    session = session or Session(run)
    network = session.network()
    layers = resolve_layers(network, values.get("layers"))
    units = values.get("units") or Units(None)
    chosen = tuple(name for name in views if "images" not in VIEWS[name].needs or images is not None)
    return Request(run=run, layers=tuple(layers), units=units, views=chosen, settings=settings), session


def compute(request: Request, session: Session, executor=None, announce: Callable[[str], None] | None = None) -> Outcome:
    """Write the model's catalogue, plan every view of the request, and run the plan. `announce(line)`, if
    given, is told the plan and its estimated time on this machine before the work starts."""
    outcome = Outcome(layers=list(request.layers))
    began = time.perf_counter()
    network = session.network()
    for name in request.views:  # every check before the first write
        VIEWS[name].check(request, session)
    with writing(session.store.root) as swept:
        if swept:
            log.info("store: removed %d temp files an interrupted run left behind", swept)
        record = model_record(network)
        if session.store.read_model(network.spec.name) != record:
            try:
                session.store.write(session.store.model_file(network.spec.name), record)
            except OSError as error:
                if no_space(error) is None:
                    raise
                raise DiskFull(store_space_line(session, error, [], 0)) from None
        jobs = []
        # Views that read the images go first: one pass over the data, then the rest.
        for name in sorted(request.views, key=lambda name: "images" not in VIEWS[name].needs):
            plan = VIEWS[name].plan(request, session)
            outcome.plans[name] = plan
            jobs += plan.jobs
            outcome.notes += plan.warnings
        executor = executor or LocalExecutor()
        if announce is not None and jobs:  # timed here only if the jobs run here
            outcome.estimate = estimate(outcome.plans, request, session, timed=not executor.distributed)
            announce(outcome.estimate.line(outcome.plans, machine(network)))
        for plan in outcome.plans.values():  # the choices made for the user, then what they cost
            for line in plan.notes:
                (announce or log.info)(line)
            for line in plan.warnings:
                log.warning(line)
        outcome.seconds["plan"] = time.perf_counter() - began
        log.info("model %s (weights %s), layers %s: %d jobs", network.spec.name, network.weights_id[:12],
                 list(request.layers), len(jobs))
        outcome.run = executor.run(jobs, session, progress=request.run.progress)
        if executor.distributed:  # a worker killed mid-write (its job was retried) left a temp file
            sweep_temp_files(session.store.root)
    report = outcome.run
    if report.full_disk is not None:
        unfinished = [job for job in jobs if job.key not in report.finished]
        outcome.no_space = store_space_line(session, report.full_disk, unfinished, len(report.finished))
        if not report.finished:  # nothing to keep: like bad input, one line and exit code 2
            raise DiskFull(outcome.no_space)
    return outcome


def store_space_line(session: Session, error: OSError, unfinished: list, finished: int) -> str:
    """The one line of a store that ran out of space: the jobs left and the space they need (their views'
    estimates), and that a rerun keeps the jobs that finished."""
    needed, unknown = store_need(unfinished, session)
    needs = f"{len(unfinished)} jobs did not finish and need about {megabytes(needed)}" if unfinished else \
        "not even its catalogue (model.json) fits, and the results need more"
    if unknown:
        needs += f" (and what the {', '.join(unknown)} need: not estimated)"
    kept = f"the {finished} jobs that finished" if finished != 1 else "the job that finished"
    rerun = "run the same command again" + (f"; it keeps {kept}" if finished else "")
    return no_space_line("the store", session.store.root, error.strerror or str(error), needs, rerun)


def build(request: Request, session: Session, unit_labels: dict | None = None, executor=None,
          announce: Callable[[str], None] | None = None) -> Outcome:
    """`compute`, then the site of the request's model and layers in the request's site folder."""
    network = session.network()
    warning = site_size_warning(network)
    if warning:
        log.warning(warning)
    outcome = compute(request, session, executor, announce)
    if warning:
        outcome.notes.append(warning)
    if outcome.no_space:  # the store is full: the pages come with the rerun that finishes the jobs
        return outcome
    began = time.perf_counter()
    try:
        site = build_site(session.store, request.run.paths.out, models=[network.spec.name],
                          layers=list(request.layers), labels=unit_labels, progress=request.run.progress)
    except DiskFull as full:
        if not outcome.run.finished:  # nothing finished in this run: one line and exit code 2
            raise
        outcome.no_space = str(full)
        return outcome
    outcome.seconds["site"] = time.perf_counter() - began
    outcome.site = site.summary()
    return outcome


def site_size_warning(network) -> str | None:
    """The site's warning (site/estimate.py) for a site of every unit of the network's layers, SAEs included."""
    layers = catalogue(network)
    return size_warning(network.spec.name, layers,
                        {info.name for info in layers if network.derived_key(info.name) is not None})


def run_views(network, views: list[str], *, store, layers: list[str], units: Units | None = None,
              images: Images | None = None, settings: dict | None = None, seed: int = 0, executor=None,
              progress: bool = False) -> Outcome:
    """Compute `views` with an already loaded network: the library's way in (tests, benches, notebooks).

    `settings`: view name -> its Settings (defaults where missing).
    """
    if not layers:
        raise UsageError("no layers chosen; pass one or more of: " + ", ".join(network.spec.layer_names[:8]) + ", ...")
    run = RunSpec(paths=Paths(store=str(Path(store).resolve()), images=images), model=network.spec.name, seed=seed,
                  progress=progress)
    session = Session(run, network=network)
    settings = dict(settings or {})
    for name in views:
        settings.setdefault(name, VIEWS[name].default_settings())
    request = Request(run=run, layers=tuple(resolve_layers(network, tuple(layers))), units=units or Units(None),
                      views=tuple(views), settings=settings)
    return compute(request, session, executor)
