"""What a promotion is worth: the smallest regression the tests would have caught at the traffic seen.

JUDGE.md, "What a promotion is worth". "No evidence of harm" is not "evidence of health": a canary
that served 300 requests and was promoted says little about a 3x regression. So the judge reports,
next to a promotion, the smallest regression it would have caught with high probability given the
traffic it actually had. For the ratio e-process that needs a simulation (the split changes every
round); for a guard rail the binomial distribution answers in closed form.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
from scipy.special import betaincinv

from canaryflow.stats._checks import counts, open_unit, positive
from canaryflow.stats.confseq import credibly_above, prior_b
from canaryflow.stats.eprocess import RatioGrid, ratio_log_eprocess

DEFAULT_GRID = RatioGrid()  # the e-process's default alternatives (a frozen value, shared)


def _share(name: str, value: float) -> float:
    """A probability in (0, 1]: asking for certainty is allowed, asking for nothing is not."""
    number = float(value)
    if not 0.0 < number <= 1.0:
        raise ValueError(f"{name} must lie in (0, 1], got {value!r}")
    return number


def detectable_ratio(
    canary_requests: Sequence[int], baseline_requests: Sequence[int], *, baseline_rate: float, alpha: float,
    tolerance: float = 1.0, grid: RatioGrid = DEFAULT_GRID, probability: float = 0.9, simulations: int = 200,
    seed: int = 0, candidates: Sequence[float] = (1.25, 1.5, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 100),
) -> float | None:
    """The smallest candidate ratio r such that, with the per-round request counts actually seen
    and the baseline failing at baseline_rate, a canary failing r times as often would have been
    rolled back (max_t E_t >= 1/alpha) in at least `probability` of `simulations` seeded Monte
    Carlo runs (Poisson events per round). None if even the largest candidate would not be caught.
    Deterministic for a given seed. Vectorised: must take well under 0.5 s for 200 rounds.

    Events per round are Poisson (capped at the round's requests). The candidates share their
    random numbers: the canary's events under a ratio are those under the next smaller one plus
    independent Poisson extras, so each is Poisson with the right mean and every simulated path
    has at least as many canary events under a larger ratio. Since E only grows with canary
    events, the share of runs rolled back grows along the candidates, and a bisection over them
    evaluates only a few.
    """
    canary = counts("canary_requests", canary_requests)
    baseline = counts("baseline_requests", baseline_requests)
    if canary.ndim != 1 or canary.shape != baseline.shape:
        raise ValueError(
            f"canary_requests and baseline_requests must be per-round sequences of one length, "
            f"got shapes {canary.shape} and {baseline.shape}"
        )
    if not 0.0 <= baseline_rate <= 1.0:
        raise ValueError(f"baseline_rate is a failure rate and must lie in [0, 1], got {baseline_rate!r}")
    level = -math.log(open_unit("alpha", alpha))
    probability = _share("probability", probability)
    if isinstance(simulations, bool) or not isinstance(simulations, numbers.Integral) or simulations < 1:
        raise ValueError(f"simulations must be a positive integer, got {simulations!r}")
    ratios = np.sort(np.asarray(candidates, dtype=float))
    if ratios.ndim != 1 or ratios.size == 0 or not np.all(np.isfinite(ratios) & (ratios > 0.0)):
        raise ValueError(f"candidates must be a non-empty sequence of positive ratios, got {candidates!r}")
    if canary.size == 0:
        return None

    rng = np.random.default_rng(seed)
    runs = (simulations, canary.size)
    baseline_events = np.minimum(rng.poisson(baseline_rate * baseline, size=runs), baseline)
    extra_means = np.diff(ratios, prepend=0.0)[:, None, None] * (baseline_rate * canary)
    canary_events = np.minimum(np.cumsum(rng.poisson(extra_means, size=(ratios.size, *runs)), axis=0), canary)

    def caught(index: int) -> bool:
        log_e = ratio_log_eprocess(canary_events[index], baseline_events, canary, baseline, tolerance=tolerance,
                                   grid=grid)
        return bool(np.mean(log_e.max(axis=-1) >= level) >= probability)

    # Invariant: candidate `missed` is not caught and `found` is, with a virtual uncaught candidate
    # before the first and a virtual caught one ("none") after the last.
    missed, found = -1, ratios.size
    while found - missed > 1:
        middle = (missed + found) // 2
        missed, found = (missed, middle) if caught(middle) else (middle, found)
    return float(ratios[found]) if found < ratios.size else None


def detectable_rate(
    trials: int, *, limit: float, alpha: float, a: float = 1.0, b: float | None = None, probability: float = 0.9,
) -> float | None:
    """The smallest true rate p whose guard rail (credibly_above(limit)) would fire by `trials`
    requests with `probability` (binomial quantile of Y, then the martingale test); None if none <= 1.

    p qualifies when the (1 - probability) quantile of Y ~ Binomial(trials, p) fires. With Y* the
    smallest count from which every larger count fires, those p are the ones with
    P(Y >= Y*) >= probability, and P(Binomial(N, p) >= k) = I_p(k, N - k + 1) (the regularised
    incomplete beta) gives the smallest in closed form. The check is made at `trials` only; the
    judge checks every round, so the chance of having fired by then is, if anything, higher.
    """
    requests = counts("trials", trials)
    if requests.ndim:
        raise ValueError("detectable_rate takes a scalar number of trials")
    limit = open_unit("limit", limit)
    alpha = open_unit("alpha", alpha)
    probability = _share("probability", probability)
    b = prior_b(limit) if b is None else positive("b", b)
    n = int(requests)
    if n == 0:
        return None
    failures = np.arange(n + 1)
    fires = credibly_above(failures, n, limit, alpha=alpha, a=a, b=b)
    assert isinstance(fires, np.ndarray), "an array of counts gives an array of answers"
    if not fires[-1]:
        return None
    silent = np.flatnonzero(~fires)
    first = int(silent[-1]) + 1  # Y = 0 never fires, so there is always a silent count
    return float(betaincinv(first, n - first + 1, probability))
