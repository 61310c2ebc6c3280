"""The ratio metric: the comparison with the baseline, the guard rail, minimum evidence, strict mode."""

from __future__ import annotations

import numpy as np
import pytest

from canaryflow.analysis_spec import Grid, RatioMetric
from canaryflow.assess.counts import Counts
from canaryflow.assess.ratio import PairCounts, assess_ratio, bounds, guard_rail_b
from canaryflow.judge import Reason, Verdict
from canaryflow.stats import beta_binomial_cs

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
    held = fold(clean_baseline, limit=0.5, metric=RatioMetric(name="e", floor=0.01))
    assert held.verdict is Verdict.PASS and held.evidence >= 100
    # The pass says what held the comparison back, never "evidence < threshold" over evidence above it.
    assert "— evidence" in held.detail and ">= 100, but the canary is not credibly above the 1.00% floor" in held.detail
    assert "< 100" not in held.detail


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


def figures(m):
    return (m.metric, m.verdict, m.value, m.threshold, m.unit, m.requests, m.baseline, m.baseline_requests,
            m.evidence_threshold, m.reason, m.needs_baseline)


def test_a_passing_round_says_the_evidence_and_the_canarys_upper_bound():
    m = fold([((30, 0), (270, 0))] * 2)  # two rounds of one step add up to the step's minimum
    assert figures(m) == ("error_rate", Verdict.PASS, 0.0, 0.01, "ratio", 60, 0.0, 540, 100, Reason.HIGH_ERROR_RATE,
                          False)
    assert m.detail == ("error_rate: canary 0.00% (0/60) vs baseline 0.00% (0/540) — evidence 1.00 < 100; "
                        "canary <= 9.50% (99% bound), limit 1.00%")
    assert m.evidence == 1.0 and m.bounds == bounds(Counts(60, 0), alpha=0.01, limit=0.01)


def test_a_shared_incident_passes_and_says_it_is_not_the_canarys_doing():
    m = fold([((100, 5), (900, 45))] * 6)
    assert figures(m) == ("error_rate", Verdict.PASS, 0.05, 0.01, "ratio", 600, 0.05, 5400, 100,
                          Reason.HIGH_ERROR_RATE, False)
    assert m.detail == ("error_rate: canary 5.00% (30/600) vs baseline 5.00% (270/5,400) — evidence 0.00 < 100; "
                        "canary <= 8.83% (99% bound), limit 1.00% (over the limit, but no worse than the baseline "
                        "where both served: not the canary's doing)")
    assert m.bounds[0] > 0.01 and m.evidence < 0.01


def test_a_failed_comparison_names_the_evidence_and_the_level():
    m = fold([((100, 3), (900, 1))] * 4, limit=0.05)
    assert figures(m) == ("error_rate", Verdict.FAIL, 0.03, 0.05, "ratio", 400, 1 / 900, 3600, 100,
                          Reason.HIGH_ERROR_RATE, False)
    assert m.detail == ("error_rate: canary 3.00% (12/400) vs baseline 0.11% (4/3,600) — evidence 6.3e+07 >= 100 "
                        "(alpha 1.00%)")
    assert m.bounds == bounds(Counts(400, 12), alpha=0.01, limit=0.05)


def test_the_guard_rail_failure_names_the_lower_bound_and_the_baseline():
    m = fold([((50, 5), (0, 0))] * 4)
    assert figures(m) == ("error_rate", Verdict.FAIL, 0.1, 0.01, "ratio", 200, None, 0, 100, Reason.HIGH_ERROR_RATE,
                          False)
    assert m.detail == ("error_rate: canary 10.00% (20/200) is credibly above the 1.00% limit (at least 4.06%, "
                        "99% bound); baseline n/a (0/0)")
    assert m.evidence == 1.0 and m.bounds[0] == pytest.approx(0.0406, abs=5e-5)


def test_the_guard_rail_blames_a_canary_worse_than_the_baseline_of_the_same_rounds():
    """With the comparison kept out (a floor no rate reaches), the guard rail alone decides: the
    baseline serving beside the canary fails at 1 %, the canary at 10 %."""
    metric = RatioMetric(name="e", floor=0.9)
    m = fold([((100, 10), (900, 9))] * 4, limit=0.02, metric=metric)
    assert (m.verdict, m.needs_baseline) == (Verdict.FAIL, False)
    assert m.detail == ("e: canary 10.00% (40/400) is credibly above the 2.00% limit (at least 5.44%, 99% bound); "
                        "baseline 1.00% (36/3,600)")
    assert m.evidence >= 100  # the comparison saw it too, but the floor kept it from deciding


def test_a_healthy_canary_with_no_baseline_at_all_passes_on_the_limit_alone():
    m = fold([((1000, 0), (0, 0))] * 3)  # a 100 % step from the start
    assert figures(m) == ("error_rate", Verdict.PASS, 0.0, 0.01, "ratio", 3000, None, 0, 100, Reason.HIGH_ERROR_RATE,
                          False)
    assert m.detail == ("error_rate: canary 0.00% (0/3,000) vs baseline n/a (0/0) — evidence 1.00 < 100; "
                        "canary <= 0.32% (99% bound), limit 1.00%")


def test_too_few_requests_still_reports_the_evidence_and_bounds():
    m = fold([((49, 0), (441, 0))])
    assert figures(m) == ("error_rate", Verdict.INCONCLUSIVE, 0.0, 0.01, "ratio", 49, 0.0, 441, 100,
                          Reason.HIGH_ERROR_RATE, False)
    assert m.detail == ("error_rate: too few canary requests at this step: 49 < 50 "
                        "(canary 0.00% (0/49) vs baseline 0.00% (0/441))")
    assert m.evidence == 1.0 and m.bounds == bounds(Counts(49, 0), alpha=0.01, limit=0.01)


def test_strict_mode_says_the_upper_bound_it_waits_on():
    m = fold([((60, 0), (540, 0))], strict=True, limit=0.001)
    assert figures(m) == ("error_rate", Verdict.INCONCLUSIVE, 0.0, 0.001, "ratio", 60, 0.0, 540, 100,
                          Reason.HIGH_ERROR_RATE, False)
    assert m.detail == ("error_rate: canary 0.00% (0/60) vs baseline 0.00% (0/540); strict: upper bound 7.79% "
                        "not yet below the 0.10% limit")
    assert m.evidence == 1.0 and m.bounds == bounds(Counts(60, 0), alpha=0.01, limit=0.001)


def test_a_source_error_on_the_first_round_reports_no_rate_and_neutral_evidence():
    m = assess_ratio(METRIC, observed="cannot reach http://prom", previous=None, step_index=0, limit=0.01,
                     alpha=0.01, min_requests=50)
    assert figures(m) == ("error_rate", Verdict.ERROR, None, 0.01, "ratio", 0, None, 0, 100, Reason.HIGH_ERROR_RATE,
                          False)
    assert m.detail == "error_rate: metric source failed: cannot reach http://prom"
    assert (m.evidence, m.bounds) == (1.0, None)
    after = assess_ratio(METRIC, observed=PairCounts(Counts(60, 0), Counts(540, 0)), previous=m.state, step_index=0,
                         limit=0.01, alpha=0.01, min_requests=50)
    assert (after.verdict, after.requests) == (Verdict.PASS, 60)


def test_a_later_source_error_reports_the_evidence_so_far():
    before = fold([((100, 3), (900, 1))] * 2, limit=0.05)
    m = assess_ratio(METRIC, observed="timeout", previous=before.state, step_index=0, limit=0.05, alpha=0.01,
                     min_requests=50)
    assert figures(m) == ("error_rate", Verdict.ERROR, 0.03, 0.05, "ratio", 200, 1 / 900, 1800, 100,
                          Reason.HIGH_ERROR_RATE, False)
    assert m.detail == "error_rate: metric source failed: timeout"
    assert m.evidence == before.evidence > 1 and m.bounds is None


def test_the_reason_given_is_what_a_failure_rolls_back_for():
    m = assess_ratio(METRIC, observed=PairCounts(Counts(200, 20), Counts(0, 0)), previous=None, step_index=0,
                     limit=0.01, alpha=0.01, min_requests=50, reason=Reason.HIGH_LATENCY)
    assert (m.verdict, m.reason) == (Verdict.FAIL, Reason.HIGH_LATENCY)


def test_the_default_floor_is_a_tenth_of_the_limit():
    """A canary ten times its baseline rolls back on the comparison only when its own rate is credibly
    above a tenth of the 1 % limit: at 0.098 % it is not, at 0.102 % it is (a hundred million requests
    make the bounds narrow enough to tell)."""
    baseline = (100_000_000, 10_000)
    under = fold([((100_000_000, 98_000), baseline)])
    over = fold([((100_000_000, 102_000), baseline)])
    assert under.evidence >= 100 and under.bounds[1] < 0.001 and under.verdict is Verdict.PASS
    assert over.verdict is Verdict.FAIL and over.bounds[0] > 0.001
    assert over.detail.endswith(">= 100 (alpha 1.00%)")


def test_the_guard_rail_bounds_use_a_beta_prior_of_a_fifth_of_the_inverse_limit_and_at_least_one():
    assert guard_rail_b(0.01) == pytest.approx(20) and guard_rail_b(0.5) == 1.0 and guard_rail_b(0.1) == 2.0
    for limit, b in ((0.01, 20.0), (0.5, 1.0)):
        m = fold([((100, 30), (0, 0))], limit=limit)
        assert m.bounds == pytest.approx(beta_binomial_cs(30, 100, alpha=0.01, b=b), rel=1e-12)


def test_the_evidence_averages_the_likelihood_ratio_over_the_metrics_grid_against_its_tolerance():
    """One round, canary 4 of the 6 events with a quarter of the requests: each grid ratio r gives
    the binomial likelihood ratio of the canary's share of events, theta(r) against theta(tolerance)."""
    metric = RatioMetric(name="e", tolerance=1.5, grid=Grid(low=2, high=4, points=2))
    m = fold([((100, 4), (300, 2))], metric=metric, min_requests=1)
    rho, canary, both = 0.25, 4, 6

    def theta(r):
        return rho * r / (1 + rho * (r - 1))

    def likelihood_ratio(r):
        return (theta(r) / theta(1.5)) ** canary * ((1 - theta(r)) / (1 - theta(1.5))) ** (both - canary)

    assert m.evidence == pytest.approx((likelihood_ratio(2) + likelihood_ratio(4)) / 2, rel=1e-12)


def test_rounds_pair_when_both_versions_served_and_the_baseline_rate_is_matched_round_by_round():
    m = fold([
        ((100, 0), (900, 9)),  # paired: 100 requests at the baseline's 1 % are 1 expected event
        ((1, 0), (100, 1)),  # one canary request is still a paired round: 0.01
        ((200, 1), (0, 0)),  # no baseline: unpaired
        ((0, 0), (50, 5)),  # no canary: nothing to match
        ((100, 1), (1, 0)),  # one baseline request is still a baseline: paired, 0 expected
    ])
    assert m.state.paired == Counts(201, 1) and m.state.unpaired == Counts(200, 1)
    assert m.state.matched_baseline == pytest.approx(1.01)
    assert (m.state.canary, m.state.baseline) == (Counts(401, 2), Counts(1051, 15))


def test_a_few_requests_over_the_limit_where_no_baseline_served_do_not_ask_for_a_baseline():
    """After a shared incident, one small round at 100 % at 5 % is not credibly over the limit on its
    own: no step back, the incident stays shared."""
    shared = (1, [((500, 25), (500, 25))] * 4)
    m = fold_steps([(0, [((100, 0), (900, 1))] * 5), shared, (2, [((60, 3), (0, 0))])])
    assert (m.verdict, m.needs_baseline) == (Verdict.PASS, False)
    assert m.detail.endswith(
        "(over the limit, but no worse than the baseline where both served: not the canary's doing)")
    assert m.state.unpaired == Counts(60, 3)


def test_over_the_limit_only_where_no_baseline_served_reports_its_figures():
    m = fold_steps([*HEALTHY_STEPS, (2, [((1000, 50), (0, 0))] * 2)])
    assert figures(m) == ("error_rate", Verdict.INCONCLUSIVE, 0.021, 0.01, "ratio", 2000, 5 / 7000, 7000, 100,
                          Reason.HIGH_ERROR_RATE, True)
    assert m.detail == ("error_rate: canary 5.00% (100/2,000) where no baseline served, credibly above the 1.00% "
                        "limit (at least 3.38%, 99% bound); no worse than the baseline where both served "
                        "(canary 2.10% (105/5,000) vs baseline 0.071% (5/7,000))")
    assert m.bounds == bounds(Counts(5000, 105), alpha=0.01, limit=0.01) and m.evidence < 100
