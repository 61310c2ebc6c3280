"""Deterministic traffic split and lease expiry of the controller."""

import pytest

from canaryflow.local.controller import CANARY, STABLE, SmoothWeightedSplit, TrafficPolicy


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("weight", [0, 1, 5, 10, 25, 33, 50, 75, 99, 100])
def test_exact_share_per_hundred(weight):
    split = SmoothWeightedSplit(weight)
    for _ in range(3):
        picks = [split.pick() for _ in range(100)]
        assert picks.count(CANARY) == weight


def test_ten_percent_is_one_in_every_ten():
    split = SmoothWeightedSplit(10)
    for _ in range(10):
        assert [split.pick() for _ in range(10)].count(CANARY) == 1


def test_weight_change_applies_from_next_pick():
    split = SmoothWeightedSplit(10)
    [split.pick() for _ in range(37)]
    split.set_weight(40)
    assert [split.pick() for _ in range(100)].count(CANARY) == 40
    split.set_weight(0)
    assert all(split.pick() == STABLE for _ in range(50))


def test_invalid_weight_rejected():
    with pytest.raises(ValueError):
        SmoothWeightedSplit(101)


def test_lease_expires_and_reverts_to_zero():
    clock = FakeClock()
    policy = TrafficPolicy(clock)
    policy.set_weight(30, "set", lease_seconds=5)
    assert policy.lease_expires_at == 1005
    clock.now += 4.9
    assert not policy.expire_lease() and policy.weight == 30
    clock.now += 0.2
    assert policy.pick() == STABLE
    assert policy.weight == 0 and policy.lease_expires_at is None
    assert policy.history[-1]["reason"] == "lease_expired"
    assert policy.history[-1]["canary_weight"] == 0
    assert not policy.expire_lease()


def test_lease_renewal_extends_deadline():
    clock = FakeClock()
    policy = TrafficPolicy(clock)
    policy.set_weight(10, "set", lease_seconds=2)
    clock.now += 1.5
    policy.set_weight(10, "set", lease_seconds=2)
    clock.now += 1.5
    assert not policy.expire_lease() and policy.weight == 10


def test_no_lease_means_no_expiry():
    clock = FakeClock()
    policy = TrafficPolicy(clock)
    policy.set_weight(10, "set")
    clock.now += 10_000
    assert not policy.expire_lease() and policy.weight == 10
    assert [h["reason"] for h in policy.history] == ["set"]


def test_renewal_keeps_split_sequence():
    policy = TrafficPolicy(FakeClock())
    policy.set_weight(50, "set", lease_seconds=10)
    first = policy.pick()
    policy.set_weight(50, "set", lease_seconds=10)
    assert policy.pick() != first
