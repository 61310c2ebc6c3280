"""The traffic lease of a release, kept on the cluster as annotations of the objects it changes.

Kubernetes has no object that reverts a weight by itself, and a SIGKILLed worker runs no crash
hook. So the release writes who holds the split and until when onto the routing object (or, for
the replicas router, the canary Deployment), in the same resourceVersion-guarded write as the
weight, and renews it every round. ``canaryflow reconcile`` restores stable wherever a lease ran
out and no live run holds it (``canaryflow.reconcile``).

A lease is three annotations a person can read with ``kubectl get -o yaml``, plus the facts the
reconciler needs to roll back the way the release would (service, version, environment, target):

    canaryflow.dev/lease-run-id:   Prefect flow run id of the holder ("" outside a flow run)
    canaryflow.dev/lease-holder:   host and process id of the holder
    canaryflow.dev/lease-expires:  RFC 3339 time (UTC) after which the lease is expired
    canaryflow.dev/lease-release:  JSON {"service", "version", "environment", "target"}

Everything here is pure except ``current_holder`` (which asks ``prefect.runtime``).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from canaryflow.errors import PlatformError
from canaryflow.kube.workloads import ANNOTATION_PREFIX

RUN_ID_ANNOTATION = ANNOTATION_PREFIX + "lease-run-id"
HOLDER_ANNOTATION = ANNOTATION_PREFIX + "lease-holder"
EXPIRES_ANNOTATION = ANNOTATION_PREFIX + "lease-expires"
RELEASE_ANNOTATION = ANNOTATION_PREFIX + "lease-release"
LEASE_ANNOTATIONS = (RUN_ID_ANNOTATION, HOLDER_ANNOTATION, EXPIRES_ANNOTATION, RELEASE_ANNOTATION)

#: A merge patch removing every lease annotation.
REMOVE_LEASE: dict[str, None] = {key: None for key in LEASE_ANNOTATIONS}


class LeaseLost(PlatformError):
    """The release held the lease, and now the object carries none or another holder's: the
    reconciler restored stable. Not transient: the release must abort, never split traffic again."""

    lease_lost = True  # read by the flow, which knows no platform's exceptions

    def __init__(self, message: str, *, operation: str) -> None:
        super().__init__(message, operation=operation, transient=False)


class LeaseHeld(PlatformError):
    """Another holder's lease is still fresh on the object: two releases would fight over it."""

    def __init__(self, message: str, *, operation: str) -> None:
        super().__init__(message, operation=operation, transient=False)


class MalformedLease(ValueError):
    """Lease annotations that cannot be read (an expiry that is not an RFC 3339 time, bad JSON)."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: the Prefect flow run (when there is one) and the process."""

    run_id: str | None
    identity: str


@dataclass(frozen=True)
class Lease:
    holder: Holder
    expires: datetime
    release: dict[str, Any]

    def expired(self, now: datetime) -> bool:
        return now >= self.expires

    def annotations(self) -> dict[str, str]:
        return {RUN_ID_ANNOTATION: self.holder.run_id or "", HOLDER_ANNOTATION: self.holder.identity,
                EXPIRES_ANNOTATION: rfc3339(self.expires),
                RELEASE_ANNOTATION: json.dumps(self.release, sort_keys=True, separators=(",", ":"))}


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        raise MalformedLease(f"{EXPIRES_ANNOTATION} {text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise MalformedLease(f"{EXPIRES_ANNOTATION} {text!r} has no time zone")
    return moment


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_lease(holder: Holder, seconds: float, release: dict[str, Any], *, now: datetime) -> Lease:
    return Lease(holder=holder, expires=now + timedelta(seconds=seconds), release=release)


def has_lease(annotations: dict[str, Any] | None) -> bool:
    return any(key in (annotations or {}) for key in LEASE_ANNOTATIONS)


def read_lease(annotations: dict[str, Any] | None) -> Lease | None:
    """The lease an object carries; None when it carries none. Raises ``MalformedLease``."""
    annotations = annotations or {}
    if not has_lease(annotations):
        return None
    if EXPIRES_ANNOTATION not in annotations:
        raise MalformedLease(f"lease without {EXPIRES_ANNOTATION}")
    expires = parse_rfc3339(str(annotations[EXPIRES_ANNOTATION]))
    try:
        release = json.loads(annotations.get(RELEASE_ANNOTATION) or "{}")
    except ValueError:
        raise MalformedLease(f"{RELEASE_ANNOTATION} is not JSON") from None
    if not isinstance(release, dict):
        raise MalformedLease(f"{RELEASE_ANNOTATION} is not a JSON object")
    run_id = str(annotations.get(RUN_ID_ANNOTATION) or "") or None
    return Lease(Holder(run_id, str(annotations.get(HOLDER_ANNOTATION) or "")), expires, release)


def check_renewal(annotations: dict[str, Any] | None, *, mine: Holder, held: bool, now: datetime,
                  operation: str) -> None:
    """Raise unless ``mine`` may write its lease over what the object carries now.

    Shaped for the re-read of a guarded write: after a 409 the release looks again, and a lease
    that vanished (or changed hands) since it last wrote means the reconciler took over, so the
    release stops (``LeaseLost``) instead of splitting traffic again. Before the release ever held
    it, an expired lease left by a dead run may be taken over; a fresh one of another run may not.
    """
    try:
        current = read_lease(annotations)
    except MalformedLease:
        current = None
        if held:
            raise LeaseLost("the lease annotations changed into something unreadable", operation=operation) from None
    ours = current is not None and current.holder == mine
    if held and not ours:
        who = "no lease" if current is None else f"a lease of {describe(current.holder)}"
        raise LeaseLost(f"the traffic lease was taken back (the object now carries {who}); "
                        "canary-reconcile restored stable", operation=operation)
    if not held and current is not None and not ours and not current.expired(now):
        raise LeaseHeld(f"{describe(current.holder)} holds the traffic lease until {rfc3339(current.expires)}",
                        operation=operation)


def describe(holder: Holder) -> str:
    run = f"flow run {holder.run_id}" if holder.run_id else "a process outside any flow run"
    return f"{run} ({holder.identity})" if holder.identity else run


def current_holder() -> Holder:
    """This process as a lease holder: the Prefect flow run it executes, if any, and host:pid."""
    run_id: str | None = None
    try:
        from prefect.runtime import flow_run

        run_id = str(flow_run.id) if flow_run.id else None
    except Exception:  # no Prefect context: the lease still names the process
        run_id = None
    return Holder(run_id, f"{socket.gethostname()}:{os.getpid()}")
