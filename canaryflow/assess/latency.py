"""A latency histogram: canary vs baseline on slow-request counts, and a quantile guard rail.

Interpolated quantiles are never compared (``JUDGE.md``): for a few bucket boundaries fixed before
the canary started (around the baseline's p50..p99.9), "slow" is a request above the boundary,
and the ratio e-process runs on those counts; the e-processes of the boundaries are averaged
(an average of e-processes is an e-process). The guard rail is the statement "at most 5 % of
requests are slower than the limit" for a p95 limit: a confidence sequence on the count above the
boundary at the limit (the smallest boundary at or above it when rolling back, the largest at or
under it for strict promotion — each the cautious side). Both versions must report the same
buckets, or the counts are not comparable (ERROR).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from canaryflow.analysis_spec import LatencyMetric
from canaryflow.assess import explain
from canaryflow.assess.counts import EMPTY_HISTOGRAM, Histogram
from canaryflow.assess.ratio import grid_of, guard_rail_b
from canaryflow.judge import Measurement, Reason, Verdict
from canaryflow.stats import RatioEvidence, average_log_e, beta_binomial_cs

#: The baseline quantiles whose buckets ``boundaries_ms: auto`` compares.
AUTO_QUANTILES = (0.5, 0.9, 0.99, 0.999)
#: Fewer baseline requests than this before the canary: too little to place boundaries by quantile.
#: Any boundaries fixed in advance keep the test valid; thin history only makes them less apt.
MIN_BASELINE_FOR_AUTO = 50


@dataclass(frozen=True)
class HistogramPair:
    canary: Histogram
    baseline: Histogram


@dataclass(frozen=True)
class LatencyState:
    canary: Histogram
    baseline: Histogram
    step_index: int
    step_requests: int
    evidence: tuple[RatioEvidence, ...]  # one per boundary
    boundaries: tuple[float, ...] = ()  # in ``le`` units
    unit: str = "seconds"


def to_ms(le: float, unit: str) -> float:
    return le * 1000 if unit == "seconds" else le


def auto_boundaries(baseline: Histogram, *, limit_le: float | None) -> tuple[float, ...]:
    """Boundaries (in ``le`` units) nearest the baseline's p50, p90, p99, p99.9, from its counters
    before the canary started; with too little history, the boundary at the limit alone."""
    finite = [le for le in baseline.boundaries if math.isfinite(le)]
    if baseline.requests < MIN_BASELINE_FOR_AUTO:
        return (limit_le,) if limit_le is not None else tuple(finite[-1:])
    chosen: list[float] = []
    for q in AUTO_QUANTILES:
        for le in finite:
            if baseline.at_or_under(le) >= q * baseline.requests:
                if le not in chosen:
                    chosen.append(le)
                break
    return tuple(chosen) or tuple(finite[-1:])


def limit_boundary(boundaries: Sequence[float], limit_le: float, *, above: bool) -> float | None:
    finite = [le for le in boundaries if math.isfinite(le)]
    if above:
        return min((le for le in finite if le >= limit_le), default=None)
    return max((le for le in finite if le <= limit_le), default=None)


def _baseline_upper(baseline: Histogram, le: float, *, alpha: float, tail: float) -> float:
    """The baseline's upper bound on the share above ``le`` (0 when it served nothing); computed only
    when the canary is already over the limit, as it costs a root search."""
    if not baseline.requests:
        return 0.0
    over = baseline.slower_than(le)
    return beta_binomial_cs(over.events, over.requests, alpha=alpha, b=guard_rail_b(tail))[1]


def assess_latency(
    metric: LatencyMetric, *, observed: HistogramPair | str, previous: LatencyState | None, step_index: int,
    boundaries: tuple[float, ...], unit: str, limit_ms: float, alpha: float, min_requests: int,
    strict: bool = False,
) -> Measurement:
    grid = grid_of(metric.grid)
    state = previous or LatencyState(EMPTY_HISTOGRAM, EMPTY_HISTOGRAM, -1, 0,
                                     tuple(RatioEvidence.start(grid) for _ in boundaries), boundaries, unit)
    name, threshold_e, tail = metric.name, 1 / alpha, 1 - metric.quantile
    label = f"p{metric.quantile * 100:g}"

    def measurement(verdict: Verdict, detail: str, new: LatencyState, e_value: float | None = None,
                    cs: tuple[float, float] | None = None) -> Measurement:
        return Measurement(name, verdict, _quantile_ms(new.canary, metric.quantile, unit), limit_ms, "ms",
                           new.step_requests, detail, reason=Reason.HIGH_LATENCY,
                           baseline=_quantile_ms(new.baseline, metric.quantile, unit),
                           baseline_requests=new.baseline.requests, evidence=e_value,
                           evidence_threshold=threshold_e, bounds=cs, state=new)

    if isinstance(observed, str):
        return measurement(Verdict.ERROR, f"{name}: metric source failed: {observed}", state)
    canary, baseline = observed.canary, observed.baseline
    known = canary.boundaries or baseline.boundaries
    if canary.buckets and baseline.buckets and canary.boundaries != baseline.boundaries:
        return measurement(Verdict.ERROR, f"{name}: canary and baseline histograms have different buckets; "
                                          "slow counts are not comparable", state)
    missing = [b for b in boundaries if known and b not in known]
    if missing:
        return measurement(Verdict.ERROR, f"{name}: boundaries {[to_ms(b, unit) for b in missing]} ms are not "
                                          f"buckets of the histogram", state)
    try:
        new_canary, new_baseline = state.canary + canary, state.baseline + baseline
    except ValueError:
        return measurement(Verdict.ERROR, f"{name}: the histogram's buckets changed during the release", state)

    evidence = []
    for ev, le in zip(state.evidence, boundaries, strict=False):
        if canary.buckets and baseline.buckets:
            c, b = canary.slower_than(le), baseline.slower_than(le)
            ev = ev.update(canary_events=c.events, baseline_events=b.events, canary_requests=c.requests,
                           baseline_requests=b.requests, tolerance=metric.tolerance, grid=grid)
        evidence.append(ev)
    step_requests = (state.step_requests if state.step_index == step_index else 0) + canary.requests
    new = LatencyState(new_canary, new_baseline, step_index, step_requests, tuple(evidence), boundaries, unit)
    log_e = average_log_e([ev.log_e_value for ev in evidence]) if evidence else 0.0
    e_value = math.exp(min(log_e, 690.0))

    shares = "/".join(f"{to_ms(le, unit):g}" for le in boundaries)

    def slow_shares(h: Histogram) -> str:
        return "/".join(explain.pct(h.slower_than(le).rate) for le in boundaries) if h.requests else "n/a"
    versus = (f"canary {label} ~{explain.ms(_quantile_ms(new.canary, metric.quantile, unit))} vs baseline "
              f"~{explain.ms(_quantile_ms(new.baseline, metric.quantile, unit))}; slower than {shares} ms: "
              f"canary {slow_shares(new.canary)} vs baseline {slow_shares(new.baseline)}")

    if log_e >= math.log(threshold_e):
        return measurement(Verdict.FAIL, f"{name}: {versus} — evidence {explain.evidence(e_value)} >= "
                                         f"{explain.evidence(threshold_e)} (alpha {explain.pct(alpha)})", new, e_value)

    limit_le = limit_ms / 1000 if unit == "seconds" else limit_ms
    over_le = limit_boundary(new.canary.boundaries, limit_le, above=True) if new.canary.buckets else None
    cs: tuple[float, float] | None = None
    if over_le is not None:
        over = new.canary.slower_than(over_le)
        cs = beta_binomial_cs(over.events, over.requests, alpha=alpha, b=guard_rail_b(tail))
        if cs[0] > tail and cs[0] > _baseline_upper(new.baseline, over_le, alpha=alpha, tail=tail):
            return measurement(Verdict.FAIL, f"{name}: {explain.rate(over)} of canary requests slower than "
                                             f"{explain.ms(to_ms(over_le, unit))}, credibly above {explain.pct(tail)} "
                                             f"(at least {explain.pct(cs[0])}): {label} over the "
                                             f"{explain.ms(limit_ms)} limit; {versus}", new, e_value, cs)

    if step_requests < min_requests:
        return measurement(Verdict.INCONCLUSIVE, f"{name}: too few canary requests at this step: "
                                                 f"{explain.count(step_requests)} < {min_requests}", new, e_value, cs)
    if strict:
        under_le = limit_boundary(new.canary.boundaries, limit_le, above=False)
        ok = False
        if under_le is not None:
            under = new.canary.slower_than(under_le)
            ok = beta_binomial_cs(under.events, under.requests, alpha=alpha, b=guard_rail_b(tail))[1] < tail
        if not ok:
            return measurement(Verdict.INCONCLUSIVE, f"{name}: {versus}; strict: not yet credibly within "
                                                     f"{label} <= {explain.ms(limit_ms)}", new, e_value, cs)
    return measurement(Verdict.PASS, f"{name}: {versus} — evidence {explain.evidence(e_value)} < "
                                     f"{explain.evidence(threshold_e)}; limit {label} <= {explain.ms(limit_ms)}",
                       new, e_value, cs)


def _quantile_ms(h: Histogram, q: float, unit: str) -> float | None:
    value = h.quantile(q)
    return None if value is None else to_ms(value, unit)
