"""What the evidence of a release was worth: the smallest regression it would have caught.

"No evidence of harm" is not "evidence of health" (``JUDGE.md``). A promotion says how large a
regression the test, at the traffic it actually saw, would have rolled back with 90 % probability:
"would have caught >= 3x the baseline's error rate". A release with too little traffic says so
plainly instead of looking as safe as a busy one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from canaryflow.analysis_spec import LatencyMetric, RatioMetric
from canaryflow.assess import explain
from canaryflow.assess.latency import to_ms
from canaryflow.assess.ratio import grid_of
from canaryflow.judge import Round
from canaryflow.stats import detectable_ratio

if TYPE_CHECKING:
    from canaryflow.spec import ReleaseSpec

PROBABILITY = 0.9


def _per_round(cumulative: Sequence[int]) -> list[int]:
    previous, out = 0, []
    for value in cumulative:
        out.append(max(0, value - previous))
        previous = value
    return out


def _estimate(events: int, requests: int) -> float:
    """The baseline's rate, kept off zero (half an event) so a clean baseline still has a scale."""
    return (events + 0.5) / (requests + 1)


def _phrase(name: str, ratio: float | None, what: str, canary_requests: int) -> str:
    if ratio is None:
        return (f"{name}: {explain.count(canary_requests)} canary requests were too few to catch even 100x "
                f"the baseline's {what} with {PROBABILITY:.0%} probability")
    return (f"{name}: would have caught >= {ratio:g}x the baseline's {what} with {PROBABILITY:.0%} probability "
            f"({explain.count(canary_requests)} canary requests)")


def evidence_worth(spec: ReleaseSpec, rounds: Sequence[Round]) -> list[str]:
    """One sentence per compared metric, from the counts the release saw."""
    from canaryflow.analysis import comparison_alpha

    alpha, sentences = comparison_alpha(spec), []
    for metric in spec.analysis.metrics:
        states = [m.state for r in rounds for m in r.measurements if m.metric == metric.name and m.state is not None]
        if not states:
            continue
        last = states[-1]
        if isinstance(metric, RatioMetric):
            canary = _per_round([s.canary.requests for s in states])
            baseline = _per_round([s.baseline.requests for s in states])
            rate = _estimate(last.baseline.events, last.baseline.requests)
            ratio = detectable_ratio(canary, baseline, baseline_rate=rate, alpha=alpha, tolerance=metric.tolerance,
                                     grid=grid_of(metric.grid), probability=PROBABILITY)
            sentences.append(_phrase(metric.name, ratio, f"error rate ({explain.pct(last.baseline.rate or 0)})",
                                     last.canary.requests))
        elif isinstance(metric, LatencyMetric) and last.boundaries and last.baseline.requests:
            canary = _per_round([s.canary.requests for s in states])
            baseline = _per_round([s.baseline.requests for s in states])
            best: tuple[float, float] | None = None
            for le in last.boundaries:  # one boundary alone needs len(boundaries) times the evidence
                slow = last.baseline.slower_than(le)
                ratio = detectable_ratio(canary, baseline, baseline_rate=_estimate(slow.events, slow.requests),
                                         alpha=alpha / len(last.boundaries), tolerance=metric.tolerance,
                                         grid=grid_of(metric.grid), probability=PROBABILITY)
                if ratio is not None and (best is None or ratio < best[0]):
                    best = (ratio, le)
            what = "share of slow requests" if best is None else (
                f"share of requests slower than {explain.ms(to_ms(best[1], last.unit))}")
            sentences.append(_phrase(metric.name, None if best is None else best[0], what, last.canary.requests))
    return sentences



def planned_worth(spec: ReleaseSpec, *, canary_rps_first_step: float, baseline_rate: float) -> float | None:
    """For ``plan``: the smallest error-rate ratio the default-shaped release would catch, if the
    canary gets ``canary_rps_first_step`` requests/s at the first step (traffic scales with the
    weight) and the baseline fails at ``baseline_rate``."""
    from canaryflow.analysis import comparison_alpha

    ratio_metric = next((m for m in spec.analysis.metrics if isinstance(m, RatioMetric)), None)
    if ratio_metric is None:
        return None
    total_rps = canary_rps_first_step * 100 / spec.steps[0]
    interval = spec.analysis_interval_seconds
    rounds = max(1, int(spec.step_wait_seconds // interval))
    canary, baseline = [], []
    for weight in spec.steps:
        canary += [round(total_rps * weight / 100 * interval)] * rounds
        baseline += [round(total_rps * (100 - weight) / 100 * interval)] * rounds
    return detectable_ratio(canary, baseline, baseline_rate=baseline_rate, alpha=comparison_alpha(spec),
                            tolerance=ratio_metric.tolerance, grid=grid_of(ratio_metric.grid),
                            probability=PROBABILITY)
