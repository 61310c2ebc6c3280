"""Replayed signatures map back to the delivery that first used them.

Delivery-id headers are not covered by any signature, so a captured request resent with a new
delivery id would otherwise look like a new release. The receiver remembers, for a while, a
digest of each accepted request's signed material together with the idempotency key it was
started with; a repeat reuses that key, so the orchestrator returns the original run.
Per process and in memory: the orchestrator's idempotency key remains the durable guard.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable


class ReplayGuard:
    def __init__(self, ttl_seconds: float, *, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._seen: OrderedDict[str, tuple[str, float]] = OrderedDict()

    @staticmethod
    def fingerprint(source: str, material: bytes) -> str:
        return hashlib.sha256(source.encode() + b"\0" + material).hexdigest()

    def _expire(self, now: float) -> None:
        while self._seen:
            _, (_, at) = next(iter(self._seen.items()))
            if now - at <= self.ttl and len(self._seen) <= self.max_entries:
                break
            self._seen.popitem(last=False)

    def key_for(self, fingerprint: str) -> str | None:
        """The idempotency key first used with this signed material, if still remembered."""
        if self.ttl <= 0:
            return None
        self._expire(self._clock())
        hit = self._seen.get(fingerprint)
        return hit[0] if hit else None

    def remember(self, fingerprint: str, idempotency_key: str) -> None:
        if self.ttl <= 0:
            return
        now = self._clock()
        self._seen.pop(fingerprint, None)
        self._seen[fingerprint] = (idempotency_key, now)
        self._expire(now)
