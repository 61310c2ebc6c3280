"""Traffic split check (sample ratio mismatch): is the canary getting the share the router says?

JUDGE.md, "Traffic split check". If routing is broken, no comparison of the arms means anything,
so the judge tests the request counts themselves against the platform's effective weight w with the
Bayes factor of Lindon & Malek ("Anytime-valid inference for multinomial count data", NeurIPS 2022)
for two arms: a Beta(k*w, k*(1-w)) mixture against the point w,

    BF = [B(k*w + S_c, k*(1-w) + S_b) / B(k*w, k*(1-w))] / [w^S_c (1-w)^S_b].

Under a correct split it is a nonnegative martingale with mean 1, so it can be checked every round
at a strict level (alpha 0.001 -> reject at BF >= 1000). The prior is centred on w itself, so
small honest deviations cost little while a real shortfall grows the factor exponentially.
"""

from __future__ import annotations

from scipy.special import betaln, xlog1py, xlogy

from canaryflow.stats._checks import counts, open_unit, plain_count, positive


def srm_log_bayes_factor(
    canary_requests: int, baseline_requests: int, *, expected_share: float, concentration: float = 100.0,
) -> float:
    """log BF = log B(k*w + S_c, k*(1-w) + S_b) - log B(k*w, k*(1-w)) - S_c log w - S_b log(1-w).
    expected_share strictly within (0, 1) (ValueError otherwise).

    Counts are cumulative over the step (the split is a property of the router, not of a round);
    a weight of 0 or 100 % has no split to check, hence the open interval.
    """
    if plain_count(canary_requests) and plain_count(baseline_requests):  # the judge's per-round call
        s_c, s_b = float(canary_requests), float(baseline_requests)
    else:
        canary = counts("canary_requests", canary_requests)
        baseline = counts("baseline_requests", baseline_requests)
        if canary.ndim or baseline.ndim:
            raise ValueError("srm_log_bayes_factor takes scalar request counts")
        s_c, s_b = float(canary), float(baseline)
    w = open_unit("expected_share", expected_share)
    k = positive("concentration", concentration)
    log_bf = betaln(k * w + s_c, k * (1.0 - w) + s_b) - betaln(k * w, k * (1.0 - w)) - xlogy(s_c, w) - xlog1py(s_b, -w)
    return float(log_bf)
