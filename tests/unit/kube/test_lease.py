"""Lease annotations: written and read back, refused when unreadable, and the renewal rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from canaryflow.kube.lease import (
    EXPIRES_ANNOTATION,
    LEASE_ANNOTATIONS,
    RELEASE_ANNOTATION,
    RUN_ID_ANNOTATION,
    Holder,
    Lease,
    LeaseHeld,
    LeaseLost,
    MalformedLease,
    check_renewal,
    new_lease,
    parse_rfc3339,
    read_lease,
    rfc3339,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
ME = Holder("11111111-1111-4111-8111-111111111111", "worker-0:41")
OTHER = Holder("22222222-2222-4222-8222-222222222222", "worker-1:7")
FACTS = {"service": "checkout", "version": "v2", "environment": "production", "target": {"router": "istio"}}


def annotations(holder: Holder, seconds: float) -> dict[str, str]:
    return {"team": "shop", **new_lease(holder, seconds, FACTS, now=NOW).annotations()}


def test_a_lease_round_trips_through_its_annotations():
    lease = new_lease(ME, 30, FACTS, now=NOW)
    written = lease.annotations()
    assert set(written) == set(LEASE_ANNOTATIONS)
    assert written[EXPIRES_ANNOTATION] == "2026-01-01T12:00:30.000000Z"
    assert read_lease(written) == lease
    assert read_lease({"team": "shop"}) is None and read_lease(None) is None


def test_rfc3339_accepts_offsets_and_refuses_naive_or_garbage_times():
    assert parse_rfc3339("2026-01-01T13:00:00+01:00") == NOW
    assert rfc3339(parse_rfc3339("2026-01-01T12:00:00Z")) == "2026-01-01T12:00:00.000000Z"
    for bad in ("soon", "2026-01-01T12:00:00", ""):
        with pytest.raises(MalformedLease, match="lease-expires"):
            parse_rfc3339(bad)


@pytest.mark.parametrize("broken", [
    {RUN_ID_ANNOTATION: ME.run_id},  # no expiry
    {EXPIRES_ANNOTATION: "tomorrow"},
    {EXPIRES_ANNOTATION: "2026-01-01T12:00:00Z", RELEASE_ANNOTATION: "{not json"},
    {EXPIRES_ANNOTATION: "2026-01-01T12:00:00Z", RELEASE_ANNOTATION: "[1]"},
])
def test_unreadable_leases_are_refused(broken):
    with pytest.raises(MalformedLease):
        read_lease(broken)


def test_an_empty_run_id_means_no_flow_run():
    lease = read_lease(new_lease(Holder(None, "laptop:9"), 5, FACTS, now=NOW).annotations())
    assert lease.holder == Holder(None, "laptop:9")


def renew(current: dict[str, str], *, held: bool, now: datetime = NOW) -> None:
    check_renewal(current, mine=ME, held=held, now=now, operation="set_weight")


def test_first_write_over_nothing_or_an_expired_foreign_lease_is_allowed():
    renew({}, held=False)
    renew(annotations(OTHER, 5), held=False, now=NOW + timedelta(seconds=6))  # a dead run's leftover
    renew(annotations(ME, 5), held=False)  # our own write that landed before a 409 re-read


def test_first_write_over_a_fresh_foreign_lease_is_refused():
    with pytest.raises(LeaseHeld, match="flow run 22222222.*holds the traffic lease until 2026-01-01T12:00:05"):
        renew(annotations(OTHER, 5), held=False)


def test_renewal_of_our_lease_is_allowed_even_after_it_expired():
    renew(annotations(ME, 5), held=True, now=NOW + timedelta(seconds=60))


@pytest.mark.parametrize("current", [{}, {"team": "shop"}, None, "other", {EXPIRES_ANNOTATION: "garbage"}])
def test_a_renewal_that_finds_its_lease_gone_or_taken_is_lost(current):
    if current == "other":
        current = annotations(OTHER, 120)  # the reconciler's claim
    with pytest.raises(LeaseLost) as lost:
        renew(current, held=True)
    assert lost.value.transient is False  # never retried into re-splitting traffic


def test_expiry_is_inclusive():
    lease = Lease(ME, NOW, FACTS)
    assert lease.expired(NOW) and not lease.expired(NOW - timedelta(microseconds=1))
