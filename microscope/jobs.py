"""A build is a plan: a list of jobs that any executor can run, in any order their dependencies allow.

A job is plain data (picklable, JSON-able): which view runs it, which step of that view, the layer it
belongs to, and a `spec` holding everything that determines its result. Its `key` is the hash of
all of that, so two jobs with the same key write the same files, and writing them twice is harmless:
every job writes atomically and only under paths its spec determines. A view's `plan` leaves out the
jobs whose results the store already holds, which is what makes a rerun skip finished work.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import os
from dataclasses import dataclass, field
from typing import Any


def hash_json(value: Any, digits: int = 16) -> str:
    """A stable hex digest of a JSON-able value (sorted keys, no whitespace)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:digits]


@dataclass(frozen=True)
class Job:
    view: str  # the registered view that runs it (microscope/views)
    step: str  # the view's step: "render", "pass", "summary", ...
    layer: str  # the layer it works for ("" for model-wide jobs)
    spec: dict = field(compare=False)  # JSON-able parameters, read by the view's `run`
    key: str = ""  # hash of view, step and spec
    after: tuple[str, ...] = ()  # keys of the jobs that must finish first
    work: int = 1  # progress units (optimisation steps, batches, images...)
    fan_out: bool = False  # a small CPU job that an executor may hand to another process
    gpu: bool = True  # runs the network: a cluster executor gives it a share of a GPU
    pieces: int = 0  # of its view's plan (ViewPlan.todo: renders, layers...), how many are complete once it is

    @property
    def stage(self) -> str:
        return f"{self.view} {self.step}"

    def describe(self) -> str:
        return f"{self.stage} {self.layer}".strip()


def make_job(view: str, step: str, layer: str, spec: dict, *, after=(), work: int = 1, fan_out: bool = False,
             gpu: bool = True, pieces: int = 0) -> Job:
    key = hash_json({"view": view, "step": step, "layer": layer, "spec": spec}, digits=24)
    return Job(view, step, layer, spec, key, tuple(after), max(1, int(work)), fan_out, gpu and not fan_out, pieces)


def ordered(jobs: list[Job]) -> list[Job]:
    """The jobs in plan order, except that each comes after the jobs it waits for (those outside
    the list count as done): a job runs as soon as it can, but never before an earlier-planned one
    that can run too."""
    position = {job.key: i for i, job in enumerate(jobs)}
    waiting = {i: {position[k] for k in job.after if k in position} for i, job in enumerate(jobs)}
    dependents: dict[int, list[int]] = {}
    for i, needs in waiting.items():
        for need in needs:
            dependents.setdefault(need, []).append(i)
    ready = [i for i, needs in waiting.items() if not needs]
    heapq.heapify(ready)
    result = []
    while ready:
        i = heapq.heappop(ready)
        result.append(jobs[i])
        for j in dependents.get(i, []):
            waiting[j].discard(i)
            if not waiting[j]:
                heapq.heappush(ready, j)
    if len(result) != len(jobs):
        raise ValueError("the plan has a dependency cycle; this is a bug")
    return result


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which containers narrow), for sizing job pools."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
