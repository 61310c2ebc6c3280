"""The latency metric: slow-request counts at fixed boundaries, the quantile guard rail, buckets."""

from __future__ import annotations

import math

import numpy as np

from canaryflow.analysis_spec import LatencyMetric
from canaryflow.assess.counts import Histogram
from canaryflow.assess.latency import HistogramPair, assess_latency, auto_boundaries
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
