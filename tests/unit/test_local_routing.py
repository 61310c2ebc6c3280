"""Random weighted split, the misrouting fault and lease expiry of the controller's traffic policy."""

import math
import random

import pytest

from canaryflow.local.routing import CANARY, STABLE, RandomSplit, TrafficPolicy
from tests.unit.local_support import FakeClock, within_binomial_margin

PICKS = 20_000


@pytest.mark.parametrize("weight", [1, 10, 50, 90])
def test_canary_share_is_the_weight_within_a_binomial_margin(weight):
    split = RandomSplit(random.Random(weight))
    canary = [split.pick(weight) for _ in range(PICKS)].count(CANARY)
    assert within_binomial_margin(canary, PICKS, weight / 100), canary


def test_weight_zero_never_and_hundred_always_reach_the_canary():
    split = RandomSplit(random.Random(1))
    assert {split.pick(0) for _ in range(2000)} == {STABLE}
    assert {split.pick(100) for _ in range(2000)} == {CANARY}


def test_picks_are_independent_not_alternating():
    """A round robin at 50 % alternates and never sends two requests in a row to the canary; a
    random split does about a quarter of the time."""
    split = RandomSplit(random.Random(3))
    picks = [split.pick(50) for _ in range(PICKS)]
    pairs = sum(1 for a, b in zip(picks, picks[1:], strict=False) if a == b == CANARY)
    assert within_binomial_margin(pairs, PICKS - 1, 0.25), pairs


def test_same_seed_same_picks_and_another_seed_others():
    def picks(seed: int) -> list[str]:
        split = RandomSplit(random.Random(seed))
        return [split.pick(30) for _ in range(200)]

    assert picks(5) == picks(5)
    assert picks(5) != picks(6)


def test_share_factor_gives_the_canary_a_fraction_of_the_weight_it_is_reported_to_have():
    policy = TrafficPolicy(FakeClock(), random.Random(9))
    policy.set_weight(10, "set")
    policy.split.set_share_factor(0.2)
    canary = [policy.pick() for _ in range(PICKS)].count(CANARY)
    assert within_binomial_margin(canary, PICKS, 0.02), canary
    assert policy.weight == 10  # what the controller reports stays what was asked for
    policy.split.set_share_factor(1.0)
    canary = [policy.pick() for _ in range(PICKS)].count(CANARY)
    assert within_binomial_margin(canary, PICKS, 0.10), canary


def test_share_factor_above_one_is_capped_at_every_request():
    split = RandomSplit(random.Random(2))
    split.set_share_factor(2.0)
    assert split.canary_probability(60) == 1.0
    assert {split.pick(60) for _ in range(500)} == {CANARY}
    assert split.canary_probability(10) == pytest.approx(0.2)


@pytest.mark.parametrize("factor", [-0.1, math.inf, math.nan, True, "0.2", None])
def test_invalid_share_factor_rejected(factor):
    split = RandomSplit()
    with pytest.raises(ValueError, match="canary_share_factor"):
        split.set_share_factor(factor)
    assert split.canary_share_factor == 1.0


def test_invalid_weight_rejected():
    policy = TrafficPolicy(FakeClock())
    with pytest.raises(ValueError, match="within 0..100"):
        policy.set_weight(101, "set")
    assert policy.weight == 0 and list(policy.history) == []


def test_weight_change_applies_from_next_pick():
    policy = TrafficPolicy(FakeClock(), random.Random(4))
    policy.set_weight(100, "set")
    assert policy.pick() == CANARY
    policy.set_weight(0, "set")
    assert all(policy.pick() == STABLE for _ in range(200))


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
