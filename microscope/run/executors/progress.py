"""What every executor shares: the run's report, one progress bar per stage, and running one job.

Whatever runs a job calls `view.run(job, session, report)`; the job writes its own results into the
store, so an executor only has to respect the order (`Job.after`) and say what happened. A job that
fails with a bug or a runtime error (not bad input) is reported and the jobs that wait for it are
skipped; the others go on, since their results do not depend on it. A job that finds no space left
(ENOSPC, EDQUOT) fails too, but quietly: every other job would fail the same way after its work, so no
further job is handed out (those already running, on Ray, run on) and the run ends with one line about
the folder (run/pipeline.py). Bad input
(UsageError) and Ctrl-C stop the run at once: finished jobs stay finished.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from tqdm import tqdm

from microscope.errors import no_space
from microscope.jobs import Job
from microscope.run.session import Session
from microscope.views.registry import get_view

log = logging.getLogger("microscope.run")


@dataclass
class RunReport:
    done: dict[str, int] = field(default_factory=dict)  # stage -> jobs finished
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    failed: list[str] = field(default_factory=list)  # "stage layer: error" (a full disk's are in no_space)
    skipped: list[str] = field(default_factory=list)  # jobs not run because one they wait for failed
    finished: set[str] = field(default_factory=set)  # keys of the jobs that finished
    broken: set[str] = field(default_factory=set)  # keys of the jobs that failed or waited for one that did
    no_space: list[str] = field(default_factory=list)  # jobs that found no space left to write
    full_disk: OSError | None = None  # the first of those errors: once it is set, no further job starts
    not_run: list[str] = field(default_factory=list)  # jobs not started because of it

    def count(self, job: Job, seconds: float) -> None:
        self.done[job.stage] = self.done.get(job.stage, 0) + 1
        self.seconds[job.stage] = self.seconds.get(job.stage, 0.0) + seconds
        self.finished.add(job.key)

    @property
    def unfinished(self) -> int:
        """Jobs of the plan that did not finish, whatever the reason."""
        return len(self.failed) + len(self.skipped) + len(self.no_space) + len(self.not_run)


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
    get_view(job.view).run(job, session, report)


def held_back(job: Job, report: RunReport, bars: Bars, broken: set[str]) -> bool:
    """Whether the job must not start, recorded as such: a job it waits for failed, or the disk is full (it
    would fail the same way, after its work)."""
    if broken & set(job.after):
        broken.add(job.key)
        report.broken.add(job.key)
        report.skipped.append(job.describe())
    elif report.full_disk is not None:
        report.not_run.append(job.describe())
    else:
        return False
    bars.finished(job)
    return True


def failed(job: Job, error: BaseException, report: RunReport, broken: set[str]) -> None:
    """Record a job that failed; the jobs waiting for it (`broken`) will be skipped."""
    broken.add(job.key)
    report.broken.add(job.key)
    full = no_space(error)
    if full is not None:  # said once, at the end of the run (pipeline.py), not once per job
        report.no_space.append(job.describe())
        report.full_disk = report.full_disk or full
        return
    message = f"{job.describe()}: {type(error).__name__}: {error}"
    report.failed.append(message)
    log.error("%s", message)
