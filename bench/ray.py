"""What Ray costs and from which job size it pays: the same small builds with the local executor and
with `--executor ray` (a Ray instance on this machine, one worker per core), side by side in one run.

    .venv/bin/python bench/ray.py [--weights PATH] [--layer inception_4a] [--units 16] [--steps 2,8,32]
                                  [--images DIR] [--count 200]

Rows:
- empty task: a Ray task that does nothing, submitted in bulk - Ray's own floor per task;
- start: starting Ray and the first job on every worker (each loads the weights once);
- featurevis: --units renders of --layer in jobs of 2 units (64 px, so that a job is small), at
  each --steps: local with all cores, local with one thread (what each Ray worker has), and Ray
  with its workers warm. The overhead per task is what a job costs on Ray beyond the same job run
  locally on one thread: workers x wall / jobs - local 1-thread seconds per job;
- examples: the dataset pass over --count photos, one shard locally, one shard per worker on Ray.

The break-even job size: Ray's workers split the jobs, each job on one core, against the local
executor's one job at a time on all cores. With t1 a job's seconds on one core, s the local speed-up
from using all cores and W workers, Ray wins where (t1 + overhead) / W < t1 / s, i.e. from
t1 = overhead / (W / s - 1).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

# This file is bench/ray.py: its folder must not shadow the `ray` package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microscope.run.executors import LocalExecutor, usable_cpus  # noqa: E402
from microscope.run.executors.cluster import RayExecutor, import_ray  # noqa: E402
from microscope.run.pipeline import compute, request_from  # noqa: E402
from microscope.selection import Units  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def values(args, store: Path, steps: int, shards: int = 1) -> dict:
    return {"model": "inceptionv1-caffe", "weights": args.weights, "layers": (args.layer,),
            "units": Units(((0, args.units - 1),)), "store": str(store), "device": "cpu", "seed": 0, "quiet": True,
            "images": args.images, "labels": None, "objectives": ("channel",), "steps": steps, "size": 64,
            "batch_size": 2, "image_format": "png", "top_k": 8, "image_batch_size": 16, "workers": None,
            "atlas_vectors": 0, "shards": shards}


def timed(args, views, executor, steps: int, shards: int = 1) -> tuple[float, int]:
    """Wall seconds of computing `views` into a fresh store (the weights loaded before), and the jobs run."""
    with tempfile.TemporaryDirectory() as scratch:
        request, session = request_from(values(args, Path(scratch) / "store", steps, shards), views)
        began = time.perf_counter()
        outcome = compute(request, session, executor)
        wall = time.perf_counter() - began
    assert not outcome.failed, outcome.failed
    return wall, sum(outcome.run.done.values())


def empty_task_ms(ray, count: int = 500) -> float:
    task = ray.remote(lambda: None)
    ray.get([task.remote() for _ in range(20)])
    began = time.perf_counter()
    ray.get([task.remote() for _ in range(count)])
    return 1000 * (time.perf_counter() - began) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(SHARED / "weights" / "bvlc_googlenet.npz"))
    parser.add_argument("--layer", default="inception_4a")
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--steps", default="2,8,32")
    parser.add_argument("--images", default=str(SHARED / "data" / "imagenet-sample"))
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    ray = import_ray()
    cores = usable_cpus()
    if args.count and Path(args.images).is_dir():  # the first --count photos, linked into a folder of their own
        photos = sorted(p for p in Path(args.images).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        folder = Path(tempfile.mkdtemp()) / "photos"
        folder.mkdir()
        for photo in photos[:args.count]:
            (folder / photo.name).symlink_to(photo.resolve())
        args.images = str(folder)

    began = time.perf_counter()
    cluster = RayExecutor(address=None)
    timed(args, ["featurevis"], cluster, steps=1)
    start = time.perf_counter() - began
    floor = empty_task_ms(ray)
    local = LocalExecutor()
    print(f"machine: {cores} cores; Ray {ray.__version__}, {cores} workers of 1 CPU each; torch threads "
          f"{torch.get_num_threads()}")
    print(f"empty Ray task: {floor:.2f} ms; start (Ray, workers, weights) {start:.1f} s\n")
    print("| featurevis steps | jobs | local, all cores s | local, 1 thread s/job | Ray s | Ray / local "
          "| overhead per task s | break-even job, 1 core s |")
    print("|---|---|---|---|---|---|---|---|")
    threads = torch.get_num_threads()
    for steps in [int(s) for s in args.steps.split(",")]:
        local_all, jobs = timed(args, ["featurevis"], local, steps)
        torch.set_num_threads(1)
        local_one, _ = timed(args, ["featurevis"], local, steps)
        torch.set_num_threads(threads)
        on_ray, _ = timed(args, ["featurevis"], cluster, steps)
        per_job = local_one / jobs
        overhead = cores * on_ray / jobs - per_job
        # Ray wins where (t1 + overhead) / workers < t1 / threading, threading = local speed-up of all cores
        threading = per_job / (local_all / jobs)
        even = overhead / (cores / threading - 1) if cores > threading else float("inf")
        print(f"| {steps} | {jobs} | {local_all:.2f} | {per_job:.3f} | {on_ray:.2f} | {on_ray / local_all:.2f} "
              f"| {overhead:.3f} | {even:.3f} |")
    if Path(args.images).is_dir():
        local_pass, _ = timed(args, ["examples"], local, 1, shards=1)
        ray_pass, _ = timed(args, ["examples"], cluster, 1, shards=cores)
        print(f"\nexamples of {args.layer}, {args.count} photos: local {local_pass:.1f} s (1 shard), Ray "
              f"{ray_pass:.1f} s ({cores} shards), Ray / local {ray_pass / local_pass:.2f}")
    cluster.close()


if __name__ == "__main__":
    main()
