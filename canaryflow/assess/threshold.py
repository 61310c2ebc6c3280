"""A plain threshold metric: any PromQL giving one number for the canary, within min/max.

For business KPIs that have no natural baseline comparison (orders per minute, queue depth), as
Argo's ``successCondition`` and ``failureLimit``: a round outside the bounds is a breach, and more
than ``failure_limit`` breaches over the release roll back. A breaching round is never a PASS,
so it holds the step even while the breaches are still tolerated.
"""

from __future__ import annotations

from dataclasses import dataclass

from canaryflow.analysis_spec import ThresholdMetric
from canaryflow.judge import Measurement, QueryResult, Reason, Verdict


@dataclass(frozen=True)
class ThresholdState:
    breaches: int = 0


def _bounds(metric: ThresholdMetric) -> str:
    parts = ([f">= {metric.min:g}"] if metric.min is not None else []) + (
        [f"<= {metric.max:g}"] if metric.max is not None else [])
    return " and ".join(parts)


def assess_threshold(metric: ThresholdMetric, *, observed: QueryResult, previous: ThresholdState | None
                     ) -> Measurement:
    state = previous or ThresholdState()
    name, limit = metric.name, metric.max if metric.max is not None else metric.min

    def measurement(verdict: Verdict, detail: str, new: ThresholdState, value: float | None = None) -> Measurement:
        return Measurement(name, verdict, value, limit, "value", None, detail, reason=Reason.THRESHOLD_BREACHED,
                           state=new)

    if observed.error:
        return measurement(Verdict.ERROR, f"{name}: metric source failed: {observed.error}", state)
    if not observed.has_data:
        raw = "empty result" if observed.value is None else str(observed.value)
        return measurement(Verdict.INCONCLUSIVE, f"{name}: no data ({raw})", state)
    value = float(observed.value)  # type: ignore[arg-type]
    low_ok = metric.min is None or value >= metric.min
    high_ok = metric.max is None or value <= metric.max
    if low_ok and high_ok:
        return measurement(Verdict.PASS, f"{name}: {value:g} within {_bounds(metric)}", state, value)
    new = ThresholdState(state.breaches + 1)
    told = f"{name}: {value:g} outside {_bounds(metric)} (breach {new.breaches}, {metric.failure_limit} tolerated)"
    verdict = Verdict.FAIL if new.breaches > metric.failure_limit else Verdict.INCONCLUSIVE
    return measurement(verdict, told, new, value)
