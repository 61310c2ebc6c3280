"""How the controller's proxy splits user traffic between stable and canary.

Two separate things, as in a real mesh: the *policy* is what the release asked for (a canary
weight, a lease, the history of changes) and is what the controller reports; the *split* is what
the data plane does with each request. The split is random per request, as Envoy routes weighted
clusters: a 10 % weight sends each request to the canary with probability 0.1, so a short window
may hold 6 % or 14 % of its requests, and a judge must cope with that. The split can also be
misconfigured on purpose (``canary_share_factor``): the policy still says 10 % while the canary
gets 2 %, the fault a traffic-split check exists to catch.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable

STABLE, CANARY = "stable", "canary"
HISTORY_LIMIT = 1000


class RandomSplit:
    """Per-request weighted random choice between stable and canary.

    ``canary_share_factor`` scales the canary's probability (capped at 1): 1.0 is a healthy mesh,
    0.2 one that gives the canary a fifth of its weight, 2.0 one that gives it double.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.canary_share_factor = 1.0

    def set_share_factor(self, factor: object) -> None:
        """Any value is taken and checked here: it comes straight from an admin request's body."""
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 <= factor < math.inf:
            raise ValueError(f"canary_share_factor must be a finite number >= 0, got {factor!r}")
        self.canary_share_factor = float(factor)

    def canary_probability(self, weight: int) -> float:
        return min(1.0, weight / 100 * self.canary_share_factor)

    def pick(self, weight: int) -> str:
        # random() is in [0, 1): weight 0 never reaches the canary, a probability of 1 always does.
        return CANARY if self.rng.random() < self.canary_probability(weight) else STABLE


class TrafficPolicy:
    """Canary weight with optional lease and a history of changes.

    Pure logic with an injectable clock so lease expiry is unit-testable
    without sleeping; the controller calls :meth:`expire_lease` periodically
    and before every routing decision.
    """

    def __init__(self, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self._clock = clock
        self._weight = 0
        self.split = RandomSplit(rng)
        self.lease_expires_at: float | None = None
        self.history: deque[dict] = deque(maxlen=HISTORY_LIMIT)

    @property
    def weight(self) -> int:
        """The requested canary weight (what the controller reports, whatever the split does)."""
        return self._weight

    def set_weight(self, weight: int, reason: str, lease_seconds: float | None = None) -> None:
        """Set the weight; a positive ``lease_seconds`` makes it revert unless renewed."""
        if not 0 <= weight <= 100:
            raise ValueError(f"canary weight must be within 0..100, got {weight}")
        if lease_seconds is not None and lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
        self._weight = weight
        now = self._clock()
        self.lease_expires_at = now + lease_seconds if weight > 0 and lease_seconds else None
        self.history.append({"t": now, "canary_weight": weight, "reason": reason})

    def expire_lease(self) -> bool:
        """Revert to weight 0 if the lease ran out; True when that happened now."""
        if self.lease_expires_at is None or self._clock() < self.lease_expires_at:
            return False
        self.set_weight(0, "lease_expired")
        return True

    def pick(self) -> str:
        self.expire_lease()
        return self.split.pick(self._weight)
