"""The reconciler's one decision, over every combination of lease, run liveness and staleness limit,
plus the mapping from Prefect state types to liveness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from canaryflow.kube.lease import Holder, Lease, MalformedLease
from canaryflow.reconcile import Action, Liveness, decide, liveness_of

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
HOLDER = Holder("7b1c7a52-8a0c-4a63-9a7e-3d1f7b6f0a11", "worker-0:41")

LEASES = {
    "malformed": MalformedLease("lease-expires 'soon' is not an RFC 3339 time"),
    "fresh": Lease(HOLDER, NOW + timedelta(seconds=5), {}),
    "just_expired": Lease(HOLDER, NOW, {}),  # the expiry instant itself is expired
    "expired": Lease(HOLDER, NOW - timedelta(seconds=30), {}),
    "stale": Lease(HOLDER, NOW - timedelta(seconds=3600), {}),
}
L, R, C = Action.LEAVE, Action.RESTORE, Action.CANNOT_TELL
# lease -> liveness -> (action with stale_after=600, action with stale_after=None)
TABLE = {
    "malformed": {Liveness.LIVE: (C, C), Liveness.DEAD: (C, C), Liveness.UNKNOWN: (C, C), Liveness.NO_RUN: (C, C)},
    "fresh": {Liveness.LIVE: (L, L), Liveness.DEAD: (L, L), Liveness.UNKNOWN: (L, L), Liveness.NO_RUN: (L, L)},
    "just_expired": {Liveness.LIVE: (L, L), Liveness.DEAD: (R, R), Liveness.UNKNOWN: (C, C), Liveness.NO_RUN: (R, R)},
    "expired": {Liveness.LIVE: (L, L), Liveness.DEAD: (R, R), Liveness.UNKNOWN: (C, C), Liveness.NO_RUN: (R, R)},
    "stale": {Liveness.LIVE: (R, L), Liveness.DEAD: (R, R), Liveness.UNKNOWN: (C, C), Liveness.NO_RUN: (R, R)},
}
CASES = [(lease, liveness, stale_after, TABLE[lease][liveness][i])
         for lease in LEASES for liveness in Liveness for i, stale_after in enumerate((600.0, None))]


def test_the_table_covers_every_combination():
    assert len(CASES) == len(LEASES) * len(Liveness) * 2 == 40


@pytest.mark.parametrize(("lease", "liveness", "stale_after", "expected"), CASES,
                         ids=[f"{c[0]}-{c[1]}-stale{c[2]}" for c in CASES])
def test_decide(lease, liveness, stale_after, expected):
    verdict = decide(LEASES[lease], now=NOW, liveness=liveness, state="Running", stale_after=stale_after)
    assert verdict.action is expected, verdict.why
    assert verdict.why


def test_the_reasons_name_what_was_seen():
    assert "fresh until 2026-01-01T12:00:05" in decide(LEASES["fresh"], now=NOW, liveness=Liveness.DEAD).why
    dead = decide(LEASES["expired"], now=NOW, liveness=Liveness.DEAD, state="Crashed").why
    assert "expired 30s ago" in dead and HOLDER.run_id in dead and "Crashed" in dead
    unknown = decide(LEASES["expired"], now=NOW, liveness=Liveness.UNKNOWN).why
    assert "Prefect API" in unknown and "nothing done" in unknown
    zombie = decide(LEASES["stale"], now=NOW, liveness=Liveness.LIVE, state="Running", stale_after=600).why
    assert "zombie" in zombie and "600s" in zombie
    assert "RFC 3339" in decide(LEASES["malformed"], now=NOW, liveness=Liveness.LIVE).why


@pytest.mark.parametrize(("state_type", "expected"), [
    ("RUNNING", Liveness.LIVE), ("PENDING", Liveness.LIVE), ("PAUSED", Liveness.LIVE),
    ("SCHEDULED", Liveness.LIVE), ("CANCELLING", Liveness.LIVE), (None, Liveness.LIVE),
    ("COMPLETED", Liveness.DEAD), ("FAILED", Liveness.DEAD), ("CANCELLED", Liveness.DEAD), ("CRASHED", Liveness.DEAD),
    ("SOMETHING_NEW", Liveness.UNKNOWN),
])
def test_liveness_of_prefect_state_types(state_type, expected):
    assert liveness_of(state_type) is expected


def test_every_prefect_state_type_is_classified():
    from prefect.client.schemas.objects import StateType

    assert all(liveness_of(t.value) is not Liveness.UNKNOWN for t in StateType)
