"""The latency metric: slow-request counts at fixed boundaries, the quantile guard rail, buckets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from canaryflow.analysis_spec import Grid, LatencyMetric
from canaryflow.assess.counts import EMPTY_HISTOGRAM, Histogram
from canaryflow.assess.latency import (
    HistogramPair,
    LatencyState,
    assess_latency,
    auto_boundaries,
    limit_boundary,
    to_ms,
)
from canaryflow.judge import Reason, Verdict
from canaryflow.local.service import LATENCY_BUCKETS

METRIC = LatencyMetric(name="p95_latency")
BOUNDS = (*LATENCY_BUCKETS, math.inf)


def histogram(rng: np.random.Generator, n: int, *, p50_ms: float, p95_ms: float, slow_fraction: float = 0,
              extra_ms: float = 0) -> Histogram:
    mu, sigma = math.log(p50_ms), (math.log(p95_ms) - math.log(p50_ms)) / 1.6448536
    latencies = np.exp(rng.normal(mu, sigma, size=n))
    latencies[rng.random(n) < slow_fraction] += extra_ms
    seconds = latencies / 1000
    return Histogram.from_increase({le: float((seconds <= le).sum()) for le in BOUNDS})


def fold(rounds, *, boundaries=(0.025, 0.05, 0.075), limit_ms=200, alpha=0.01, min_requests=50, strict=False):
    state, m = None, None
    for canary, baseline in rounds:
        m = assess_latency(METRIC, observed=HistogramPair(canary, baseline), previous=state, step_index=0,
                           boundaries=boundaries, unit="seconds", limit_ms=limit_ms, alpha=alpha,
                           min_requests=min_requests, strict=strict)
        state = m.state
        if m.verdict is Verdict.FAIL:
            break
    return m


def test_a_canary_like_its_baseline_passes():
    rng = np.random.default_rng(1)
    m = fold([(histogram(rng, 100, p50_ms=20, p95_ms=45), histogram(rng, 900, p50_ms=20, p95_ms=45))
              for _ in range(10)])
    assert m.verdict is Verdict.PASS and m.unit == "ms"
    assert 35 < m.value < 60 and 35 < m.baseline < 60
    assert "slower than 25/50/75 ms" in m.detail


def test_thirty_percent_slower_inside_the_slo_is_caught_against_the_baseline():
    rng = np.random.default_rng(2)
    m = fold([(histogram(rng, 100, p50_ms=26, p95_ms=58.5), histogram(rng, 900, p50_ms=20, p95_ms=45))
              for _ in range(30)])
    assert (m.verdict, m.reason) == (Verdict.FAIL, Reason.HIGH_LATENCY)
    assert m.value < 200  # well within the absolute limit: only the comparison sees it
    assert "evidence" in m.detail and m.evidence >= 100


def test_a_slow_tail_is_caught():
    rng = np.random.default_rng(3)
    m = fold([(histogram(rng, 100, p50_ms=20, p95_ms=45, slow_fraction=0.05, extra_ms=300),
               histogram(rng, 900, p50_ms=20, p95_ms=45)) for _ in range(30)])
    assert m.verdict is Verdict.FAIL


def test_the_guard_rail_fails_a_p95_over_the_limit_without_a_baseline():
    rng = np.random.default_rng(4)
    empty = Histogram.from_increase({le: 0 for le in BOUNDS})
    m = fold([(histogram(rng, 100, p50_ms=350, p95_ms=600), empty) for _ in range(5)])
    assert m.verdict is Verdict.FAIL
    assert "slower than 200 ms, credibly above 5.00%" in m.detail


def test_different_buckets_are_not_comparable():
    rng = np.random.default_rng(5)
    other = Histogram.from_increase({0.1: 5, math.inf: 10})
    m = fold([(histogram(rng, 100, p50_ms=20, p95_ms=45), other)])
    assert m.verdict is Verdict.ERROR and "different buckets" in m.detail


def test_a_boundary_that_is_not_a_bucket_is_an_error():
    rng = np.random.default_rng(6)
    h = histogram(rng, 100, p50_ms=20, p95_ms=45)
    m = fold([(h, h)], boundaries=(0.03,))
    assert m.verdict is Verdict.ERROR and "[30.0] ms are not buckets" in m.detail


def test_auto_boundaries_follow_the_baseline_quantiles_and_fall_back_to_the_limit():
    rng = np.random.default_rng(7)
    history = histogram(rng, 20_000, p50_ms=20, p95_ms=45)
    chosen = auto_boundaries(history, limit_le=0.2)
    assert chosen[0] == 0.025 and list(chosen) == sorted(chosen) and len(chosen) >= 3
    assert auto_boundaries(Histogram.from_increase({0.1: 5, math.inf: 5}), limit_le=0.2) == (0.2,)


def _all_fast(n: int) -> Histogram:
    """``n`` requests, every one in the first bucket: nothing to hold against the canary but its count."""
    return Histogram.from_increase({le: float(n) for le in BOUNDS})


def test_exactly_min_requests_at_the_step_is_enough_one_fewer_is_not():
    short = fold([(_all_fast(49), _all_fast(441))])
    assert short.verdict is Verdict.INCONCLUSIVE and "49 < 50" in short.detail
    assert fold([(_all_fast(50), _all_fast(450))]).verdict is Verdict.PASS


# Hand-built histograms: five buckets, counts cumulative (requests at or under each ``le``, in seconds).
LE = (0.05, 0.1, 0.2, 0.3, math.inf)
#: 900 baseline requests: 20 % slower than 50 ms, 5 % slower than 100 ms, 1 % slower than 200 ms.
BASELINE = (720, 855, 891, 900, 900)


def cumulative(*at_or_under: float, le: tuple[float, ...] = LE) -> Histogram:
    return Histogram.from_increase(dict(zip(le, at_or_under, strict=True)))


def judge(canary, baseline, *, previous=None, step_index=0, boundaries=(0.05, 0.1), unit="seconds", limit_ms=200,
          alpha=0.01, min_requests=50, metric=METRIC, **options):
    observed = baseline if isinstance(baseline, str) else HistogramPair(canary, baseline)
    return assess_latency(metric, observed=observed, previous=previous, step_index=step_index,
                          boundaries=boundaries, unit=unit, limit_ms=limit_ms, alpha=alpha,
                          min_requests=min_requests, **options)


def like_the_baseline(scale: int = 1) -> tuple[Histogram, Histogram]:
    """A canary with a ninth of the baseline's traffic and the same shape."""
    return (cumulative(*(80 * scale, 95 * scale, 99 * scale, 100 * scale, 100 * scale)),
            cumulative(*(n * scale for n in BASELINE)))


def test_a_pass_reports_every_figure_of_the_round():
    m = judge(*like_the_baseline())
    assert m.verdict is Verdict.PASS
    assert m.detail == ("p95_latency: canary p95 ~100 ms vs baseline ~100 ms; slower than 50/100 ms: "
                        "canary 20.00%/5.00% vs baseline 20.00%/5.00% — evidence 0.08 < 100; limit p95 <= 200 ms")
    assert (m.metric, m.value, m.threshold, m.unit, m.requests) == ("p95_latency", 100.0, 200, "ms", 100)
    assert (m.reason, m.baseline, m.baseline_requests) == (Reason.HIGH_LATENCY, 100.0, 900)
    assert m.evidence == pytest.approx(0.0826248, rel=1e-5) and m.evidence_threshold == 100
    lower, upper = m.bounds  # the canary's share slower than the 200 ms limit: 1 in 100
    assert 0 < lower < 0.01 < upper < 0.1


def test_the_state_carries_the_cumulative_histograms_and_the_step():
    canary, baseline = like_the_baseline()
    m = judge(canary, baseline, step_index=2)
    state = m.state
    assert isinstance(state, LatencyState)
    assert (state.canary, state.baseline, state.step_index, state.step_requests) == (canary, baseline, 2, 100)
    assert (state.boundaries, state.unit) == ((0.05, 0.1), "seconds")
    assert len(state.evidence) == 2 and all(ev.rounds_used == 1 for ev in state.evidence)
    again = judge(canary, baseline, previous=state, step_index=2)
    assert again.state.canary == cumulative(160, 190, 198, 200, 200) and again.state.baseline.requests == 1800
    assert again.requests == 200 and all(ev.rounds_used == 2 for ev in again.state.evidence)


def test_strict_is_off_unless_asked_for():
    canary, baseline = like_the_baseline()
    assert judge(canary, baseline).verdict is Verdict.PASS
    assert judge(canary, baseline, strict=True).verdict is Verdict.INCONCLUSIVE


def test_a_failed_source_is_an_error_that_keeps_the_evidence():
    before = judge(*like_the_baseline())
    m = judge(None, "cannot reach http://prom", previous=before.state)
    assert m.verdict is Verdict.ERROR and m.detail == "p95_latency: metric source failed: cannot reach http://prom"
    assert m.state is before.state
    assert (m.metric, m.value, m.threshold, m.unit, m.requests) == ("p95_latency", 100.0, 200, "ms", 100)
    assert (m.reason, m.baseline, m.baseline_requests) == (Reason.HIGH_LATENCY, 100.0, 900)
    assert (m.evidence, m.evidence_threshold, m.bounds) == (None, 100, None)


def test_a_failed_source_in_the_first_round_starts_an_empty_state():
    m = judge(None, "timeout", boundaries=(0.05, 0.1, 0.2), unit="milliseconds", alpha=0.05)
    assert m.verdict is Verdict.ERROR and m.detail == "p95_latency: metric source failed: timeout"
    assert (m.value, m.baseline, m.requests, m.baseline_requests, m.evidence_threshold) == (None, None, 0, 0, 20)
    state = m.state
    assert (state.canary, state.baseline, state.step_index, state.step_requests) == (
        EMPTY_HISTOGRAM, EMPTY_HISTOGRAM, -1, 0)
    assert (state.boundaries, state.unit) == ((0.05, 0.1, 0.2), "milliseconds")
    assert [ev.log_likelihoods for ev in state.evidence] == [(0.0,) * METRIC.grid.points] * 3


def test_a_canary_slower_than_its_baseline_fails_with_the_evidence_and_alpha():
    m = judge(cumulative(40, 70, 99, 100, 100), cumulative(*BASELINE))
    assert (m.verdict, m.reason) == (Verdict.FAIL, Reason.HIGH_LATENCY)
    assert m.detail == ("p95_latency: canary p95 ~186 ms vs baseline ~100 ms; slower than 50/100 ms: "
                        "canary 60.00%/30.00% vs baseline 20.00%/5.00% — evidence 1.7e+09 >= 100 (alpha 1.00%)")
    assert m.evidence == pytest.approx(1.708105e9, rel=1e-5) and m.evidence_threshold == 100
    assert m.bounds is None and (m.requests, m.baseline_requests) == (100, 900)


def test_evidence_exactly_at_one_over_alpha_fails():
    canary, baseline = cumulative(40, 70, 99, 100, 100), cumulative(*BASELINE)
    evidence = judge(canary, baseline).evidence
    at = judge(canary, baseline, alpha=1 / evidence)
    assert at.verdict is Verdict.FAIL and "evidence 1.7e+09 >= 1.7e+09" in at.detail
    assert judge(canary, baseline, alpha=0.999 / evidence).verdict is not Verdict.FAIL


def test_overwhelming_evidence_is_reported_as_a_finite_number():
    m = judge(cumulative(0, 0, 0, 0, 10_000), cumulative(10_000, 10_000, 10_000, 10_000, 10_000))
    assert m.verdict is Verdict.FAIL
    assert m.evidence == math.exp(690) and "evidence 4.6e+299 >= 100" in m.detail


def test_a_metric_with_a_tolerance_accepts_a_canary_within_it():
    rounds = [(cumulative(880, 1000, 1000, 1000, 1000), cumulative(9000, 10_000, 10_000, 10_000, 10_000))] * 20

    def verdict(metric):
        state = None
        for canary, baseline in rounds:
            m = judge(canary, baseline, previous=state, boundaries=(0.05,), metric=metric)
            state = m.state
        return m.verdict  # 12 % slower than 50 ms against the baseline's 10 %: 1.2 times as often

    assert verdict(METRIC) is Verdict.FAIL
    assert verdict(LatencyMetric(name="p95_latency", tolerance=1.2)) is Verdict.PASS


def test_the_metric_grid_shapes_the_evidence():
    metric = LatencyMetric(name="p95_latency", grid=Grid(low=2, high=8, points=3))
    m = judge(cumulative(40, 70, 99, 100, 100), cumulative(*BASELINE), metric=metric)
    assert [len(ev.log_likelihoods) for ev in m.state.evidence] == [3, 3]
    assert m.verdict is Verdict.FAIL


def test_the_guard_rail_without_a_baseline_names_the_share_over_the_limit():
    m = judge(cumulative(10, 20, 50, 80, 100), EMPTY_HISTOGRAM)
    assert (m.verdict, m.reason) == (Verdict.FAIL, Reason.HIGH_LATENCY)
    assert m.detail == ("p95_latency: 50.00% (50/100) of canary requests slower than 200 ms, credibly above 5.00% "
                        "(at least 31.51%): p95 over the 200 ms limit; canary p95 ~300 ms vs baseline ~n/a; "
                        "slower than 50/100 ms: canary 90.00%/80.00% vs baseline n/a")
    assert m.evidence == 1.0 and m.bounds == pytest.approx((0.3150862, 0.6849138))
    assert (m.value, m.baseline, m.baseline_requests) == (300.0, None, 0)


def test_an_incident_on_both_versions_does_not_fail_the_canary():
    m = judge(cumulative(10, 20, 50, 80, 100), cumulative(90, 180, 450, 720, 900))  # both half over 200 ms
    assert m.verdict is Verdict.PASS
    assert m.detail == ("p95_latency: canary p95 ~300 ms vs baseline ~300 ms; slower than 50/100 ms: "
                        "canary 90.00%/80.00% vs baseline 90.00%/80.00% — evidence 0.00 < 100; limit p95 <= 200 ms")
    assert m.bounds == pytest.approx((0.3150862, 0.6849138)) and m.evidence < 1


def test_a_canary_clearly_worse_than_an_incident_on_the_baseline_fails():
    m = judge(cumulative(2000, 2000, 2000, 10_000, 10_000), cumulative(180, 180, 810, 900, 900), boundaries=())
    assert m.verdict is Verdict.FAIL  # 80 % slower than 200 ms against the baseline's 10 %
    assert "80.00% (8,000/10,000) of canary requests slower than 200 ms" in m.detail


def test_a_share_over_the_limit_not_credibly_above_the_tail_does_not_fail():
    m = judge(cumulative(80, 92, 92, 100, 100), EMPTY_HISTOGRAM)  # 8 % over 200 ms in only 100 requests
    assert m.verdict is Verdict.PASS
    assert m.bounds[0] < 0.05 < m.bounds[1]


def test_the_guard_rail_reads_the_bucket_at_or_above_a_limit_between_buckets():
    m = judge(cumulative(10, 20, 20, 100, 100), EMPTY_HISTOGRAM, limit_ms=250)  # 80 % over 200 ms, none over 300
    assert m.verdict is Verdict.PASS and m.detail.endswith("limit p95 <= 250 ms")
    assert m.bounds[0] == 0 and m.bounds[1] < 0.1
    over = judge(cumulative(10, 20, 20, 40, 100), EMPTY_HISTOGRAM, limit_ms=250)
    assert over.verdict is Verdict.FAIL and "60.00% (60/100) of canary requests slower than 300 ms" in over.detail


def test_a_limit_above_every_bucket_has_no_guard_rail_bounds():
    m = judge(*like_the_baseline(), limit_ms=5000)
    assert m.verdict is Verdict.PASS and m.bounds is None


def test_too_few_requests_still_reports_the_evidence_and_bounds():
    canary, baseline = like_the_baseline()
    m = judge(canary, baseline, min_requests=101)
    assert m.verdict is Verdict.INCONCLUSIVE
    assert m.detail == "p95_latency: too few canary requests at this step: 100 < 101"
    assert m.evidence == pytest.approx(0.0826248, rel=1e-5) and 0 < m.bounds[0] < 0.01 < m.bounds[1]


def test_a_round_without_buckets_is_inconclusive_with_no_bounds():
    m = judge(EMPTY_HISTOGRAM, EMPTY_HISTOGRAM)
    assert m.verdict is Verdict.INCONCLUSIVE and m.detail == "p95_latency: too few canary requests at this step: 0 < 50"
    assert (m.evidence, m.bounds, m.value, m.baseline) == (1.0, None, None, None)


def test_the_step_minimum_counts_this_step_only():
    canary, baseline = like_the_baseline()
    first = judge(canary, baseline, step_index=0)
    small, small_baseline = cumulative(8, 9, 10, 10, 10), cumulative(72, 85, 89, 90, 90)
    second = judge(small, small_baseline, previous=first.state, step_index=1)
    assert second.verdict is Verdict.INCONCLUSIVE and second.requests == 10 and "10 < 50" in second.detail
    assert second.state.canary.requests == 110  # the release's evidence carries over
    third = judge(small, small_baseline, previous=second.state, step_index=1)
    assert third.requests == 20 and third.state.step_index == 1


def test_a_round_where_one_version_reported_no_buckets_keeps_the_evidence():
    before = judge(*like_the_baseline())
    no_canary = judge(EMPTY_HISTOGRAM, cumulative(*BASELINE), previous=before.state)
    assert no_canary.state.evidence == before.state.evidence
    assert no_canary.state.baseline.requests == 1800 and no_canary.requests == 100
    no_baseline = judge(cumulative(80, 95, 99, 100, 100), EMPTY_HISTOGRAM, previous=before.state)
    assert no_baseline.state.evidence == before.state.evidence and no_baseline.requests == 200


def test_no_boundaries_leaves_the_guard_rail_alone():
    m = judge(*like_the_baseline(), boundaries=())
    assert m.verdict is Verdict.PASS and m.evidence == 1.0 and m.state.evidence == ()
    assert "slower than  ms: canary  vs baseline  — evidence 1.00 < 100" in m.detail


def test_a_boundary_missing_from_the_only_histogram_reported_is_an_error():
    m = judge(cumulative(80, 95, 99, 100, 100), EMPTY_HISTOGRAM, boundaries=(0.05, 0.075))
    assert m.verdict is Verdict.ERROR
    assert m.detail == "p95_latency: boundaries [75.0] ms are not buckets of the histogram"


def test_different_buckets_of_the_two_versions_are_an_error_with_the_reason():
    m = judge(cumulative(80, 95, 99, 100, 100), cumulative(720, 855, 891, 900, le=(0.05, 0.1, 0.25, math.inf)))
    assert m.verdict is Verdict.ERROR and m.state.step_index == -1
    assert m.detail == ("p95_latency: canary and baseline histograms have different buckets; "
                        "slow counts are not comparable")


def test_buckets_that_change_during_the_release_are_an_error_that_keeps_the_evidence():
    before = judge(*like_the_baseline())
    other = (0.05, 0.1, 0.25, math.inf)
    m = judge(cumulative(80, 95, 100, 100, le=other), cumulative(720, 855, 900, 900, le=other), previous=before.state)
    assert m.verdict is Verdict.ERROR
    assert m.detail == "p95_latency: the histogram's buckets changed during the release"
    assert m.state is before.state and (m.requests, m.value, m.evidence) == (100, 100.0, None)


def test_strict_mode_is_inconclusive_until_the_upper_bound_is_under_the_tail():
    canary, baseline = like_the_baseline()
    m = judge(canary, baseline, strict=True)
    assert m.verdict is Verdict.INCONCLUSIVE
    assert m.detail == ("p95_latency: canary p95 ~100 ms vs baseline ~100 ms; slower than 50/100 ms: "
                        "canary 20.00%/5.00% vs baseline 20.00%/5.00%; strict: not yet credibly within p95 <= 200 ms")
    assert m.evidence == pytest.approx(0.0826248, rel=1e-5) and m.bounds[1] > 0.05


def test_strict_mode_passes_once_the_share_over_the_limit_is_credibly_under_the_tail():
    m = judge(*like_the_baseline(100), strict=True)  # 1 % of 10,000 over the 200 ms limit
    assert m.verdict is Verdict.PASS and m.detail.endswith("limit p95 <= 200 ms")
    assert m.bounds[1] < 0.05 and m.evidence < 1


def test_strict_mode_reads_the_bucket_at_or_under_a_limit_between_buckets():
    # 6 % slower than 200 ms, none slower than 300 ms: a 250 ms limit is not credibly met.
    m = judge(cumulative(8000, 9000, 9400, 10_000, 10_000), EMPTY_HISTOGRAM, limit_ms=250, strict=True)
    assert m.verdict is Verdict.INCONCLUSIVE and "strict: not yet credibly within p95 <= 250 ms" in m.detail
    assert m.bounds[1] < 0.05  # the rolling-back side reads 300 ms, where nothing is slower


def test_strict_mode_without_a_bucket_under_the_limit_never_passes():
    m = judge(*like_the_baseline(100), limit_ms=20, strict=True)
    assert m.verdict is Verdict.INCONCLUSIVE and m.detail.endswith("strict: not yet credibly within p95 <= 20 ms")


def test_millisecond_histograms_are_read_in_milliseconds():
    ms = (50, 100, 200, 300, math.inf)
    m = judge(cumulative(80, 95, 99, 100, 100, le=ms), cumulative(*BASELINE, le=ms), boundaries=(50, 100),
              unit="milliseconds", strict=True, min_requests=1)
    assert (m.value, m.baseline) == (100.0, 100.0)
    assert "slower than 50/100 ms" in m.detail and m.state.unit == "milliseconds"
    over = judge(cumulative(10, 20, 50, 80, 100, le=ms), EMPTY_HISTOGRAM, boundaries=(50,), unit="milliseconds")
    assert over.verdict is Verdict.FAIL and "(50/100) of canary requests slower than 200 ms" in over.detail


def test_to_ms_converts_seconds_and_leaves_milliseconds():
    assert to_ms(0.25, "seconds") == 250 and to_ms(250, "milliseconds") == 250


def test_limit_boundary_takes_the_cautious_side_and_skips_infinity():
    assert limit_boundary(LE, 0.2, above=True) == 0.2 and limit_boundary(LE, 0.2, above=False) == 0.2
    assert limit_boundary(LE, 0.25, above=True) == 0.3 and limit_boundary(LE, 0.25, above=False) == 0.2
    assert limit_boundary(LE, 0.5, above=True) is None and limit_boundary(LE, 0.01, above=False) is None


def test_auto_boundaries_need_fifty_baseline_requests():
    fifty = cumulative(25, 45, 50, 50, 50)
    assert auto_boundaries(fifty, limit_le=0.2) == (0.05, 0.1, 0.2)
    assert auto_boundaries(cumulative(24, 44, 49, 49, 49), limit_le=0.2) == (0.2,)


def test_auto_boundaries_with_thin_history_and_no_limit_take_the_largest_finite_bucket():
    assert auto_boundaries(cumulative(5, 5, 5, 5, 5), limit_le=None) == (0.3,)
    assert auto_boundaries(Histogram.from_increase({math.inf: 5}), limit_le=None) == ()


def test_auto_boundaries_take_the_first_bucket_holding_the_quantile_exactly():
    assert auto_boundaries(cumulative(50, 90, 99, 100, 100), limit_le=0.2) == (0.05, 0.1, 0.2, 0.3)


def test_auto_boundaries_fall_back_to_the_largest_bucket_when_most_requests_are_above_every_bucket():
    assert auto_boundaries(cumulative(0, 0, 0, 10, 100), limit_le=0.2) == (0.3,)
