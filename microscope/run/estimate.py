"""Before the work starts: what a run will compute, and how long that will take on this machine.

Each view with work to do estimates its own jobs from a short calibration of the real work (a few
optimisation steps, one forward batch: `Computed.estimate`); a view whose work is too small to be worth
timing, or one without an estimate, is listed without a time. The line is what a user reads before a
long build. After a store ran out of space, `store_need` is what its unfinished jobs need there.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from microscope.view import ViewPlan
from microscope.views.registry import VIEWS


@dataclass
class Estimate:
    seconds: dict[str, float | None]  # view -> seconds (None: not timed)

    @property
    def total(self) -> float:
        return sum(s for s in self.seconds.values() if s is not None)

    def line(self, plans: dict[str, ViewPlan], where: str) -> str:
        parts = []
        for name, seconds in self.seconds.items():
            plan = plans[name]
            took = duration(seconds) if seconds is not None else "not timed"
            parts.append(f"{VIEWS[name].title.lower()} {plan.todo} {plan.what} ({took})")
        if not parts:
            return "plan: nothing to compute, every result is in the store"
        timed = any(s is not None for s in self.seconds.values())
        ending = f"; about {duration(self.total)} on this machine ({where})" if timed else ""
        return "plan: " + ", ".join(parts) + ending


def estimate(plans: dict[str, ViewPlan], request, session, timed: bool = True) -> Estimate:
    """Each view's estimate of its plan's jobs (views with no jobs are left out); `timed` False: the plan
    alone (the jobs run elsewhere, e.g. on a Ray cluster, where this machine's times say nothing)."""
    return Estimate({name: VIEWS[name].estimate(plan, request, session) if timed else None
                     for name, plan in plans.items() if plan.jobs})


def store_need(jobs: list, session) -> tuple[int, list[str]]:
    """Bytes of the store the jobs need, by their views' `store_bytes` (on the high side), and the titles of
    the views that give no estimate."""
    total, unknown = 0, set()
    for job in jobs:
        size = VIEWS[job.view].store_bytes(job, session)
        if size is None:
            unknown.add(VIEWS[job.view].title.lower())
        else:
            total += size
    return total, sorted(unknown)


def duration(seconds: float) -> str:
    """'40 s', '3 min', '2 h 05 min': as precise as an estimate deserves."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def machine(network) -> str:
    if network.device.type == "cuda":
        return torch.cuda.get_device_name(network.device)
    return f"cpu, {torch.get_num_threads()} threads"
