"""The ratio metric: the comparison with the baseline, the guard rail, minimum evidence, strict mode."""

from __future__ import annotations

import numpy as np

from canaryflow.analysis_spec import RatioMetric
from canaryflow.assess.counts import Counts
from canaryflow.assess.ratio import PairCounts, assess_ratio
from canaryflow.judge import Reason, Verdict

METRIC = RatioMetric(name="error_rate")


def fold(rounds, *, limit=0.01, alpha=0.01, min_requests=50, strict=False, step_index=0, metric=METRIC):
    state, m = None, None
    for canary, baseline in rounds:
        m = assess_ratio(metric, observed=PairCounts(Counts(*canary), Counts(*baseline)), previous=state,
                         step_index=step_index, limit=limit, alpha=alpha, min_requests=min_requests, strict=strict)
        state = m.state
    return m


def test_a_canary_like_its_baseline_passes_with_the_numbers():
    m = fold([((100, 0), (900, 1))] * 5)
    assert m.verdict is Verdict.PASS
    assert m.detail.startswith("error_rate: canary 0.00% (0/500) vs baseline 0.11% (5/4,500) — evidence")
    assert "limit 1.00%" in m.detail and m.bounds[0] == 0 and 0 < m.bounds[1] < 0.05


def test_a_canary_far_worse_than_its_baseline_fails_on_the_comparison():
    m = fold([((100, 3), (900, 1))] * 4, limit=0.05)  # under the absolute limit: only the comparison sees it
    assert (m.verdict, m.reason) == (Verdict.FAIL, Reason.HIGH_ERROR_RATE)
    assert "canary 3.00% (12/400) vs baseline 0.11% (4/3,600) — evidence" in m.detail
    assert m.evidence >= 100 and m.evidence_threshold == 100


def test_the_guard_rail_fails_a_canary_credibly_over_the_limit():
    m = fold([((50, 5), (0, 0))] * 4)  # a 100 % step: no baseline to compare with
    assert m.verdict is Verdict.FAIL
    assert "credibly above the 1.00% limit" in m.detail and m.bounds[0] > 0.01


def test_an_incident_on_both_versions_is_not_the_canarys_doing():
    m = fold([((100, 5), (900, 45))] * 6)  # both at 5 % against a 1 % limit
    assert m.verdict is Verdict.PASS
    assert "no worse than the baseline where both served" in m.detail


def test_too_few_canary_requests_this_step_is_inconclusive_even_when_clean():
    m = fold([((49, 0), (441, 0))])
    assert m.verdict is Verdict.INCONCLUSIVE and "49 < 50" in m.detail
    assert fold([((50, 0), (450, 0))]).verdict is Verdict.PASS  # exactly the minimum is enough


def test_the_step_minimum_counts_this_step_only():
    state = fold([((100, 0), (900, 0))]).state
    m = assess_ratio(METRIC, observed=PairCounts(Counts(10, 0), Counts(90, 0)), previous=state, step_index=1,
                     limit=0.01, alpha=0.01, min_requests=50)
    assert m.verdict is Verdict.INCONCLUSIVE and m.requests == 10
    assert m.state.canary == Counts(110, 0)  # the release's evidence carries over


def test_a_source_error_keeps_the_evidence():
    before = fold([((100, 1), (900, 1))])
    m = assess_ratio(METRIC, observed="cannot reach http://prom", previous=before.state, step_index=0,
                     limit=0.01, alpha=0.01, min_requests=50)
    assert m.verdict is Verdict.ERROR and m.state is before.state


def test_strict_mode_needs_the_upper_bound_under_the_limit():
    few = fold([((60, 0), (540, 0))], strict=True, limit=0.001)
    assert few.verdict is Verdict.INCONCLUSIVE and "strict" in few.detail
    many = fold([((2000, 0), (18000, 0))] * 5, strict=True, limit=0.001)
    assert many.verdict is Verdict.PASS


def test_the_floor_keeps_a_tiny_absolute_difference_from_rolling_back():
    clean_baseline = [((1000, 1), (9000, 0))] * 3  # 3 canary errors in 3,000 vs none in 27,000
    assert fold(clean_baseline, limit=0.5, metric=RatioMetric(name="e", floor=0)).verdict is Verdict.FAIL
    assert fold(clean_baseline, limit=0.5, metric=RatioMetric(name="e", floor=0.01)).verdict is Verdict.PASS


def test_healthy_canaries_are_rarely_rolled_back_over_a_long_release():
    rng = np.random.default_rng(7)
    rollbacks = 0
    for _ in range(200):
        rounds = [((int(n), int(rng.binomial(n, 0.001))), (int(9 * n), int(rng.binomial(9 * n, 0.001))))
                  for n in rng.poisson(100, size=30)]
        state = None
        for canary, baseline in rounds:
            m = assess_ratio(METRIC, observed=PairCounts(Counts(*canary), Counts(*baseline)), previous=state,
                             step_index=0, limit=0.001, alpha=0.01, min_requests=50)
            state = m.state
            if m.verdict is Verdict.FAIL:
                rollbacks += 1
                break
    assert rollbacks <= 8  # alpha 1 %: 2 expected at most; binomial(200, 0.01) exceeds 8 with p < 1e-3


def fold_steps(steps, **kwargs):
    """Like ``fold`` over (step index, rounds) pairs: the state carried across steps."""
    state, m = None, None
    for step_index, rounds in steps:
        for canary, baseline in rounds:
            m = assess_ratio(METRIC, observed=PairCounts(Counts(*canary), Counts(*baseline)), previous=state,
                             step_index=step_index, limit=kwargs.get("limit", 0.01), alpha=0.01, min_requests=50)
            state = m.state
    return m


HEALTHY_STEPS = [(0, [((100, 0), (900, 1))] * 5), (1, [((500, 1), (500, 0))] * 5)]


def test_over_the_limit_only_where_no_baseline_served_needs_a_baseline_not_a_rollback():
    """An incident at 100 % looks exactly like a bad canary: the verdict waits for a comparison."""
    m = fold_steps([*HEALTHY_STEPS, (2, [((1000, 50), (0, 0))] * 2)])
    assert (m.verdict, m.needs_baseline) == (Verdict.INCONCLUSIVE, True)
    assert m.reason is Reason.HIGH_ERROR_RATE  # what it rolls back for if no step back is left
    assert "canary 5.00% (100/2,000) where no baseline served, credibly above the 1.00% limit" in m.detail


def test_a_canary_worse_than_its_baseline_before_the_full_weight_still_fails_there():
    bad = [(0, [((100, 5), (900, 1))] * 2), (2, [((1000, 50), (0, 0))] * 2)]
    m = fold_steps(bad)
    assert (m.verdict, m.needs_baseline) == (Verdict.FAIL, False)


def test_a_step_back_answers_the_rounds_without_a_baseline_once():
    """Back at 50 % the baseline is as bad (the incident): shared, a PASS; up at 100 % again the
    earlier rounds without a baseline are not counted a second time."""
    incident = (2, [((1000, 50), (0, 0))] * 2)
    back = (1, [((500, 25), (500, 25))] * 4)
    m = fold_steps([*HEALTHY_STEPS, incident, back])
    assert (m.verdict, m.needs_baseline) == (Verdict.PASS, False)
    assert "no worse than the baseline where both served" in m.detail
    again = fold_steps([*HEALTHY_STEPS, incident, back, (2, [((1000, 1), (0, 0))] * 3)])
    assert (again.verdict, again.needs_baseline) == (Verdict.PASS, False)
    assert again.state.unpaired.requests == 3000


def test_the_first_round_after_a_step_back_still_reads_the_full_weight_and_is_not_held_against_it():
    incident = (2, [((1000, 50), (0, 0))] * 2)
    tail = (1, [((300, 15), (0, 0)), ((500, 25), (500, 25)), ((500, 1), (500, 0))])
    m = fold_steps([*HEALTHY_STEPS, incident, tail])
    assert (m.verdict, m.needs_baseline) == (Verdict.PASS, False)
    assert m.state.unpaired.requests == 0
