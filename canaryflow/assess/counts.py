"""Integer counts per version per round, made from raw counter snapshots.

``rate()`` and ``increase()`` extrapolate and return fractions; sequential tests need the integer
number of requests and errors each version served between two rounds. So the judge reads raw
counters at one evaluation time per round and takes differences itself, series by series: a
series whose value went down was reset (a restarted process), and its new value is the increase;
a series absent from the earlier snapshot started after it, so it counts from zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

#: A series identity: its label pairs, sorted.
SeriesKey = tuple[tuple[str, str], ...]
Snapshot = Mapping[SeriesKey, float]


def series_key(labels: Mapping[str, str]) -> SeriesKey:
    return tuple(sorted(labels.items()))


def _increase(before: float | None, after: float) -> float:
    if before is None or after < before:  # new series, or a counter reset
        return after
    return after - before


def increase(before: Snapshot | None, after: Snapshot) -> float:
    """Total increase of every series from ``before`` to ``after`` (``None``: nothing before)."""
    before = before or {}
    return sum(_increase(before.get(key), value) for key, value in after.items() if math.isfinite(value))


def bucket_increase(before: Snapshot | None, after: Snapshot) -> dict[float, float]:
    """Per ``le`` boundary, the increase of the cumulative bucket counters (summed over series)."""
    before = before or {}
    totals: dict[float, float] = {}
    for key, value in after.items():
        le = dict(key).get("le")
        if le is None or not math.isfinite(value):
            continue
        bound = float(le)  # "+Inf" parses to inf
        totals[bound] = totals.get(bound, 0.0) + _increase(before.get(key), value)
    return totals


@dataclass(frozen=True)
class Counts:
    """Requests served and events among them (errors, or requests slower than a boundary)."""

    requests: int
    events: int

    def __post_init__(self) -> None:
        if self.requests < 0 or self.events < 0:
            raise ValueError(f"counts cannot be negative: {self}")

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.requests + other.requests, self.events + other.events)

    @property
    def rate(self) -> float | None:
        return self.events / self.requests if self.requests else None


ZERO = Counts(0, 0)


def counts(requests: float, events: float) -> Counts:
    """Round float counter increases to integers; events never exceed requests (scrape skew
    between two series of one target can make them do so by a request or two)."""
    n = max(0, round(requests))
    return Counts(n, min(n, max(0, round(events))))


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts of one version over some rounds: ``le`` -> requests at or under it."""

    buckets: tuple[tuple[float, int], ...]  # ascending le, the last is +Inf

    @classmethod
    def from_increase(cls, by_le: Mapping[float, float]) -> Histogram:
        ordered = sorted(by_le.items())
        # Cumulative counts never decrease along le; scrape skew can break that by a request: clamp.
        running, fixed = 0, []
        for le, value in ordered:
            running = max(running, max(0, round(value)))
            fixed.append((le, running))
        return cls(tuple(fixed))

    @property
    def requests(self) -> int:
        return self.buckets[-1][1] if self.buckets and math.isinf(self.buckets[-1][0]) else 0

    @property
    def boundaries(self) -> tuple[float, ...]:
        return tuple(le for le, _ in self.buckets)

    def at_or_under(self, le: float) -> int:
        for bound, count in self.buckets:
            if bound == le:
                return count
        raise KeyError(le)

    def slower_than(self, le: float) -> Counts:
        return Counts(self.requests, self.requests - self.at_or_under(le))

    def __add__(self, other: Histogram) -> Histogram:
        if not self.buckets:
            return other
        if not other.buckets:
            return self
        if self.boundaries != other.boundaries:
            raise ValueError("histograms with different buckets cannot be added")
        return Histogram(tuple((le, a + b) for (le, a), (_, b) in zip(self.buckets, other.buckets, strict=False)))

    def quantile(self, q: float) -> float | None:
        """Linear interpolation inside the bucket, as ``histogram_quantile`` does: for display only
        (the judge never compares interpolated quantiles)."""
        total = self.requests
        if total == 0:
            return None
        rank, lower, below = q * total, 0.0, 0
        for le, count in self.buckets:
            if count >= rank:
                if math.isinf(le):
                    return lower
                width = count - below
                return lower + (le - lower) * ((rank - below) / width if width else 1.0)
            lower, below = le, count
        return lower


EMPTY_HISTOGRAM = Histogram(())
