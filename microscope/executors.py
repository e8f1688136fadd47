"""Executors run a plan's jobs. `LocalExecutor` runs them in this process, handing runs of small CPU
jobs (`Job.fan_out`, e.g. cutting patches) to forked worker processes.

Whatever runs a job calls `view.run(job, session, report)`; the job writes its own results into the
store, so an executor only has to respect the order (`Job.after`) and say what happened. A job that
fails with a bug or a runtime error (not bad input) is reported and the jobs that wait for it are
skipped; the others go on, since their results do not depend on it. Bad input (UsageError) and
Ctrl-C stop the run at once: finished jobs stay finished.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm import tqdm

from microscope.errors import UsageError
from microscope.jobs import Job, ordered
from microscope.session import Session

log = logging.getLogger("microscope.run")


@dataclass
class RunReport:
    done: dict[str, int] = field(default_factory=dict)  # stage -> jobs finished
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    failed: list[str] = field(default_factory=list)  # "stage layer: error"
    skipped: list[str] = field(default_factory=list)  # jobs not run because one they wait for failed

    def count(self, job: Job, seconds: float) -> None:
        self.done[job.stage] = self.done.get(job.stage, 0) + 1
        self.seconds[job.stage] = self.seconds.get(job.stage, 0.0) + seconds


class Bars:
    """One progress bar per stage, fed by the work its jobs report; closed when the stage is done."""

    def __init__(self, jobs: list[Job], enabled: bool, on_progress: Callable | None = None):
        self.enabled, self.on_progress = enabled, on_progress
        self.total: dict[str, int] = {}
        self.left: dict[str, int] = {}
        for job in jobs:
            self.total[job.stage] = self.total.get(job.stage, 0) + job.work
            self.left[job.stage] = self.left.get(job.stage, 0) + 1
        self.bars: dict[str, tqdm] = {}

    def bar(self, stage: str) -> tqdm:
        if stage not in self.bars:
            self.bars[stage] = tqdm(total=self.total[stage], desc=stage, unit="", dynamic_ncols=True,
                                    disable=not self.enabled, leave=False)
        return self.bars[stage]

    def reporter(self, job: Job) -> Callable[[int], None]:
        seen = [0]

        def report(n: int = 1, status: str | None = None) -> None:
            """`n` more units of work done; `status` (e.g. the current loss) shown beside the bar."""
            seen[0] += n
            if status is not None:
                self.bar(job.stage).set_postfix_str(status, refresh=False)
            self.bar(job.stage).update(n)
            if self.on_progress is not None:
                self.on_progress(job, seen[0])
        return report

    def finished(self, job: Job, reported: int | None = None) -> None:
        bar = self.bar(job.stage)
        if reported is not None:
            bar.update(reported)
        self.left[job.stage] -= 1
        if self.left[job.stage] == 0:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def run_job(job: Job, session: Session, report: Callable[[int], None]) -> None:
    from microscope.views import get_view

    get_view(job.view).run(job, session, report)


class LocalExecutor:
    """Runs jobs in plan order in this process; runs of fan-out jobs go to forked processes."""

    def __init__(self, processes: int | None = None, on_progress: Callable[[Job, int], None] | None = None):
        self.processes = usable_cpus() if processes is None else max(1, processes)
        self.on_progress = on_progress  # called after every report of a job (tests, benchmarks)

    def run(self, jobs: list[Job], session: Session, progress: bool = True) -> RunReport:
        report = RunReport()
        plan = ordered(jobs)
        bars = Bars(plan, progress, self.on_progress)
        broken: set[str] = set()
        try:
            position = 0
            while position < len(plan):
                group = [plan[position]]
                if group[0].fan_out:  # a run of fan-out jobs (with no links among them) goes out at once
                    keys = {group[0].key}
                    while position + len(group) < len(plan):
                        candidate = plan[position + len(group)]
                        if not candidate.fan_out or keys & set(candidate.after):
                            break
                        group.append(candidate)
                        keys.add(candidate.key)
                position += len(group)
                runnable = []
                for job in group:
                    if broken & set(job.after):
                        broken.add(job.key)
                        report.skipped.append(job.describe())
                        bars.finished(job)
                    else:
                        runnable.append(job)
                if len(runnable) > 1 and self.processes > 1 and "fork" in multiprocessing.get_all_start_methods():
                    self._fan_out(runnable, session, report, bars, broken)
                else:
                    for job in runnable:
                        self._inline(job, session, report, bars, broken)
        finally:
            bars.close()
        return report

    def _inline(self, job, session, report, bars, broken) -> None:
        began = time.perf_counter()
        try:
            run_job(job, session, bars.reporter(job))
        except (UsageError, KeyboardInterrupt):
            raise
        except Exception as error:  # noqa: BLE001 - one job's failure must not lose the others
            self._failed(job, error, report, broken)
        else:
            report.count(job, time.perf_counter() - began)
        bars.finished(job)

    def _fan_out(self, jobs, session, report, bars, broken) -> None:
        began = time.perf_counter()
        context = multiprocessing.get_context("fork")
        finished = []
        with ProcessPoolExecutor(min(self.processes, len(jobs)), mp_context=context,
                                 initializer=_adopt, initargs=(session,)) as pool:
            futures = [(job, pool.submit(_run_adopted, job)) for job in jobs]
            for job, future in futures:
                try:
                    future.result()
                except (UsageError, KeyboardInterrupt):
                    raise
                except Exception as error:  # noqa: BLE001
                    self._failed(job, error, report, broken)
                else:
                    finished.append(job)
                bars.finished(job, job.work)
        wall = time.perf_counter() - began  # the pool's start and end included: that is what the run waits
        for job in finished:
            report.count(job, wall / len(finished))

    @staticmethod
    def _failed(job: Job, error: Exception, report: RunReport, broken: set[str]) -> None:
        message = f"{job.describe()}: {type(error).__name__}: {error}"
        report.failed.append(message)
        broken.add(job.key)
        log.error("%s", message)


# In a forked worker: the session it inherited from the executor's process (set by the initializer).
_worker_session: Session | None = None


def _adopt(session: Session) -> None:
    global _worker_session
    _worker_session = session
    torch.set_num_threads(1)  # one process per core already; the parent's OpenMP pool did not survive fork


def _run_adopted(job: Job) -> None:
    run_job(job, _worker_session, lambda n=1: None)


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
