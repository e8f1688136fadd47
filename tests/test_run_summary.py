"""A run's summary counts a piece (a render, a layer) as computed only when the job completing it finished:
the others are failed (a job they need raised) or not run (a full disk held them back)."""
from microscope.jobs import make_job
from microscope.run.executors.progress import RunReport
from microscope.run.pipeline import Outcome
from microscope.view import ViewPlan


def renders(*units_per_job):
    return [make_job("featurevis", "render", "conv2", {"units": list(units)}, pieces=len(units))
            for units in units_per_job]


def test_pieces_are_computed_only_when_their_job_finished():
    jobs = renders([0, 1], [2, 3], [4])
    index = make_job("examples", "index", "", {"pass": 1})
    finish = make_job("examples", "finish", "conv2", {"pass": 1}, after=[index.key], pieces=1)
    report = RunReport(finished={jobs[0].key, index.key}, broken={jobs[1].key, finish.key},
                       failed=["featurevis render conv2: RuntimeError: boom"],
                       skipped=["examples finish conv2"])
    outcome = Outcome(layers=["conv2"], run=report, plans={
        "featurevis": ViewPlan(jobs, todo=5, done=3, what="renders"),
        "examples": ViewPlan([index, finish], todo=1, what="layers")})
    summary = outcome.summary()
    assert "  feature visualization: 2 renders computed, 2 failed, 1 not run, 3 reused" in summary
    assert "  dataset examples: 0 layers computed, 1 failed, 0 reused" in summary
    assert "  failed: featurevis render conv2: RuntimeError: boom" in summary
    assert "  not run, as a job they need failed: examples finish conv2" in summary
    assert outcome.exit_code == 1


def test_refusals_and_views_that_say_no_pieces():
    pairs = [make_job("circuits", "weights", layer, {"layer": layer}, pieces=1) for layer in ("a", "b", "c")]
    plan = ViewPlan(pairs, todo=3, what="layer pairs", refusals=frozenset({pairs[1].key}))
    assert plan.refused == 1
    assert plan.counts({job.key for job in pairs}, set()) == (2, 1, 0, 0)
    unsaid = ViewPlan([make_job("grey", "measure", layer, {}) for layer in ("a", "b")], todo=2)
    assert unsaid.counts({job.key for job in unsaid.jobs}, set()) == (2, 0, 0, 0)
    assert unsaid.counts({unsaid.jobs[0].key}, set()) == (0, 0, 0, 2)  # never "computed" before all finished
    assert unsaid.counts({unsaid.jobs[0].key}, {unsaid.jobs[1].key}) == (0, 0, 2, 0)
    outcome = Outcome(layers=["a"], plans={"circuits": plan}, run=RunReport(finished={job.key for job in pairs}))
    assert "circuit: 2 layer pairs computed, 1 refused, 0 reused" in outcome.summary() and outcome.exit_code == 0
