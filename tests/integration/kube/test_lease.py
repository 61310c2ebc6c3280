"""The traffic lease on the cluster and the reconciler, on the emulator through the official client.

Lease expiry is judged by canaryflow's own clock (the cluster only stores an RFC 3339 time), so the
tests move a shared clock instead of sleeping. Which flow runs are alive is a ``RunStates`` answer
given by the test (``test_reconcile_prefect.py`` asks the real Prefect server).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from canaryflow.kube.client import KubeApi
from canaryflow.kube.lease import (
    EXPIRES_ANNOTATION,
    HOLDER_ANNOTATION,
    LEASE_ANNOTATIONS,
    RUN_ID_ANNOTATION,
    Holder,
    LeaseHeld,
    LeaseLost,
    read_lease,
)
from canaryflow.kube.routers import ORIGINAL_SPEC_ANNOTATION
from canaryflow.reconcile import Action, Liveness, Reconciler, platform_rollback
from tests.emulators.kube import KubeEmulator

from .conftest import NS, deployment, leased_object, make_platform, original_routing, routing_spec, user_weight

RUN = "7b1c7a52-8a0c-4a63-9a7e-3d1f7b6f0a11"
ME = Holder(RUN, "worker-0:41")
RECONCILER = Holder("99999999-9999-4999-8999-999999999999", "reconciler:1")
PLURAL = {"replicas": "deployments", "istio": "virtualservices", "gateway-api": "httproutes"}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Runs:
    """What Prefect would say about each run; ``on_ask`` runs while the reconciler waits for the answer."""

    def __init__(self, answers: dict[str, Liveness], on_ask: Any = None) -> None:
        self.answers = answers
        self.asked: list[str] = []
        self.on_ask = on_ask

    def liveness(self, run_id: str) -> tuple[Liveness, str]:
        self.asked.append(run_id)
        if self.on_ask is not None:
            self.on_ask(len(self.asked))
        answer = self.answers.get(run_id, Liveness.DEAD)
        return answer, {Liveness.LIVE: "Running", Liveness.DEAD: "Crashed"}.get(answer, "unknown")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def api(kube: KubeEmulator):
    client = kube.api_client()
    yield KubeApi(client, namespace=NS, backoff_base=0.01, backoff_max=0.05)
    client.close()


def released(kube, router, clock, *, weight=50, lease=5.0):
    platform = make_platform(kube, router, platform_options={"holder": ME, "now": clock})
    platform.deploy("v2")
    platform.wait_ready(timeout=10)
    platform.set_weight(10, lease_seconds=lease)
    if weight != 10:
        platform.set_weight(weight, lease_seconds=lease)
    return platform


def reconciler(runs, clock, **options) -> Reconciler:
    counted: list[tuple[str, str]] = []
    r = Reconciler(runs, holder=RECONCILER, now=clock, record_rollback=lambda s, e: counted.append((s, e)),
                   rollback=functools.partial(platform_rollback, poll_interval=0.05, scale_timeout=10.0), **options)
    r.counted = counted  # type: ignore[attr-defined]
    return r


def writes(kube, router):
    return [e for e in kube.audit if e.verb in ("patch", "delete") and e.resource == PLURAL[router]]


def assert_stable(kube, router):
    assert user_weight(kube, router) == 0
    assert deployment(kube, "checkout-canary") is None
    obj = routing_spec(kube, router)
    if obj is not None:
        assert obj["spec"] == original_routing(router)["spec"]
        annotations = obj["metadata"].get("annotations") or {}
        assert not set(annotations) & {ORIGINAL_SPEC_ANNOTATION, *LEASE_ANNOTATIONS}, annotations
    else:
        assert deployment(kube, "checkout")["spec"]["replicas"] == 4


# -- the release side -------------------------------------------------------------------------------

def test_the_weight_carries_the_lease_and_each_round_renews_it(kube, router, clock):
    platform = released(kube, router, clock, weight=10)
    try:
        split = user_weight(kube, router)  # replicas: one of four replicas, 25 %
        assert split > 0
        lease = read_lease(leased_object(kube, router)["metadata"]["annotations"])
        assert lease.holder == ME and lease.expires == clock.now + timedelta(seconds=5)
        assert lease.release["service"] == "checkout" and lease.release["version"] == "v2"
        assert lease.release["environment"] == "production" and lease.release["target"]["router"] == router
        assert platform.lease_expires == lease.expires
        assert "expires at 2026-01-01T12:00:05" in platform.lease_note()

        clock.advance(3)
        platform.set_weight(10, lease_seconds=5)  # a round at the same weight renews only the lease
        renewed = read_lease(leased_object(kube, router)["metadata"]["annotations"])
        assert renewed.expires == clock.now + timedelta(seconds=5)
        assert user_weight(kube, router) == split
    finally:
        platform.close()


def test_a_renewal_that_meets_a_conflict_retries_and_lands(kube, router, clock):
    platform = released(kube, router, clock, weight=10)
    try:
        kube.faults.add(verb="patch", resource=PLURAL[router], status=409, times=2)
        clock.advance(2)
        platform.set_weight(10, lease_seconds=5)
        assert [e.status for e in writes(kube, router)][-3:] == [409, 409, 200]
        lease = read_lease(leased_object(kube, router)["metadata"]["annotations"])
        assert lease.expires == clock.now + timedelta(seconds=5)
    finally:
        platform.close()


def test_promotion_and_rollback_leave_no_lease_behind(kube, router, clock):
    for finish in ("promote", "rollback"):
        platform = released(kube, router, clock, weight=50)
        try:
            getattr(platform, finish)()
            assert platform.lease_expires is None
            obj = leased_object(kube, router)
            assert obj is None or not set(obj["metadata"].get("annotations") or {}) & set(LEASE_ANNOTATIONS)
        finally:
            platform.close()


def test_a_fresh_lease_of_another_run_is_not_overwritten(kube, router, clock):
    first = released(kube, router, clock, weight=10, lease=30)
    second = make_platform(kube, router, platform_options={
        "holder": Holder("22222222-2222-4222-8222-222222222222", "w:2"), "now": clock})
    try:
        split = user_weight(kube, router)
        with pytest.raises(LeaseHeld, match=f"flow run {RUN}"):
            second.set_weight(50, lease_seconds=30)
        assert user_weight(kube, router) == split
    finally:
        first.close()
        second.close()


# -- the reconciler ---------------------------------------------------------------------------------

def test_an_expired_lease_of_a_dead_run_is_restored_and_counted(kube, router, clock, api):
    platform = released(kube, router, clock, weight=50)
    platform.close()  # the worker is gone (SIGKILL): nothing renews
    clock.advance(6)
    r = reconciler(Runs({RUN: Liveness.DEAD}), clock)
    report = r.run([api])
    (outcome,) = report.outcomes
    assert outcome.restored and outcome.action is Action.RESTORE and not outcome.error, outcome.line()
    assert "Crashed" in outcome.why and RUN in outcome.why
    assert r.counted == [("checkout", "production")]
    assert_stable(kube, router)
    assert reconciler(Runs({}), clock).run([api]).outcomes == []  # nothing leased any more


def test_a_fresh_lease_is_never_touched_and_prefect_is_not_asked(kube, router, clock, api):
    platform = released(kube, router, clock, weight=50)
    try:
        clock.advance(4)
        before = len(writes(kube, router))
        runs = Runs({RUN: Liveness.DEAD})
        (outcome,) = reconciler(runs, clock).run([api]).outcomes
        assert outcome.action is Action.LEAVE and "fresh" in outcome.why
        assert runs.asked == [] and len(writes(kube, router)) == before
        assert user_weight(kube, router) == 50
    finally:
        platform.close()


@pytest.mark.parametrize(("liveness", "action"),
                         [(Liveness.LIVE, Action.LEAVE), (Liveness.UNKNOWN, Action.CANNOT_TELL)])
def test_an_expired_lease_of_a_live_or_unknown_run_is_left(kube, clock, api, liveness, action):
    platform = released(kube, "istio", clock, weight=50)
    try:
        clock.advance(60)
        before = len(writes(kube, "istio"))
        (outcome,) = reconciler(Runs({RUN: liveness}), clock).run([api]).outcomes
        assert outcome.action is action and not outcome.restored
        assert len(writes(kube, "istio")) == before and user_weight(kube, "istio") == 50
    finally:
        platform.close()


def test_a_live_run_that_stopped_renewing_long_ago_is_a_zombie(kube, clock, api):
    platform = released(kube, "gateway-api", clock, weight=50)
    platform.close()
    clock.advance(5 + 61)
    (outcome,) = reconciler(Runs({RUN: Liveness.LIVE}), clock, stale_after=60).run([api]).outcomes
    assert outcome.restored and "zombie" in outcome.why
    assert_stable(kube, "gateway-api")


def test_the_renewal_after_a_reconcile_aborts_instead_of_splitting_again(kube, router, clock, api):
    platform = released(kube, router, clock, weight=50)
    try:
        clock.advance(6)  # the run stalled past its lease; Prefect already calls it Crashed
        (outcome,) = reconciler(Runs({RUN: Liveness.DEAD}), clock).run([api]).outcomes
        assert outcome.restored
        with pytest.raises(LeaseLost, match="canary-reconcile restored stable"):
            platform.set_weight(50, lease_seconds=5)
        with pytest.raises(LeaseLost):  # and again: a retried task cannot re-split either
            platform.set_weight(100, lease_seconds=5)
        assert_stable(kube, router)
    finally:
        platform.close()


def test_a_renewal_landing_while_the_reconciler_decides_wins(kube, router, clock, api):
    """The renewal lands between the reconciler's read and its claim: the claim's write is refused
    (409), the re-read finds a fresh lease, and the release goes on untouched."""
    platform = released(kube, router, clock, weight=50)
    try:
        clock.advance(6)

        def renew_meanwhile(asked: int) -> None:
            if asked == 2:  # inside the claim's read-modify-write, after its read
                clock.advance(0.5)
                platform.set_weight(50, lease_seconds=5)

        runs = Runs({RUN: Liveness.DEAD}, on_ask=renew_meanwhile)
        (outcome,) = reconciler(runs, clock).run([api]).outcomes
        assert outcome.action is Action.LEAVE and "fresh" in outcome.why and not outcome.restored, outcome.line()
        assert 409 in [e.status for e in writes(kube, router)]
        lease = read_lease(leased_object(kube, router)["metadata"]["annotations"])
        assert lease.holder == ME
        assert user_weight(kube, router) == 50
        platform.set_weight(100, lease_seconds=5)  # the release carries on
        assert user_weight(kube, router) == 100
    finally:
        platform.close()


def test_a_claimed_lease_whose_reconciler_died_is_restored_by_the_next_pass(kube, clock, api):
    platform = released(kube, "istio", clock, weight=50)
    platform.close()
    clock.advance(6)
    failing = reconciler(Runs({RUN: Liveness.DEAD}), clock)
    kube.faults.add(verb="patch", resource="virtualservices", status=403, times=None)  # claim lands? no: refused
    (outcome,) = failing.run([api]).outcomes
    assert outcome.error and not outcome.restored and "RBAC refused" in outcome.error
    kube.faults.clear()
    # The claim of a reconciler that died after claiming: an expired lease of a dead run like any other.
    obj = routing_spec(kube, "istio")
    assert obj["metadata"]["annotations"][RUN_ID_ANNOTATION] == RUN  # nothing was claimed under the fault
    (outcome,) = reconciler(Runs({RUN: Liveness.DEAD}), clock).run([api]).outcomes
    assert outcome.restored
    assert_stable(kube, "istio")


def test_unreadable_lease_is_reported_and_left(kube, clock, api):
    platform = released(kube, "istio", clock, weight=50)
    platform.close()
    obj = routing_spec(kube, "istio")
    api.patch_custom("networking.istio.io", "v1beta1", "virtualservices", "virtualservice", "checkout",
                     {"metadata": {"annotations": {EXPIRES_ANNOTATION: "whenever", HOLDER_ANNOTATION: "x"}}})
    clock.advance(3600)
    (outcome,) = reconciler(Runs({RUN: Liveness.DEAD}), clock).run([api]).outcomes
    assert outcome.action is Action.CANNOT_TELL and "RFC 3339" in outcome.why
    assert user_weight(kube, "istio") == 50 and obj["spec"] != original_routing("istio")["spec"]
