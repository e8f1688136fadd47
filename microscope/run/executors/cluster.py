"""`RayExecutor`: the plan's jobs as Ray tasks, on a local Ray instance or a cluster.

Ray schedules; this module only hands it the jobs whose dependencies have finished, in plan order,
each with the resources it needs (a share of a GPU for jobs that run the network, when the cluster
has GPUs), and counts what comes back. A task gets the run's `RunSpec` and its `Job` (both plain
data); the worker process makes a `Session` from the spec once and reuses it for every job it runs,
so the weights are loaded once per worker. The store must be a path every worker sees (a shared
filesystem): jobs write their results there themselves, and only the driver builds the site.

Faults: a task whose worker process or node dies is retried by Ray (`retries`); jobs are keyed and
write atomically, so a retry or a duplicate writes the same files. A job that raises is not retried
(it would raise again): it is reported and the jobs waiting for it are skipped, as the local
executor does. A killed driver loses nothing finished: the next run plans only what the store lacks.
"""
from __future__ import annotations

import dataclasses
import heapq
import logging
import os
import socket
import time
from typing import Callable

from microscope.errors import UsageError
from microscope.run.executors.progress import Bars, RunReport, failed, held_back, run_job
from microscope.jobs import Job, ordered
from microscope.run.session import RunSpec, Session

INSTALL = "pip install 'microscope[ray]' (in this checkout: .venv/bin/pip install -e '.[ray]')"


def import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError(f"--executor ray needs Ray, which is not installed; {INSTALL}") from None
    return ray


class RayExecutor:
    """Runs jobs as Ray tasks. `address`: None starts a Ray instance on this machine for the run (all
    its cores), "auto" or HOST:PORT joins a running cluster. `gpus_per_job`: the share of a GPU a job
    that runs the network asks for (None: one GPU if the cluster has any, else none)."""

    distributed = True  # jobs run in other processes, on other machines, and may be retried

    def __init__(self, address: str | None = None, gpus_per_job: float | None = None, cpus_per_job: float = 1,
                 retries: int = 3, on_progress: Callable[[Job, int], None] | None = None):
        if gpus_per_job is not None and gpus_per_job < 0:
            raise UsageError(f"--gpus-per-job {gpus_per_job} is negative; pass a share of a GPU such as 0.25, or 0")
        self.address, self.cpus_per_job, self.retries = address, cpus_per_job, retries
        self.on_progress = on_progress
        self.ray = import_ray()
        self._started = False
        self.connect()
        gpus = self.ray.cluster_resources().get("GPU", 0)
        if gpus_per_job and not gpus:
            self.close()
            raise UsageError(f"--gpus-per-job {gpus_per_job}: the Ray cluster has no GPUs; pass --gpus-per-job 0 or "
                             "join a cluster with GPUs (--ray-address)")
        self.gpus_per_job = (1.0 if gpus else 0.0) if gpus_per_job is None else float(gpus_per_job)

    def slots(self) -> int:
        """Jobs the cluster runs at once: by GPU shares if jobs take GPUs, else by CPUs."""
        resources = self.ray.cluster_resources()
        if self.gpus_per_job:
            return max(1, int(resources.get("GPU", 0) / self.gpus_per_job))
        return max(1, int(resources.get("CPU", 1) / self.cpus_per_job))

    def connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        where = "a local Ray instance" if self.address is None else f"the Ray cluster at {self.address}"
        options = dict(include_dashboard=False, logging_level=logging.WARNING, configure_logging=False)
        if self.address is None:
            from microscope.jobs import usable_cpus

            options["num_cpus"] = usable_cpus()
        if self.address not in (None, "auto"):
            reachable(self.address)  # Ray itself would keep retrying an address nobody answers at
            if "RAY_AUTH_MODE" not in os.environ and token_found():  # the cluster's token is here: send it
                os.environ["RAY_AUTH_MODE"] = "token"
        try:
            ray.init(address=self.address, **options)
        except Exception as error:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, its own errors
            hint = ("the cluster wants its token: set RAY_AUTH_MODE=token (and RAY_AUTH_TOKEN, or copy the head's "
                    "~/.ray/auth_token)" if "auth" in repr(error).lower() else
                    "start one with `ray start --head` or pass --ray-address HOST:PORT of its head")
            raise UsageError(f"cannot start or reach {where} ({type(error).__name__}: "
                             f"{str(error).splitlines()[0][:200]}); {hint}") from None
        self._started = True

    def close(self) -> None:
        """Leave the cluster (stopping the Ray instance this process started); the workers go with it.
        A process that does not call it leaves at exit."""
        if self._started:
            self.ray.shutdown()
            self._started = False

    def resources(self, job: Job) -> dict:
        return {"num_cpus": self.cpus_per_job, "num_gpus": self.gpus_per_job if job.gpu else 0,
                "max_retries": self.retries, "name": f"microscope {job.stage}"}

    def run(self, jobs: list[Job], session: Session, progress: bool = True) -> RunReport:
        ray = self.ray
        self.connect()
        task = ray.remote(run_in_worker)
        report, plan = RunReport(), ordered(jobs)
        bars = Bars(plan, progress, self.on_progress)
        position = {job.key: i for i, job in enumerate(plan)}
        waiting = {job.key: {k for k in job.after if k in position} for job in plan}
        dependents: dict[str, list[str]] = {}
        for job in plan:
            for key in waiting[job.key]:
                dependents.setdefault(key, []).append(job.key)
        ready = [position[job.key] for job in plan if not waiting[job.key]]
        heapq.heapify(ready)
        running: dict = {}  # object ref -> job
        broken: set[str] = set()
        began: dict[str, float] = {}  # stage -> when its first job went out

        def release(job: Job) -> None:
            """The job is over (done, failed or skipped): its dependents may now be ready, or skipped."""
            for key in dependents.get(job.key, []):
                waiting[key].discard(job.key)
                if not waiting[key]:
                    heapq.heappush(ready, position[key])

        try:
            while ready or running:
                while ready:  # everything that can run goes to Ray now; it queues what does not fit
                    job = plan[heapq.heappop(ready)]
                    if held_back(job, report, bars, broken):
                        release(job)
                        continue
                    spec = dataclasses.replace(session.spec, progress=False,
                                               device=session.spec.device if job.gpu else "cpu")
                    running[task.options(**self.resources(job)).remote(spec, job)] = job
                    began.setdefault(job.stage, time.perf_counter())
                # A timeout, so that Ctrl-C is seen within a second, not when the next task ends.
                done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
                for ref in done:
                    job = running.pop(ref)
                    if self._collect(ref, job, report, broken):
                        # the stage's wall time so far, not the sum of its jobs' times: they overlap
                        report.seconds[job.stage] = time.perf_counter() - began[job.stage]
                    bars.finished(job, job.work)
                    if self.on_progress is not None:
                        self.on_progress(job, job.work)
                    release(job)
        except BaseException:
            for ref in running:  # Ctrl-C or bad input: stop the rest; finished jobs stay finished
                ray.cancel(ref, force=True)
            raise
        finally:
            bars.close()
        return report

    def _collect(self, ref, job: Job, report: RunReport, broken: set[str]) -> bool:
        """Whether the job finished; a failure is recorded, bad input raised."""
        ray = self.ray
        try:
            seconds = ray.get(ref)
        except ray.exceptions.RayTaskError as error:  # the job raised: bad input stops the run, a bug fails the job
            cause = getattr(error, "cause", None) or error
            if isinstance(cause, (UsageError, KeyboardInterrupt)):
                raise cause from None
            failed(job, cause, report, broken)
        except ray.exceptions.RayError as error:  # its worker or node died more often than `retries`
            failed(job, error, report, broken)
        else:
            report.count(job, seconds)
            return True
        return False


def token_found() -> bool:
    """Whether this machine holds a Ray cluster token (where Ray looks for one)."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or os.path.isfile(path)


def reachable(address: str, timeout: float = 10.0) -> None:
    """One line unless something listens at HOST:PORT."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address {address}: expected HOST:PORT of the cluster's head (or 'auto')")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        raise UsageError(f"cannot reach the Ray cluster at {address} ({error.strerror or error}); is its head "
                         "running (`ray start --head`), and is the address its head printed?") from None


# In a Ray worker process: the sessions of the runs it served (one per RunSpec, kept between tasks).
_sessions: dict[RunSpec, Session] = {}


def run_in_worker(spec: RunSpec, job: Job) -> float:
    """A Ray task: run one job in this worker's session for `spec`; the seconds it took."""
    if spec not in _sessions:
        if len(_sessions) >= 2:  # a worker serves one run (its GPU and CPU sessions): drop an older run's
            _sessions.clear()
        _sessions[spec] = Session(spec, distributed=True)
    began = time.perf_counter()
    run_job(job, _sessions[spec], lambda n=1, status=None: None)
    return time.perf_counter() - began
