"""`build --preview` as a user runs it, timed whole, and how well the plan's estimate and the progress
bars' ETAs foretold it.

    python bench/preview.py [--images ../shared/data] [--layer inception_4a] [--refine "--units 0-7 ..."]

Runs, each a process of its own, into a fresh store and site (the weights file is local: a warm cache):
1. `build --preview` on the real weights: the whole process's wall time (the issue's bar: 2 minutes on
   2 CPU cores), then the plan's estimate against each stage's measured time;
2. the refining build the preview prints, narrowed by `--refine` (default: units 0-7, the channel
   objective, Lucid's recipe at 224 px - a few minutes of renders), the same comparison.
For each featurevis stage it also reads the progress bar's ETA at 10 % and 50 % of the steps (from the
bar's own output) and compares it with the time the stage then took to finish.
"""
from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
STAGES = {"dataset examples": "examples ", "feature visualization": "featurevis ", "circuit": "circuits "}


def seconds(text: str) -> float:
    """'42 s', '3 min', '1 h 05 min', or tqdm's '01:23' / '1:02:03'."""
    if ":" in text:
        parts = [int(p) for p in text.split(":")]
        return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    hours = re.search(r"(\d+) h", text)
    minutes = re.search(r"(\d+) min", text)
    secs = re.search(r"(\d+) s", text)
    return sum(int(m.group(1)) * f for m, f in ((hours, 3600), (minutes, 60), (secs, 1)) if m)


def run(words: list[str]) -> tuple[float, str, str]:
    began = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO / "build.py"), *words], capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"build failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, done.stdout, done.stderr


def compare(stdout: str, stderr: str) -> None:
    plan = next(line for line in stdout.splitlines() if line.startswith("plan: "))
    stages = next(line for line in stdout.splitlines() if "time per stage:" in line)
    measured = {name: secs for name, secs in
                ((m.group(1), float(m.group(2))) for m in re.finditer(r"([a-z]+ [a-z]+) (\d+) s", stages))}
    print(f"  {plan}")
    print(f"  {'view':24s} {'estimate':>9s} {'took':>7s} {'took/estimate':>14s}")
    for view, prefix in STAGES.items():
        found = re.search(rf"{view} [^(]*\(([^)]*)\)", plan)
        took = sum(secs for name, secs in measured.items() if name.startswith(prefix))
        if found is None:
            continue
        estimate = seconds(found.group(1)) if found.group(1) != "not timed" else None
        ratio = f"{took / estimate:14.2f}" if estimate else f"{'-':>14s}"
        print(f"  {view:24s} {found.group(1):>9s} {took:6.0f}s {ratio}")
    # The bar's ETA part way through, against what the stage then took.
    bars = [m for m in re.finditer(r"featurevis render:\s+(\d+)%\|[^|]*\|\s*(\d+)/(\d+) \[([\d:]+)<([\d:]+)", stderr)]
    if bars:
        end = seconds(bars[-1].group(4))
        for share in (10, 50):
            bar = next((b for b in bars if int(b.group(1)) >= share), None)
            if bar is not None:
                left, actual = seconds(bar.group(5)), end - seconds(bar.group(4))
                print(f"  featurevis bar at {bar.group(1)} %: ETA {left:.0f} s, took {actual:.0f} s more "
                      f"(took/ETA {actual / max(left, 1):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", default=str(SHARED / "data"))
    parser.add_argument("--layer", default="inception_4a")
    parser.add_argument("--weights", default=str(SHARED / "weights" / "bvlc_googlenet.npz"))
    parser.add_argument("--refine", default="--units 0-7 --objectives channel",
                        help="options added to the refining build (empty: the whole layer, hours on a CPU)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        common = ["build", "--model", "inceptionv1-caffe", "--weights", args.weights, "--layers", args.layer,
                  "--images", args.images, "--store", f"{folder}/store", "--out", f"{folder}/site"]
        wall, stdout, stderr = run([*common, "--preview"])
        print(f"build --preview of {args.layer}: {wall:.0f} s wall, whole process (bar: 120 s on 2 CPU cores)")
        compare(stdout, stderr)
        hint = next(line for line in stdout.splitlines() if line.startswith("next, "))
        words = shlex.split(hint.split(": ", 1)[1])[2:] + shlex.split(args.refine)
        wall, stdout, stderr = run(words)
        print(f"\nrefining build ({args.refine or 'the whole layer'}): {wall:.0f} s wall")
        compare(stdout, stderr)


if __name__ == "__main__":
    main()
