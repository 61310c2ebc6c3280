"""A ratio metric (bad events out of requests): canary vs baseline, and an absolute guard rail.

Two ways to fail, both checkable every round without inflating false alarms (``JUDGE.md``):

* the comparison: an anytime-valid e-process for "the canary fails more often than the baseline
  serving at the same time", with the split recomputed every round; it rolls back at
  ``E >= 1/alpha``, and only if the canary's rate is also credibly above a small floor (a near-zero
  baseline makes a tiny absolute difference a large ratio);
* the guard rail: a time-uniform confidence sequence for the canary's rate whose lower bound is
  above the limit *and* above the baseline's upper bound. The second condition keeps an incident
  that hits every version at once (the baseline is over the limit too) from rolling back a canary
  that is no worse; where no baseline served (a 100 % step) the limit alone decides.

A PASS needs the step's minimum canary requests and no failure; ``strict`` also needs the guard
rail's upper bound under the limit. Everything else is INCONCLUSIVE: no data is never a pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from canaryflow.analysis_spec import Grid, RatioMetric
from canaryflow.assess import explain
from canaryflow.assess.counts import ZERO, Counts
from canaryflow.judge import Measurement, Reason, Verdict
from canaryflow.stats import RatioEvidence, RatioGrid, beta_binomial_cs, credibly_above, prior_b


@dataclass(frozen=True)
class PairCounts:
    """One round of one metric: what the canary and the baseline served (deltas)."""

    canary: Counts
    baseline: Counts


@dataclass(frozen=True)
class RatioState:
    """The metric's evidence so far: cumulative counts (whole release and this step) and the e-process."""

    canary: Counts
    baseline: Counts
    step_index: int
    step_canary: Counts
    evidence: RatioEvidence
    paired: Counts = ZERO  # the canary's counts in rounds where the baseline served too
    matched_baseline: float = 0.0  # events the canary would have had at the baseline's rate, round by round
    unpaired: Counts = ZERO  # the canary's counts in rounds without a baseline (a 100 % step)
    top_step: int = -1  # the highest step index reached: below it, the release has stepped back

    @classmethod
    def start(cls, grid: RatioGrid) -> RatioState:
        return cls(ZERO, ZERO, -1, ZERO, RatioEvidence.start(grid))


def grid_of(metric_grid: Grid) -> RatioGrid:
    return RatioGrid(low=metric_grid.low, high=metric_grid.high, points=metric_grid.points)


#: The guard rails' Beta(1, b) mixture: b = 0.2 / limit rather than 1 / limit: the rates a guard
#: rail exists for are several times the limit (a canary just over it is the comparison's job).
#: Measured on the confidence sequence: 5 % errors against a 1 % limit are credibly over it after
#: 150 requests with b = 20, 190 with b = 100 (JUDGE.md's 1/limit).
GUARD_RAIL_SCALE = 0.2


def guard_rail_b(limit: float) -> float:
    return max(1.0, GUARD_RAIL_SCALE * prior_b(max(limit, 1e-6)))


def bounds(c: Counts, *, alpha: float, limit: float) -> tuple[float, float]:
    return beta_binomial_cs(c.events, c.requests, alpha=alpha, b=guard_rail_b(limit))


class Blame(StrEnum):
    """Who a canary credibly over the limit is to blame on."""

    CANARY = "canary"  # worse than the baseline of the same rounds, or no baseline ever served
    SHARED = "shared"  # the baseline of the same rounds is as bad: an incident on every version
    UNKNOWN = "unknown"  # over the limit only in rounds where no baseline served (a 100 % step)


def blame(state: RatioState, *, alpha: float, limit: float) -> Blame:
    """Whether a canary credibly over the limit is the cause, not an incident every version shares.

    Judged round by round, never on release totals (the baseline's totals mix in steps where it
    served far more): in the rounds where both versions served, the canary must be credibly above
    what it would have failed at the baseline's rate of the same rounds. Rounds where no baseline
    served cannot tell an incident from the canary: over the limit there, the answer is UNKNOWN,
    and the judge steps back to a weight with a baseline to find out (``needs_baseline``).
    """
    if state.paired.requests == 0:
        return Blame.CANARY
    matched = Counts(state.paired.requests, min(state.paired.requests, round(state.matched_baseline)))
    if bounds(state.paired, alpha=alpha, limit=limit)[0] > bounds(matched, alpha=alpha, limit=limit)[1]:
        return Blame.CANARY
    if state.unpaired.requests and bounds(state.unpaired, alpha=alpha, limit=limit)[0] > limit:
        return Blame.UNKNOWN
    return Blame.SHARED


def assess_ratio(
    metric: RatioMetric, *, observed: PairCounts | str, previous: RatioState | None, step_index: int,
    limit: float, alpha: float, min_requests: int, strict: bool = False,
    reason: Reason = Reason.HIGH_ERROR_RATE,
) -> Measurement:
    """Fold one round into the metric's evidence and judge it. ``observed`` is an error text when
    the source failed this round (the evidence is carried over unchanged)."""
    grid = grid_of(metric.grid)
    state = previous or RatioState.start(grid)
    name, threshold_e = metric.name, 1 / alpha

    def measurement(verdict: Verdict, detail: str, new: RatioState, **figures: object) -> Measurement:
        return Measurement(name, verdict, new.canary.rate, limit, "ratio", new.step_canary.requests, detail,
                           reason=reason, baseline=new.baseline.rate, baseline_requests=new.baseline.requests,
                           evidence_threshold=threshold_e, state=new, **figures)  # type: ignore[arg-type]

    if isinstance(observed, str):
        return measurement(Verdict.ERROR, f"{name}: metric source failed: {observed}", state,
                           evidence=state.evidence.e_value)

    step_canary = (state.step_canary if state.step_index == step_index else ZERO) + observed.canary
    both = observed.baseline.requests > 0 and observed.canary.requests > 0
    # A step back (below the highest step reached) is where the rounds without a baseline get their
    # answer: they are dropped, or the same incident would ask for a second step back later; and
    # none is counted while stepped back (the first round there still reads the tail of the 100 %).
    stepped_back = step_index < state.top_step
    unpaired = ZERO if stepped_back else state.unpaired
    new = RatioState(
        canary=state.canary + observed.canary, baseline=state.baseline + observed.baseline,
        step_index=step_index, step_canary=step_canary,
        evidence=state.evidence.update(
            canary_events=observed.canary.events, baseline_events=observed.baseline.events,
            canary_requests=observed.canary.requests, baseline_requests=observed.baseline.requests,
            tolerance=metric.tolerance, grid=grid),
        paired=state.paired + observed.canary if both else state.paired,
        matched_baseline=state.matched_baseline + (
            observed.canary.requests * observed.baseline.events / observed.baseline.requests if both else 0.0),
        unpaired=unpaired if both or stepped_back else unpaired + observed.canary,
        top_step=max(state.top_step, step_index),
    )
    e_value = new.evidence.e_value
    low, high = bounds(new.canary, alpha=alpha, limit=limit)
    figures = {"evidence": e_value, "bounds": (low, high)}
    versus = f"canary {explain.rate(new.canary)} vs baseline {explain.rate(new.baseline)}"
    level = f"alpha {explain.pct(alpha)}"
    floor = limit / 10 if metric.floor is None else metric.floor

    evident = new.evidence.log_e_value >= math.log(threshold_e)
    worse = evident and (floor <= 0 or credibly_above(new.canary.events, new.canary.requests, floor, alpha=alpha,
                                                      b=guard_rail_b(floor)))
    if worse:
        return measurement(Verdict.FAIL, f"{name}: {versus} — evidence {explain.evidence(e_value)} >= "
                                         f"{explain.evidence(threshold_e)} ({level})", new, **figures)

    blamed = blame(new, alpha=alpha, limit=limit) if low > limit else None
    if blamed is Blame.CANARY:
        return measurement(Verdict.FAIL, f"{name}: canary {explain.rate(new.canary)} is credibly above the "
                                         f"{explain.pct(limit)} limit (at least {explain.pct(low)}, "
                                         f"{explain.confidence(alpha)} bound); baseline "
                                         f"{explain.rate(new.baseline)}", new, **figures)
    if blamed is Blame.UNKNOWN:
        alone = bounds(new.unpaired, alpha=alpha, limit=limit)[0]
        return measurement(Verdict.INCONCLUSIVE, f"{name}: canary {explain.rate(new.unpaired)} where no baseline "
                                                 f"served, credibly above the {explain.pct(limit)} limit (at least "
                                                 f"{explain.pct(alone)}, {explain.confidence(alpha)} bound); no worse "
                                                 f"than the baseline where both served ({versus})", new,
                           needs_baseline=True, **figures)

    if step_canary.requests < min_requests:
        return measurement(Verdict.INCONCLUSIVE, f"{name}: too few canary requests at this step: "
                                                 f"{explain.count(step_canary.requests)} < {min_requests} "
                                                 f"({versus})", new, **figures)
    shared = (" (over the limit, but no worse than the baseline where both served: not the canary's doing)"
              if low > limit else "")
    within = f"canary <= {explain.pct(high)} ({explain.confidence(alpha)} bound), limit {explain.pct(limit)}"
    if strict and high >= limit:
        return measurement(Verdict.INCONCLUSIVE, f"{name}: {versus}; strict: upper bound {explain.pct(high)} "
                                                 f"not yet below the {explain.pct(limit)} limit", new, **figures)
    # Evidence over the threshold that the floor held back says so: "evidence < threshold" would be false.
    compared = (f"evidence {explain.evidence(e_value)} >= {explain.evidence(threshold_e)}, but the canary is not "
                f"credibly above the {explain.pct(floor)} floor" if evident else
                f"evidence {explain.evidence(e_value)} < {explain.evidence(threshold_e)}")
    return measurement(Verdict.PASS, f"{name}: {versus} — {compared}; {within}{shared}", new, **figures)
