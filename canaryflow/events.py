"""Prefect events for every release decision, so a platform can react to releases with automations.

A run's state says only Completed or Failed; an automation that pages a channel on a rollback, or
holds the next service of a fleet, needs the decision itself: which service, version and
environment, why, and the numbers. Each decision is one event on the resource
``canaryflow.release.<service>``, whose labels name the version and environment (so a trigger can
match ``canaryflow.environment: production``), with the service, version and environment also as
related resources (roles ``service``, ``version``, ``environment``), as Prefect's own events relate
a flow run to its flow and deployment. Prefect adds the flow run and its deployment when the event
is emitted inside a run.

Emitting never blocks or fails a release: like the dashboard, events are monitoring.
"""

from __future__ import annotations

import logging
from typing import Any

from canaryflow.spec import ReleaseSpec

STARTED = "canaryflow.release.started"
STEP_ADVANCED = "canaryflow.release.step-advanced"
STEPPED_BACK = "canaryflow.release.stepped-back"  # to the previous weight, to compare with a baseline
PROMOTED = "canaryflow.release.promoted"
ROLLED_BACK = "canaryflow.release.rolled-back"
RETRY_SCHEDULED = "canaryflow.release.retry-scheduled"
REFUSED = "canaryflow.release.refused"
#: Every event canaryflow emits, in the order a release can go through them.
RELEASE_EVENTS = (STARTED, STEP_ADVANCED, STEPPED_BACK, PROMOTED, ROLLED_BACK, RETRY_SCHEDULED, REFUSED)

#: The measurement fields a rolled-back event carries as its evidence (the numbers of the deciding round).
EVIDENCE_FIELDS = ("metric", "value", "threshold", "unit", "verdict", "requests", "baseline",
                   "baseline_requests", "evidence", "evidence_threshold", "weight", "elapsed_s")

log = logging.getLogger(__name__)


def release_resource_id(service: str) -> str:
    return f"canaryflow.release.{service}"


def release_event(event: str, spec: ReleaseSpec, **payload: Any) -> dict[str, Any]:
    """The keyword arguments of ``prefect.events.emit_event`` for one decision about ``spec``.

    Pure, so the shape of every event is tested without a server. Label values are strings, as
    Prefect's resource schema requires; ``payload`` is the decision's detail, JSON as given."""
    if event not in RELEASE_EVENTS:
        raise ValueError(f"event {event!r} is not a canaryflow release event ({', '.join(RELEASE_EVENTS)})")
    service, version, environment = spec.service, spec.version, spec.environment.value
    return {
        "event": event,
        "resource": {
            "prefect.resource.id": release_resource_id(service),
            "prefect.resource.name": f"{service} {version} ({environment})",
            "canaryflow.service": service,
            "canaryflow.version": version,
            "canaryflow.environment": environment,
        },
        "related": [
            {"prefect.resource.id": f"canaryflow.service.{service}", "prefect.resource.role": "service",
             "prefect.resource.name": service},
            {"prefect.resource.id": f"canaryflow.version.{service}.{version}", "prefect.resource.role": "version",
             "prefect.resource.name": version},
            {"prefect.resource.id": f"canaryflow.environment.{environment}", "prefect.resource.role": "environment",
             "prefect.resource.name": environment},
        ],
        "payload": {"service": service, "version": version, "environment": environment, **payload},
    }


def latest_evidence(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The measurements of the release's last analysis round: the numbers the decision rests on.

    Empty when the release stopped before any analysis (a failed smoke test, a canary never ready)."""
    measurements = summary.get("measurements") or []
    if not measurements:
        return []
    last = measurements[-1]
    deciding = [m for m in measurements if (m["step"], m["elapsed_s"]) == (last["step"], last["elapsed_s"])]
    return [{name: m.get(name) for name in EVIDENCE_FIELDS} for m in deciding]


def emit_release_event(event: str, spec: ReleaseSpec, **payload: Any) -> None:
    """Emit one release event to the Prefect server of ``PREFECT_API_URL``.

    Without one, nothing: Prefect would start a throwaway server in this process just to receive
    it, and no automation could ever see it there."""
    from prefect.events import emit_event
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return
    try:
        emit_event(**release_event(event, spec, **payload))
    except Exception as exc:  # noqa: BLE001 - monitoring never fails a release
        log.warning("could not emit %s for %s: %s", event, spec.service, exc)
