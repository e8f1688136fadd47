"""Two real processes on one store (or one site folder): one runs, the other stops at once with one line
naming the first; the store holds exactly what the winner computed, never a mix."""
import subprocess

import pytest

from generated import cli, command, lock_holder, QUICK_CARICATURES
from microscope.site.builder import SITE_LOCK
from microscope.store import ExamplesResult, ExamplesSummary, Store
from site_fixtures import make_store
from test_custom_model import model_and_photos


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return model_and_photos(tmp_path_factory.mktemp("race"), seed=6)


def _build(model, store, out, top):
    return command("build", *QUICK_CARICATURES, "--model", f"{model / 'tiny.py'}:tiny", "--weights", model / "tiny.pth", "--layers",
                   "features_4", "--units", "0-1", "--steps", "2", "--size", "32", "--objectives", "channel",
                   "--top-k", top, "--images", model / "photos", "--store", store, "--out", out, "--quiet")


def test_two_builds_with_different_settings_on_one_store(model, tmp_path):
    store = tmp_path / "store"
    runs = {top: subprocess.Popen(_build(model, store, tmp_path / f"site{top}", top), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for top in (2, 3)}
    outcomes = {top: (run.wait(timeout=300), run.stdout.read(), run.stderr.read()) for top, run in runs.items()}
    codes = sorted(code for code, _, _ in outcomes.values())
    if codes == [0, 0]:  # one finished before the other took the lock: both are whole, the last one stands
        pytest.skip("the runs did not overlap on this machine")
    assert codes == [0, 2], outcomes
    winner = next(top for top, (code, _, _) in outcomes.items() if code == 0)
    loser = 5 - winner
    lines = outcomes[loser][2].strip().splitlines()
    assert len(lines) == 1 and "is in use by another run (pid " in lines[0] and str(runs[winner].pid) in lines[0], lines
    stored = Store(store)
    result = stored.read(stored.examples_result_file("tiny-tiny", "features_4"), ExamplesResult)
    summary = stored.read(stored.examples_summary_file("tiny-tiny", "features_4"), ExamplesSummary)
    assert result.top_k == winner and summary.top_index.shape[1] == winner  # what the winner computed, not a mix
    again = cli(*_build(model, store, tmp_path / f"site{loser}", loser)[2:])  # the loser, rerun, now computes
    assert "dataset examples: 1 layers computed" in again.stdout
    assert stored.read(stored.examples_summary_file("tiny-tiny", "features_4"), ExamplesSummary).top_index.shape[1] == loser


def test_a_site_folder_being_written_is_not_written_by_another_run(model, tmp_path):
    """The site lock, held by another process exactly as build_site holds it (a real site build is over
    too quickly on a small store to be caught in the act)."""
    store, site = make_store(tmp_path / "store").root, tmp_path / "site"
    cli("site", "--store", store, "--out", site, "--quiet")
    holder = lock_holder(site, "the site", SITE_LOCK, "--out")
    busy = f"error: the site {site} is in use by another run (pid {holder.pid}); wait for it to finish, or pass another --out"
    try:
        assert cli("site", "--store", store, "--out", site, code=2).stderr.strip() == busy
        # A build says so before its work: nothing loaded, nothing computed, nothing written to its store.
        build = _build(model, tmp_path / "new store", site, 2)
        assert cli(*build[2:], code=2).stderr.strip() == busy
        assert not (tmp_path / "new store").exists()
    finally:
        holder.kill()
        holder.wait()
    cli("site", "--store", store, "--out", site, "--quiet")  # after the holder is gone: the folder is free again
    assert cli("verify", "--store", store, "--out", site).returncode == 0
