"""Token bucket with a fake clock."""

from __future__ import annotations

from canaryflow.webhook.ratelimit import TokenBucketLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_rate():
    clock = Clock()
    limiter = TokenBucketLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("a")
    assert wait == 0.5  # one token at 2/s
    assert TokenBucketLimiter.retry_after_header(wait) == "1"
    clock.now += 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    clock.now += 100  # refills to the burst, not beyond
    assert [limiter.acquire("a") for _ in range(4)][-1] > 0


def test_sources_have_separate_buckets_and_memory_is_bounded():
    clock = Clock()
    limiter = TokenBucketLimiter(rate=1, burst=1, max_keys=2, clock=clock)
    assert limiter.acquire("github|1.2.3.4") == 0.0
    assert limiter.acquire("github|1.2.3.4") > 0
    assert limiter.acquire("generic|1.2.3.4") == 0.0
    assert limiter.acquire("github|5.6.7.8") == 0.0
    assert len(limiter._buckets) == 2


def test_zero_rate_disables():
    limiter = TokenBucketLimiter(rate=0, burst=0)
    assert not limiter.enabled
    assert all(limiter.acquire("a") == 0.0 for _ in range(100))
