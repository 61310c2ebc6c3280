"""Absolute guard rails: a time-uniform confidence sequence for the canary's own failure rate.

JUDGE.md, "Absolute guard rails". For N canary requests with Y failures (errors, or requests slower
than the SLO's bucket), the Beta(a, b) mixture of binomial likelihood ratios

    M_N(p) = [B(a+Y, b+N-Y) / B(a, b)] / [p^Y (1-p)^(N-Y)]

is a nonnegative martingale with mean 1 under the true p, so {p : M_N(p) < 1/alpha} covers the true
rate at every N at once with probability >= 1 - alpha (Howard, Ramdas, McAuliffe, Sekhon, "Time-
uniform, nonparametric, nonasymptotic confidence sequences", Ann. Stat. 2021). That is what lets
the judge look after every round. a = 1 and b near 1/(expected rate) put the prior where the rates
live, which is what makes the sequence narrow quickly at rare failure rates.

log M(p) is convex in p and smallest at Y/N, where M <= 1 (the mixture of likelihoods never beats
the maximum likelihood), so the sequence is an interval around Y/N. Whether it lies wholly above or
below a limit is therefore decided by M at the limit alone: the judge's per-round checks need no
root finding, only ``beta_binomial_cs`` (for reports) does.

The martingale and the two checks also accept arrays of counts (elementwise answers), so that
simulations can evaluate whole paths at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq
from scipy.special import betaln, xlog1py, xlogy

from canaryflow.stats._checks import counts, events_within, open_unit, plain_count, positive

#: Smallest and largest p at which the bounds are looked for: beyond them a bound cannot be told
#: from 0 or 1 in floating point, and M would be evaluated on log(0).
_P_FLOOR = float(np.finfo(float).tiny)
_P_CEILING = float(np.nextafter(1.0, 0.0))


def _scalar_failures(events: object, trials: object) -> tuple[int, int] | None:
    """(Y, N) as ints when both plainly are valid scalar counts, else None (``_failures`` then
    checks and names what is wrong): the judge's per-round calls skip building arrays."""
    if not (plain_count(events) and plain_count(trials)):
        return None
    y, n = int(events), int(trials)
    return (y, n) if y <= n else None


def _failures(events: npt.ArrayLike, trials: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y, n = np.broadcast_arrays(counts("events", events), counts("trials", trials))
    events_within("events", y, n, "trials")
    return y, n


def _log_martingale(y: np.ndarray, n: np.ndarray, p: float | np.ndarray, a: float, b: float) -> np.ndarray:
    log_m: np.ndarray = betaln(a + y, b + n - y) - betaln(a, b) - xlogy(y, p) - xlog1py(n - y, -p)
    return log_m


def _scalar_or_array(values: np.ndarray) -> float | bool | np.ndarray:
    """Scalar counts give a Python scalar back; arrays of counts an array."""
    return values.item() if np.ndim(values) == 0 else values


def beta_binomial_log_martingale(
    events: int | npt.ArrayLike, trials: int | npt.ArrayLike, p: float, *, a: float = 1.0, b: float,
) -> float | np.ndarray:
    """log M(p) = log B(a+Y, b+N-Y) - log B(a, b) - Y log p - (N-Y) log(1-p).

    p may be 0 or 1: M is then +inf wherever the data rule that p out (a failure seen at p = 0), and
    finite otherwise (xlogy takes 0 * log 0 as 0).
    """
    y, n = _failures(events, trials)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p is a failure rate and must lie in [0, 1], got {p!r}")
    with np.errstate(divide="ignore"):
        return _scalar_or_array(_log_martingale(y, n, p, positive("a", a), positive("b", b)))


def beta_binomial_cs(
    events: int, trials: int, *, alpha: float, a: float = 1.0, b: float,
) -> tuple[float, float]:
    """Time-uniform confidence sequence {p : M(p) < 1/alpha} as (lower, upper); (0, 1) with no
    trials; lower = 0 when M at p->0 stays below 1/alpha (e.g. no events). Each bound is found
    by Newton's method on the convex excess of log M (see ``_newton_root``), with
    scipy.optimize.brentq as the fallback."""
    scalars = _scalar_failures(events, trials)
    if scalars is None:
        y, n = _failures(events, trials)
        if y.ndim:
            raise ValueError("beta_binomial_cs takes scalar counts")
        scalars = int(y), int(n)
    failures, requests = scalars
    level = -math.log(open_unit("alpha", alpha))
    a, b = positive("a", a), positive("b", b)
    if requests == 0:
        return 0.0, 1.0
    estimate = failures / requests
    # The mixture term does not depend on p: computed once; each bound is then a root of
    # mixture - Y log p - (N-Y) log(1-p), in plain floats (the same log M as ``_log_martingale``).
    mixture = float(betaln(a + failures, b + requests - failures) - betaln(a, b)) - level
    successes = requests - failures

    def excess(p: float) -> float:
        return mixture - (failures * math.log(p) if failures else 0.0) - (
            successes * math.log1p(-p) if successes else 0.0)

    lower = 0.0
    if failures > 0 and excess(_P_FLOOR) > 0.0:
        # In u = log p the excess is convex and falls towards Y/N: Newton from the far end.
        newton_lower = _newton_root(
            lambda u: (mixture - failures * u - successes * math.log1p(-math.exp(u)),
                       -failures + successes * math.exp(u) / -math.expm1(u)),
            start=math.log(_P_FLOOR), stop=math.log(estimate), to_p=math.exp)
        lower = newton_lower if newton_lower is not None else brentq(
            excess, _P_FLOOR, estimate, xtol=1e-300, rtol=1e-13, maxiter=500)
    upper = 1.0
    if failures < requests and excess(_P_CEILING) > 0.0:
        # In v = log(1-p) likewise, from p near 1 down towards Y/N.
        newton_upper = _newton_root(
            lambda v: (mixture - failures * math.log1p(-math.exp(v)) - successes * v,
                       failures * math.exp(v) / -math.expm1(v) - successes),
            start=math.log1p(-_P_CEILING), stop=math.log1p(-estimate), to_p=lambda v: -math.expm1(v))
        upper = newton_upper if newton_upper is not None else brentq(
            excess, estimate, _P_CEILING, xtol=1e-300, rtol=1e-13, maxiter=500)
    return float(lower), float(upper)


def _newton_root(
    excess_and_slope: Callable[[float], tuple[float, float]], *, start: float, stop: float,
    to_p: Callable[[float], float],
) -> float | None:
    """The root between ``start`` (excess > 0) and ``stop`` (excess < 0) of a convex, falling
    excess, as a rate (``to_p``); None if it does not settle (the caller then brackets it).

    From the side where the excess is positive, Newton's steps on a convex falling function never
    pass the root and close in on it quadratically: a handful of float evaluations, where a
    bracketing solver needs a dozen and more through scipy's per-call wrapper.
    """
    x = start
    for _ in range(200):
        value, slope = excess_and_slope(x)
        if value <= 0.0:
            return to_p(x)
        if not slope < 0.0:
            return None
        moved = min(x - value / slope, stop)
        if moved - x <= 4e-16 * max(1.0, abs(x)):
            return to_p(moved)
        x = moved
    return None


def _beyond(
    events: int | npt.ArrayLike, trials: int | npt.ArrayLike, limit: float, alpha: float, a: float, b: float,
    side: float,
) -> bool | np.ndarray:
    """Y/N on the ``side`` (+1 above, -1 below) of the limit, and M(limit) >= 1/alpha (module doc)."""
    limit = open_unit("limit", limit)
    level = -math.log(open_unit("alpha", alpha))
    scalars = _scalar_failures(events, trials)
    if scalars is not None:  # one judge round: plain floats, the same log M as _log_martingale
        failures, requests = scalars
        if requests == 0 or not side * (failures / requests - limit) > 0.0:
            return False
        a, b = positive("a", a), positive("b", b)
        successes = requests - failures
        log_m = float(betaln(a + failures, b + successes) - betaln(a, b)) - (
            failures * math.log(limit) if failures else 0.0) - (successes * math.log1p(-limit) if successes else 0.0)
        return log_m >= level
    y, n = _failures(events, trials)
    estimate = np.divide(y, n, out=np.zeros(n.shape), where=n > 0)
    on_side = (n > 0) & (side * (estimate - limit) > 0.0)
    ruled_out = _log_martingale(y, n, limit, positive("a", a), positive("b", b)) >= level
    beyond = on_side & ruled_out
    return bool(beyond) if beyond.ndim == 0 else beyond


def credibly_above(
    events: int | npt.ArrayLike, trials: int | npt.ArrayLike, limit: float, *, alpha: float, a: float = 1.0,
    b: float,
) -> bool | np.ndarray:
    """Lower bound > limit, decided WITHOUT root finding: Y/N > limit and log M(limit) >= log(1/alpha)."""
    return _beyond(events, trials, limit, alpha, a, b, side=1.0)


def credibly_below(
    events: int | npt.ArrayLike, trials: int | npt.ArrayLike, limit: float, *, alpha: float, a: float = 1.0,
    b: float,
) -> bool | np.ndarray:
    """Upper bound < limit, same way (Y/N < limit and log M(limit) >= log(1/alpha))."""
    return _beyond(events, trials, limit, alpha, a, b, side=-1.0)


def prior_b(limit: float) -> float:
    """The default b for a limit: max(1.0, 1/limit) (JUDGE.md: b ~ 1/expected rate).

    The prior Beta(1, b) then has its mean 1/(1+b) near the limit, where the guard rail has to be
    sharp. For a limit in (0, 1) this is 1/limit: the floor of JUDGE.md's rule never binds there.
    """
    return max(1.0, 1.0 / open_unit("limit", limit))
