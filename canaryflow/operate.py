"""Operating releases through the Prefect API: find a service's last release, schedule a retry
by hand, answer an approval gate. Used by the CLI; every call goes to the server that
``PREFECT_API_URL`` names.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from canaryflow.errors import CanaryflowError
from canaryflow.retries import RETRY_TAG, retry_tags
from canaryflow.spec import duration_seconds

_RELATIVE = re.compile(r"^\+?(\d+(?:\.\d+)?)(ms|s|m|h|d)$")


def parse_when(value: str, *, now: datetime | None = None) -> datetime:
    """``now``, a relative ``+10m`` / ``90s``, or an ISO 8601 time (naive = UTC). Always aware."""
    now = now or datetime.now(timezone.utc)
    text = value.strip()
    if text == "now":
        return now
    match = _RELATIVE.match(text)
    if match:
        return now + timedelta(seconds=duration_seconds(match.group(1) + match.group(2)))
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise CanaryflowError(f"cannot read time {value!r}: use now, +10m, 90s or 2026-11-27T09:30:00+00:00") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def latest_release(service: str) -> Any:
    """The most recent ``release/<service>/...`` flow run, or None."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=f"release/{service}/")),
                                     sort=FlowRunSort.START_TIME_DESC, limit=20)
    runs = [r for r in runs if r.name.startswith(f"release/{service}/")]
    return runs[0] if runs else None


def schedule_retry_at(flow_run_id: str, when: datetime) -> Any:
    """A new Scheduled run of ``flow_run_id``'s deployment at ``when``, same spec, next attempt."""
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    with get_client(sync_client=True) as client:
        original = client.read_flow_run(UUID(flow_run_id))
        if original.deployment_id is None:
            raise CanaryflowError(f"flow run {flow_run_id} was not started from a deployment; "
                                  "only deployment runs can be scheduled again")
        parameters = dict(original.parameters)
        attempt = int(parameters.get("attempt") or 1) + 1
        parameters.update(attempt=attempt, retry_of=parameters.get("retry_of") or str(original.id))
        tags = retry_tags(original.tags, attempt, "manual-retry")
        return client.create_flow_run_from_deployment(
            original.deployment_id, parameters=parameters, state=Scheduled(scheduled_time=when), tags=tags,
            idempotency_key=f"{RETRY_TAG}/{parameters['retry_of']}/manual/{when.isoformat()}")


def answer_approval(flow_run_id: str, *, approved: bool, reason: str, by: str) -> None:
    """Resume a run paused at the approval gate with the answer (what the UI's form sends)."""
    from prefect.exceptions import FlowPauseTimeout, NotPausedError, ObjectNotFound
    from prefect.flow_runs import resume_flow_run

    try:
        resume_flow_run(UUID(flow_run_id), run_input={"approved": approved, "reason": reason, "by": by})
    except (ValueError, ObjectNotFound):
        raise CanaryflowError(f"no flow run {flow_run_id}") from None
    except (NotPausedError, FlowPauseTimeout, RuntimeError) as exc:
        raise CanaryflowError(f"flow run {flow_run_id} is not waiting for approval: {exc}") from None
