"""The detection benchmark's parts on a handful of runs: the traffic it draws, each rule's reading
of its project, and one traffic object shared by every rule (benchmarks/detection*.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from benchmarks import detection
from benchmarks.detection_rules import (
    Limits,
    SimulatedPrometheus,
    argo_rule,
    flagger_rule,
    new_judge,
    previous_rule,
    rules,
    seed_rule,
    spec_for,
    through_steps,
)
from benchmarks.detection_traffic import BOUNDS, TICK, Release, draw, run_rng, scenarios
from canaryflow.judge import Action

SCENARIOS = {s.name: s for s in scenarios()}
HEALTHY = SCENARIOS["healthy-production"]
SPEC = spec_for("production")


def test_a_run_is_drawn_per_step_weight_and_release_tick_over_the_longest_course():
    traffic = draw(HEALTHY, run_rng(1, 0, 0))
    release = traffic.release
    ticks = release.horizon_ticks
    assert ticks == 5 * release.step_ticks  # three steps held to their limit, a step back and up again
    assert traffic.canary.requests.shape == (3, ticks) and traffic.canary.buckets.shape == (3, ticks, len(BOUNDS))
    for arm in (traffic.canary, traffic.baseline):
        assert (arm.errors <= arm.requests).all()
        np.testing.assert_array_equal(arm.buckets.sum(axis=-1), arm.requests)
    served = traffic.canary.requests + traffic.baseline.requests
    share = traffic.canary.requests.sum(axis=1) / served.sum(axis=1)
    np.testing.assert_allclose(share, [0.1, 0.5, 1.0], atol=0.02)
    assert traffic.baseline.requests[2].sum() == 0  # at 100 % the baseline serves nothing
    # 10 canary requests/s at the first step: the service serves 100/s, the same arrivals at every weight.
    assert served[0].sum() / (ticks * TICK) == pytest.approx(100, rel=0.05)
    np.testing.assert_array_equal(served[0], served[2])
    assert traffic.history.requests == pytest.approx(100 * 300, rel=0.05)


def test_the_same_seed_draws_the_same_counts_and_another_run_others():
    a, b, c = (draw(HEALTHY, run_rng(7, 0, run)) for run in (3, 3, 4))
    np.testing.assert_array_equal(a.canary.buckets, b.canary.buckets)
    assert not np.array_equal(a.canary.requests, c.canary.requests)


def test_an_incident_raises_both_versions_errors_for_two_minutes():
    traffic = draw(SCENARIOS["incident"], run_rng(2, 0, 0))
    start, release = traffic.incident_start, traffic.release
    clock = (np.arange(release.horizon_ticks) + 0.5) * TICK
    hit = np.broadcast_to((clock >= start) & (clock < start + 120), (3, release.horizon_ticks))
    checked = 0
    for arm in (traffic.canary, traffic.baseline):
        if arm.requests[hit].sum() > 500:  # the baseline serves nothing at 100 %
            during = arm.errors[hit].sum() / arm.requests[hit].sum()
            outside = arm.errors[~hit].sum() / arm.requests[~hit].sum()
            assert during > 0.03 and outside < 0.002
            checked += 1
    assert checked == 2


def test_a_slow_tail_moves_that_share_of_requests_past_the_limit():
    traffic = draw(SCENARIOS["tail+300ms"], run_rng(3, 0, 0))
    over = BOUNDS.index(0.3)  # requests slower than 300 ms fall in the buckets after le=0.3
    canary, baseline = traffic.canary.buckets[0].sum(axis=0), traffic.baseline.buckets[0].sum(axis=0)
    assert canary[over + 1:].sum() / canary.sum() == pytest.approx(0.05, abs=0.015)
    assert baseline[over + 1:].sum() == 0


TWENTY_PERCENT = replace(SCENARIOS["errors-2%-10rps"], name="errors-20%", canary_error_rate=0.2)


@pytest.mark.parametrize("run", range(3))
def test_every_rule_rolls_back_a_twenty_percent_error_canary(run):
    traffic = draw(TWENTY_PERCENT, run_rng(4, 0, run))
    for rule in rules():
        outcome = rule.judge(traffic, SPEC)
        assert outcome.rolled_back and outcome.reason == "high_error_rate", rule.name
        assert 0 < outcome.canary_errors < outcome.canary_requests


def test_each_rule_rolls_back_when_its_reading_says():
    """The schedules of the module docstring: seed at the end of the wait; Flagger one interval
    after the threshold-th failed check; Argo at the first failed measurement; canaryflow at the
    first round with data."""
    traffic = draw(TWENTY_PERCENT, run_rng(5, 0, 0))
    limits = Limits.of(SPEC)
    assert seed_rule(traffic, limits).seconds == 300
    assert flagger_rule(traffic, limits, threshold=1).seconds == 120
    assert flagger_rule(traffic, limits, threshold=5).seconds == 360
    assert argo_rule(traffic, limits).seconds == 60
    assert previous_rule(traffic, limits).seconds == 30
    assert new_judge(traffic, SPEC).seconds == 30


def test_every_rule_promotes_a_canary_without_errors():
    clean = replace(HEALTHY, name="clean", baseline_error_rate=0.0, canary_error_rate=0.0)
    traffic = draw(clean, run_rng(6, 0, 0))
    for rule in rules():
        outcome = rule.judge(traffic, SPEC)
        assert not outcome.rolled_back and outcome.reason == "promoted", (rule.name, outcome)
        assert outcome.step == 2 and outcome.seconds >= 900


def test_the_simulated_prometheus_answers_raw_counters_as_the_demo_service_has_them():
    traffic = draw(HEALTHY, run_rng(8, 0, 0))
    source = SimulatedPrometheus(traffic)
    source.move_to([(0, 300), (1, 30)])
    canary = source.query_series('http_requests_total{service="checkout",version="v2"}').series
    errors = source.query_series('http_requests_total{service="checkout",version="v2",code=~"5.."}').series
    buckets = source.query_series('http_request_duration_seconds_bucket{service="checkout",version="v1"}').series
    wait, hold = 300 // TICK, 30 // TICK
    # Release seconds 0-300 at the first weight, then 300-330 at the second.
    served = traffic.canary.requests[0, :wait].sum() + traffic.canary.requests[1, wait:wait + hold].sum()
    assert sum(canary.values()) == served and set(errors) == {(("code", "500"),)}
    baseline = (traffic.history.requests + traffic.baseline.requests[0, :wait].sum()
                + traffic.baseline.requests[1, wait:wait + hold].sum())
    assert buckets[(("le", "+Inf"),)] == baseline
    cumulative = [buckets[(("le", "+Inf" if b == float("inf") else repr(b)),)] for b in BOUNDS]
    assert cumulative == sorted(cumulative)


def test_a_step_back_reads_the_previous_weight_again_later_on_the_release_clock():
    traffic = draw(HEALTHY, run_rng(9, 0, 0))
    answers = iter([(Action.ADVANCE, "analysis_passed"), (Action.ADVANCE, "analysis_passed"),
                    (Action.STEP_BACK, "needs_baseline"), (Action.ADVANCE, "analysis_passed"),
                    (Action.PROMOTE, "analysis_passed")])
    courses = []

    def judge_round(k, elapsed, done):
        courses.append((k, [*done]))
        return next(answers)

    outcome = through_steps(traffic, 30, judge_round)
    assert [k for k, _ in courses] == [0, 1, 2, 1, 2]
    assert courses[-1][1] == [(0, 0), (1, 0), (2, 0), (1, 0)]
    assert (outcome.rolled_back, outcome.step) == (False, 2)


def _incident_run(*, within: tuple[float, float]):
    """The first incident run whose incident starts inside ``within`` (release seconds)."""
    index = [s.name for s in scenarios()].index("incident")
    for run in range(500):
        traffic = draw(SCENARIOS["incident"], run_rng(11, index, run))
        if within[0] <= traffic.incident_start <= within[1]:
            return traffic
    raise AssertionError("no incident run starts there")


def test_an_incident_at_the_full_weight_makes_the_new_judge_step_back_not_roll_back():
    """With no baseline at 100 % the incident looks like the canary's fault: the previous rule rolls
    back; the new judge steps back to 50 %, sees the baseline as bad, and promotes a step later."""
    traffic = _incident_run(within=(640.0, 700.0))
    assert previous_rule(traffic, Limits.of(SPEC)).rolled_back
    outcome = new_judge(traffic, SPEC)
    assert not outcome.rolled_back, outcome
    assert outcome.seconds >= 4 * 300  # the step back cost the 50 % step's wait once more


def test_one_traffic_object_is_fed_to_every_rule(monkeypatch):
    seen: list[list[int]] = []

    class Spy:
        def __init__(self, name: str) -> None:
            self.name = name

        def judge(self, traffic, spec):
            if self.name == "first":
                seen.append([])
            seen[-1].append(id(traffic))
            return detection.Outcome(False, "promoted", 900.0, 1, 0, 2)

    monkeypatch.setattr(detection, "rules", lambda interval=30: (Spy("first"), Spy("second"), Spy("third")))
    index = [s.name for s in scenarios()].index("healthy-production")
    _, outcomes = detection.run_task(detection.Task(index, 0, 3, seed=1, interval=30))
    assert len(outcomes) == 3 and len(seen) == 3
    assert all(len(set(ids)) == 1 for ids in seen)  # the same object for every rule of a run
    assert len({ids[0] for ids in seen}) == 3  # and a new one per run


def test_the_command_prints_tables_and_targets_and_writes_markdown(tmp_path, capsys):
    markdown = tmp_path / "detection.md"
    detection.main(["--runs", "3", "--scenario", "errors-2%-10rps", "--workers", "1", "--markdown", str(markdown)])
    printed = capsys.readouterr().out
    assert "== errors ==" in printed and "Flagger threshold 5" in printed and "Argo failureLimit 0" in printed
    assert "[         met] 2 % vs 0.1 % at 10 canary req/s: rolled back in 100 %" in printed
    assert "| canaryflow new judge | 3 | — | 100.00 % |" in markdown.read_text()


@pytest.mark.parametrize("argv", [["--scenario", "nope"], ["--interval", "7"], ["--runs", "0"]])
def test_bad_options_are_refused(argv):
    with pytest.raises(SystemExit) as refused:
        detection.parse(argv)
    assert refused.value.code == 2


def test_the_release_shape_must_fit_the_ticks():
    with pytest.raises(ValueError, match="multiples"):
        Release(wait=302)
