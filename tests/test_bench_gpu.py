"""bench/gpu.py --device cpu --quick: the whole script in a process of its own, its table parsed."""
import re
import subprocess
import sys

from generated import REPO, blob_photos

STAGES = ("feature vis., lucid recipe", "feature vis., fast recipe", "torch-lucent", "examples pass", "SAE training",
          "atlas icons", "site")


def seconds(cell: str) -> float:
    return float(re.match(r"\*{0,2}([\d.]+) s \(", cell).group(1))


def test_quick_run_prints_every_stage_and_a_total_that_adds_up(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    blob_photos(photos, 4, seed=3)
    result = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--device", "cpu", "--quick",
                             "--photos", str(photos), "--weights", "random", "--photo-count", "1000"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.index("Timing:") < out.index("| stage |")  # the plan first
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| stage")]
    by_stage = {stage: next(row for row in rows if row[0].startswith(stage)) for stage in STAGES}
    # The compiled row beside the eager one: not timed by a quick run on a CPU (compiling would be most of it).
    compiled = next(row for row in rows if row[0].startswith("feature vis., lucid recipe, compiled"))
    assert "batch 8" in compiled[0] and compiled[1].startswith("not timed") and "not in the total" in compiled[4]
    projected = []
    for stage, (_, measured, _, _, projection) in by_stage.items():
        if stage == "torch-lucent":  # a comparison, not a stage of the build
            assert "not in the total" in projection
            assert measured == "not installed" or float(measured.split()[0]) > 0
            continue
        assert all(float(number) > 0 for number in re.findall(r"[\d.]+(?= )", measured)), measured
        projected.append(seconds(projection))
        assert projected[-1] > 0, stage
    total = rows[-1]
    assert total[0] == "**total**" and f"{total[-1]} |\n" in out
    # each projection is printed to 0.1 s: the sum of the printed ones may differ by 0.05 s per row
    assert abs(seconds(total[-1]) - sum(projected)) <= 0.05 * len(projected) + 1e-6
    # The last line: the CPU's share, its parts no more than the examples and site rows they come from.
    share = re.fullmatch(r"CPU work after the device's: examples after the pass (.+), site pages (.+); "
                         r"([\d.]+)% of the projected total, on \d+ cores", out.rstrip().splitlines()[-1])
    after, pages = seconds(share.group(1)), seconds(share.group(2))
    assert after <= seconds(by_stage["examples pass"][4]) + 0.05 and abs(pages - seconds(by_stage["site"][4])) <= 0.05
    assert abs(float(share.group(3)) - 100 * (after + pages) / seconds(total[-1])) < 0.5
