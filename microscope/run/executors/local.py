"""`LocalExecutor`: runs a plan's jobs in this process, handing runs of small CPU jobs (`Job.fan_out`,
e.g. cutting patches) to forked worker processes.
"""
from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Callable

import torch

from microscope.errors import UsageError
from microscope.run.executors.progress import Bars, RunReport, failed, held_back, run_job
from microscope.jobs import Job, ordered, usable_cpus
from microscope.run.session import Session


class LocalExecutor:
    """Runs jobs in plan order in this process; runs of fan-out jobs go to forked processes."""

    distributed = False  # every job runs on this machine, watched by this process

    @staticmethod
    def slots() -> int:
        return 1  # jobs run one at a time (a pass uses the cores through its image loader)

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
                runnable = [job for job in group if not held_back(job, report, bars, broken)]
                if len(runnable) > 1 and self.processes > 1 and "fork" in multiprocessing.get_all_start_methods():
                    self._fan_out(runnable, session, report, bars, broken)
                else:
                    for job in runnable:  # (held back now if the job before it found the disk full)
                        if not held_back(job, report, bars, broken):
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
            failed(job, error, report, broken)
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
                    failed(job, error, report, broken)
                else:
                    finished.append(job)
                bars.finished(job, job.work)
        wall = time.perf_counter() - began  # the pool's start and end included: that is what the run waits
        for job in finished:
            report.count(job, wall / len(finished))


# In a forked worker: the session it inherited from the executor's process (set by the initializer).
_worker_session: Session | None = None


def _adopt(session: Session) -> None:
    global _worker_session
    _worker_session = session
    torch.set_num_threads(1)  # one process per core already; the parent's OpenMP pool did not survive fork


def _run_adopted(job: Job) -> None:
    run_job(job, _worker_session, lambda n=1: None)

