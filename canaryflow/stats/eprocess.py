"""Canary worse than baseline: a one-sided, anytime-valid e-process on how events split.

JUDGE.md, "Errors: canary worse than baseline". Given how many events a round produced (errors, or
requests slower than a bucket boundary for latency), each one falls on the canary with probability
rho_s, the canary's share of that round's requests, when both versions fail alike, and with
theta_s(r) when the canary fails r times as often. The likelihood ratio of "r" against "no worse",
averaged over a fixed grid of r, is a nonnegative supermartingale with E_0 = 1 under the null, so by
Ville's inequality P(E_t ever >= 1/alpha) <= alpha: the judge may look after every round, forever.

This is the two-arm case of Lindon & Malek (NeurIPS 2022, arXiv 2011.03567) with their Dirichlet
mixture replaced by a grid over the ratio, because rho changes every round (weights step, traffic
swings) and a grid keeps the running state a fixed vector of J log-likelihoods that the judge can
fold from round to round.

With D_s(r) = rho_s*r + 1 - rho_s, theta_s(r) / theta_s(r0) = (r/r0) * D_s(r0)/D_s(r) and
(1 - theta_s(r)) / (1 - theta_s(r0)) = D_s(r0)/D_s(r), so a round adds

    y_c * log(r/r0) - (y_c + y_b) * [log1p(rho_s*(r-1)) - log1p(rho_s*(r0-1))]

to log L_t(r): the JUDGE.md sum, exact, and finite for every rho_s strictly within (0, 1), which a
round where both arms served requests always has.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from canaryflow.stats._checks import counts, events_within, plain_count

#: ``RatioEvidence.e_value`` stops here instead of overflowing to inf: any threshold 1/alpha a judge
#: can use is far below, and a finite number survives JSON, Prometheus gauges and comparisons.
MAX_E_VALUE = 1e300
_LOG_MAX_E_VALUE = math.log(MAX_E_VALUE)


@dataclass(frozen=True)
class RatioGrid:
    """The alternatives r_1..r_J the e-process averages over, fixed before the release (JUDGE.md).

    Log-spaced, because a regression is as likely to be 2x as 20x and each octave deserves the
    same weight; the grid's low end is the smallest regression the test is built to see quickly.
    """

    low: float = 1.5
    high: float = 100.0
    points: int = 40

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and 0.0 < self.low <= self.high):
            raise ValueError(f"ratio grid needs 0 < low <= high, both finite; got low={self.low!r}, high={self.high!r}")
        if isinstance(self.points, bool) or not isinstance(self.points, numbers.Integral) or self.points < 1:
            raise ValueError(f"ratio grid needs at least one point, got points={self.points!r}")

    def ratios(self) -> npt.NDArray[np.float64]:
        """The grid points (one read-only array per grid: the judge asks for them every round)."""
        return _ratios(self.low, self.high, self.points)


_RATIOS: dict[tuple[float, float, int], npt.NDArray[np.float64]] = {}


def _ratios(low: float, high: float, points: int) -> npt.NDArray[np.float64]:
    key = (low, high, points)
    ratios = _RATIOS.get(key)
    if ratios is None:
        ratios = np.geomspace(low, high, points)
        ratios.flags.writeable = False
        _RATIOS[key] = ratios
    return ratios


_POINTS: dict[tuple[float, float, int], tuple[tuple[float, ...], tuple[float, ...]]] = {}


def _grid_points(grid: RatioGrid) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(r_j, log r_j) as Python floats, once per grid."""
    key = (grid.low, grid.high, grid.points)
    points = _POINTS.get(key)
    if points is None:
        ratios = grid.ratios().tolist()
        points = _POINTS[key] = (tuple(ratios), tuple(math.log(r) for r in ratios))
    return points


def _log_mean_exp(values: Sequence[float]) -> float:
    """log of the mean of exp(values), largest term taken out first (no overflow). A few dozen
    scalars: plain floats beat numpy's and scipy's per-call overhead many times over."""
    top = max(values)
    if math.isinf(top):
        return top
    return top + math.log(math.fsum(math.exp(value - top) for value in values) / len(values))


def theta(rho: float | np.ndarray, r: float | np.ndarray) -> npt.NDArray[np.float64]:
    """P(an event falls on the canary) when the canary's rate is r times the baseline's and it
    serves share rho of requests: rho*r / (rho*r + 1 - rho)."""
    share = np.asarray(rho, dtype=np.float64)
    ratio = np.asarray(r, dtype=np.float64)
    return share * ratio / (share * ratio + 1.0 - share)


def _check_tolerance(tolerance: float, grid: RatioGrid) -> None:
    """The null "canary at most r0 times the baseline" is only tested by alternatives beyond r0."""
    if not (math.isfinite(tolerance) and tolerance >= 1.0):
        raise ValueError(f"tolerance is a ratio to the baseline and must be >= 1, got {tolerance!r}")
    if not grid.low > tolerance:
        raise ValueError(f"the ratio grid must start above the tolerance: grid.low={grid.low!r} "
                         f"<= tolerance={tolerance!r}")


def _log_increments(
    canary_events: np.ndarray, all_events: np.ndarray, rho: np.ndarray, log_null_spread: np.ndarray,
    ratio: float | np.ndarray, tolerance: float,
) -> np.ndarray:
    """One round's term of log L(r) in the closed form of the module docstring (broadcasting).

    ``log_null_spread`` is log1p(rho*(r0-1)), computed once per round by the caller because it does
    not depend on the grid point.
    """
    increments: np.ndarray = canary_events * (np.log(ratio) - math.log(tolerance)) - all_events * (
        np.log1p(rho * (ratio - 1.0)) - log_null_spread
    )
    return increments


def _scalar_counts(
    canary_events: object, baseline_events: object, canary_requests: object, baseline_requests: object,
) -> tuple[int, int, int, int] | None:
    """The four counts of one round as ints when they plainly are valid ones (integers, never
    bools, non-negative, events within requests), else None and ``_round_counts`` says what is
    wrong: the common case skips building four arrays every round."""
    if not (plain_count(canary_events) and plain_count(baseline_events)
            and plain_count(canary_requests) and plain_count(baseline_requests)):
        return None
    c_ev, b_ev, c_req, b_req = int(canary_events), int(baseline_events), int(canary_requests), int(baseline_requests)
    if c_ev > c_req or b_ev > b_req:
        return None
    return c_ev, b_ev, c_req, b_req


def _round_counts(
    canary_events: npt.ArrayLike, baseline_events: npt.ArrayLike,
    canary_requests: npt.ArrayLike, baseline_requests: npt.ArrayLike,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four counts of a round (or of many), checked, each in its own shape.

    They are not broadcast to one shape here: requests shared by many simulated runs keep the
    shape of one run, so the split and its logarithms are computed once per round, not per run.
    """
    c_ev, b_ev = counts("canary_events", canary_events), counts("baseline_events", baseline_events)
    c_req, b_req = counts("canary_requests", canary_requests), counts("baseline_requests", baseline_requests)
    np.broadcast_shapes(c_ev.shape, b_ev.shape, c_req.shape, b_req.shape)  # a ValueError if they do not fit
    canary_ev, canary_req = np.broadcast_arrays(c_ev, c_req)
    events_within("canary_events", canary_ev, canary_req, "canary_requests")
    baseline_ev, baseline_req = np.broadcast_arrays(b_ev, b_req)
    events_within("baseline_events", baseline_ev, baseline_req, "baseline_requests")
    return c_ev, b_ev, c_req, b_req


@dataclass(frozen=True)
class RatioEvidence:
    """Running state of the e-process: log L_t(r_j) for every grid point (a fold over rounds, so the
    judge can carry it from round to round in O(grid) per round)."""

    log_likelihoods: tuple[float, ...]
    rounds_used: int = 0

    def __post_init__(self) -> None:
        if not self.log_likelihoods or any(value != value for value in self.log_likelihoods):  # NaN
            raise ValueError("evidence needs one log-likelihood per grid point, none of them NaN")

    @classmethod
    def start(cls, grid: RatioGrid = RatioGrid()) -> RatioEvidence:
        """No rounds yet: L_0(r) = 1 for every r, so E_0 = 1 (Ville's inequality starts from 1)."""
        return cls(log_likelihoods=(0.0,) * grid.points)

    def update(
        self, *, canary_events: int, baseline_events: int, canary_requests: int,
        baseline_requests: int, tolerance: float = 1.0, grid: RatioGrid = RatioGrid(),
    ) -> RatioEvidence:
        """One round. Skip (return self) when either arm served 0 requests. rho is the observed
        split of THIS round. With tolerance r0 > 1 the null is theta(rho, r0) (JUDGE.md).

        Counts are the round's deltas (the caller handles counter resets). The grid and tolerance
        must be the ones the evidence was started with; only the grid's size can be checked here.
        """
        scalars = _scalar_counts(canary_events, baseline_events, canary_requests, baseline_requests)
        if scalars is None:  # arrays, floats, negatives, events over requests: checked and named here
            arrays = _round_counts(canary_events, baseline_events, canary_requests, baseline_requests)
            if any(count.ndim for count in arrays):
                raise ValueError("RatioEvidence.update takes one round of scalar counts; "
                                 "use ratio_log_eprocess for arrays")
            scalars = int(arrays[0]), int(arrays[1]), int(arrays[2]), int(arrays[3])
        c_ev, b_ev, c_req, b_req = scalars
        _check_tolerance(tolerance, grid)
        if grid.points != len(self.log_likelihoods):
            raise ValueError(f"evidence has {len(self.log_likelihoods)} grid points, the grid given has {grid.points}")
        if c_req == 0 or b_req == 0:
            return self
        used = self.rounds_used + 1
        if c_ev + b_ev == 0:  # no events: every term is 0, the evidence stands
            return RatioEvidence(log_likelihoods=self.log_likelihoods, rounds_used=used)
        # The closed form of the module docstring in plain floats: one round is J scalar terms,
        # where numpy's per-call cost would dominate (the judge folds a round per metric per tick).
        rho = float(c_req) / float(c_req + b_req)
        log_null_spread = math.log1p(rho * (tolerance - 1.0))
        log_tolerance = math.log(tolerance)
        canary, both = float(c_ev), float(c_ev + b_ev)
        folded = tuple(
            value + canary * (log_ratio - log_tolerance) - both * (math.log1p(rho * (ratio - 1.0)) - log_null_spread)
            for value, ratio, log_ratio in zip(self.log_likelihoods, *_grid_points(grid), strict=False)
        )
        return RatioEvidence(log_likelihoods=folded, rounds_used=used)

    @property
    def log_e_value(self) -> float:
        """log E_t: the log of the grid AVERAGE of L_t(r_j) (an average of e-processes is one).
        Computed once per state (the fields never change): the judge reads it several times a round."""
        cached = self.__dict__.get("_log_e_value")
        if cached is None:
            cached = self.__dict__["_log_e_value"] = _log_mean_exp(self.log_likelihoods)
        return cached

    @property
    def e_value(self) -> float:
        """E_t, capped at ``MAX_E_VALUE`` so that overwhelming evidence stays a finite number."""
        log_e = self.log_e_value
        return MAX_E_VALUE if log_e >= _LOG_MAX_E_VALUE else math.exp(log_e)


def ratio_log_eprocess(
    canary_events: npt.ArrayLike, baseline_events: npt.ArrayLike, canary_requests: npt.ArrayLike,
    baseline_requests: npt.ArrayLike, *, tolerance: float = 1.0, grid: RatioGrid = RatioGrid(),
) -> np.ndarray:
    """Vectorised batch form: array inputs of shape (..., rounds) -> running log E_t, same shape.

    The same sums as folding ``RatioEvidence.update`` round by round, for simulations and replays:
    the inputs broadcast together and leading axes are independent runs. The grid points are
    stacked and averaged with one log-sum-exp (one exp per value, several times faster than adding
    them up point by point), so memory is J times the inputs' shape: chunk very large simulations.
    """
    c_ev, b_ev, c_req, b_req = _round_counts(canary_events, baseline_events, canary_requests, baseline_requests)
    shape = np.broadcast_shapes(c_ev.shape, b_ev.shape, c_req.shape, b_req.shape)
    if not shape:
        raise ValueError("ratio_log_eprocess needs a rounds axis: inputs of shape (..., rounds)")
    _check_tolerance(tolerance, grid)
    served = (c_req > 0) & (b_req > 0)
    total = (c_req + b_req).astype(float)
    rho = np.divide(c_req, total, out=np.full(total.shape, 0.5), where=served)
    canary = np.where(served, c_ev, 0).astype(float)
    both = np.where(served, c_ev + b_ev, 0).astype(float)
    log_null_spread = np.log1p(rho * (tolerance - 1.0))
    ratios = grid.ratios()
    log_likelihoods = np.empty((ratios.size, *shape))
    for log_likelihood, ratio in zip(log_likelihoods, ratios, strict=False):
        log_likelihood[...] = _log_increments(canary, both, rho, log_null_spread, ratio, tolerance)
        np.cumsum(log_likelihood, axis=-1, out=log_likelihood)
    return _log_mean_exp_in_place(log_likelihoods)


def _log_mean_exp_in_place(stacked: np.ndarray) -> np.ndarray:
    """log of the mean of exp over the first axis, overwriting ``stacked`` (a scratch array).

    scipy's ``logsumexp`` copies its input several times; here the one stack is reused, and the
    largest value is taken out first so that exp never overflows and the largest term is exactly 1.
    """
    top = stacked.max(axis=0)
    np.subtract(stacked, top, out=stacked)
    np.exp(stacked, out=stacked)
    log_mean: np.ndarray = top + np.log(stacked.mean(axis=0))
    return log_mean


def average_log_e(log_values: Sequence[float]) -> float:
    """log of the arithmetic mean of e-values given as logs (an average of e-processes is an
    e-process: used to combine several latency bucket boundaries)."""
    values = np.asarray(log_values, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("average_log_e needs a non-empty sequence of log e-values")
    if np.isnan(values).any():
        raise ValueError("average_log_e got a NaN log e-value")
    return _log_mean_exp(values.tolist())
