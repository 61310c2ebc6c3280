"""What the local platform's unit tests share: a settable clock and a binomial margin."""

from __future__ import annotations

import math


class FakeClock:
    """A clock that moves only when a test moves it (``clock.now += 5``)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def within_binomial_margin(count: int, n: int, p: float, z: float = 4.5) -> bool:
    """``count`` successes of ``n`` trials are plausible at probability ``p``.

    4.5 standard deviations: a correct implementation fails a seeded test once in ~150,000 seeds,
    while a real bias of a few standard deviations still fails it.
    """
    return abs(count - n * p) <= z * math.sqrt(n * p * (1 - p))
