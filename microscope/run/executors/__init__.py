"""Who runs a plan's jobs: `LocalExecutor` (this process, fanning small CPU jobs out to forked
processes) or `RayExecutor` (Ray tasks on a local instance or a cluster; the optional extra
`microscope[ray]`). Both honour `Job.after`, report per stage, and leave finished jobs finished.
"""
from __future__ import annotations

from microscope.errors import UsageError
from microscope.run.executors.local import LocalExecutor
from microscope.jobs import usable_cpus
from microscope.run.executors.progress import RunReport

EXECUTORS = ("local", "ray")


def executor_from(name: str | None, address: str | None = None, gpus: float | None = None):
    """The executor --executor, --ray-address and --gpus-per-job ask for."""
    name = name or "local"
    if name == "local":
        if address is not None or gpus is not None:
            raise UsageError("--ray-address and --gpus-per-job only apply to a Ray run; add --executor ray")
        return LocalExecutor()
    if name == "ray":
        from microscope.run.executors.cluster import RayExecutor

        return RayExecutor(address=address, gpus_per_job=gpus)
    raise UsageError(f"unknown executor {name!r}; choose one of: {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "LocalExecutor", "RunReport", "executor_from", "usable_cpus"]
