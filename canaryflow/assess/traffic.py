"""The traffic-split check (sample ratio mismatch): does the canary get the share it is routed?

If the canary's share of requests is far from the weight the router reports, routing is broken
(a mesh misconfiguration, a stale endpoint list) and no comparison of the two versions means
anything. Lindon & Malek's multinomial Bayes factor on the request counts of the step, against the
platform's effective weight, at a strict level. The first round of a step is left out: its counts
straddle the weight change. Each version's counts cover the time between its own scrapes, which
differ by up to a scrape interval between targets: the baseline's count is rescaled to the
canary's sample span before the test, so scrape timing is never mistaken for a routing fault.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from canaryflow.analysis_spec import TRAFFIC_SPLIT
from canaryflow.assess import explain
from canaryflow.assess.counts import Counts
from canaryflow.judge import Measurement, Reason, Verdict
from canaryflow.stats import srm_log_bayes_factor


@dataclass(frozen=True)
class TrafficState:
    step_index: int = -1
    canary: int = 0
    baseline: int = 0
    canary_seconds: float = 0.0
    baseline_seconds: float = 0.0

    @property
    def baseline_aligned(self) -> int:
        """The baseline's count over the canary's sample span (the raw count when spans are unknown)."""
        if self.canary_seconds > 0 and self.baseline_seconds > 0:
            return round(self.baseline * self.canary_seconds / self.baseline_seconds)
        return self.baseline


def assess_traffic(*, canary: Counts | None, baseline: Counts | None, expected_share: float,
                   previous: TrafficState | None, step_index: int, alpha: float, concentration: float,
                   spans: tuple[float | None, float | None] = (None, None)) -> Measurement:
    """``canary``/``baseline`` are the round's request counts (``None``: the source failed);
    ``spans`` the seconds between the samples each count came from (``None``: unknown)."""
    state = previous or TrafficState()
    threshold = 1 / alpha
    routed = explain.pct(expected_share)

    def measurement(verdict: Verdict, detail: str, new: TrafficState, bf: float | None = None) -> Measurement:
        total = new.canary + new.baseline_aligned
        share = new.canary / total if total else None
        return Measurement(TRAFFIC_SPLIT, verdict, share, expected_share, "share", new.canary, detail,
                           reason=Reason.TRAFFIC_MISMATCH, baseline_requests=new.baseline, evidence=bf,
                           evidence_threshold=threshold, state=new)

    if canary is None or baseline is None:
        return measurement(Verdict.ERROR, f"{TRAFFIC_SPLIT}: no request counts this round", state)
    if state.step_index != step_index:  # the first round of a step straddles the weight change
        return measurement(Verdict.INCONCLUSIVE, f"{TRAFFIC_SPLIT}: first round at {routed} routed, not counted",
                           TrafficState(step_index))
    canary_span, baseline_span = spans
    if canary_span and baseline_span:
        new = TrafficState(step_index, state.canary + canary.requests, state.baseline + baseline.requests,
                           state.canary_seconds + canary_span, state.baseline_seconds + baseline_span)
    else:  # without both sample spans the round's counts cannot be aligned: leave them out
        new = state
    baseline_aligned = new.baseline_aligned
    seen = explain.rate(Counts(new.canary + baseline_aligned, new.canary))
    if not 0 < expected_share < 1:
        return measurement(Verdict.PASS, f"{TRAFFIC_SPLIT}: not checked with {routed} routed to the canary", new)
    if new.canary + baseline_aligned == 0:
        return measurement(Verdict.INCONCLUSIVE, f"{TRAFFIC_SPLIT}: no requests yet at {routed} routed", new)
    log_bf = srm_log_bayes_factor(new.canary, baseline_aligned, expected_share=expected_share,
                                  concentration=concentration)
    bf = math.exp(min(log_bf, 690.0))
    if log_bf >= math.log(threshold):
        return measurement(Verdict.FAIL, f"{TRAFFIC_SPLIT}: canary got {seen} of requests where the router sends "
                                         f"{routed} — Bayes factor {explain.evidence(bf)} >= "
                                         f"{explain.evidence(threshold)}", new, bf)
    return measurement(Verdict.PASS, f"{TRAFFIC_SPLIT}: canary got {seen} of requests, {routed} routed", new, bf)

