"""Token bucket per source (route + client address), bounded in memory.

Each key starts with ``burst`` tokens and regains ``rate`` tokens per second up to ``burst``. A
request spends one token; with none left it is refused with the seconds until the next token.
Buckets that have refilled completely carry no information, so the oldest are dropped first
when more than ``max_keys`` sources are tracked.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBucketLimiter:
    def __init__(self, rate: float, burst: int, *, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate < 0 or burst < 0:
            raise ValueError("rate and burst must not be negative")
        self.rate = float(rate)
        self.burst = int(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0 and self.burst > 0

    def acquire(self, key: str) -> float:
        """Spend a token for ``key``: 0.0 if allowed, else the seconds to wait before retrying."""
        if not self.enabled:
            return 0.0
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                tokens -= 1.0
                wait = 0.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)  # most recently used last
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return wait

    @staticmethod
    def retry_after_header(wait: float) -> str:
        """``Retry-After`` is whole seconds; round up so a client that obeys it is let through."""
        return str(max(1, math.ceil(wait)))
