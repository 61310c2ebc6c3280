"""Operating releases through the Prefect API: find a service's last release, schedule a retry
by hand, answer an approval gate. Used by the CLI; every call goes to the server that
``PREFECT_API_URL`` names.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from canaryflow.errors import CanaryflowError
from canaryflow.retries import RETRY_TAG, retry_tags
from canaryflow.spec import duration_seconds

_RELATIVE = re.compile(r"^\+?(\d+(?:\.\d+)?)(ms|s|m|h|d)$")


def parse_when(value: str, *, now: datetime | None = None) -> datetime:
    """``now``, a relative ``+10m`` / ``90s``, or an ISO 8601 time (naive = UTC). Always aware."""
    now = now or datetime.now(UTC)
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
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def release_runs(service: str | None = None, *, limit: int = 50, by_start_time: bool = False) -> list[Any]:
    """Release flow runs (named ``release/<service>/...``; of every service without ``service``),
    newest first: by expected start (set even before a run starts), or by start time."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    prefix = f"release/{service}/" if service else "release/"
    sort = FlowRunSort.START_TIME_DESC if by_start_time else FlowRunSort.EXPECTED_START_TIME_DESC
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=prefix)),
                                     sort=sort, limit=limit)
    return [r for r in runs if r.name.startswith(prefix)]  # ``like_`` matches anywhere in the name


def latest_release(service: str) -> Any:
    """The most recent ``release/<service>/...`` flow run, or None."""
    runs = release_runs(service, limit=20, by_start_time=True)
    return runs[0] if runs else None


def service_of(run: Any) -> str:
    """The service a release run is for, from its name ``release/<service>/<version>/<environment>``."""
    return run.name.split("/")[1]


def in_progress(run: Any, *, now: datetime | None = None) -> bool:
    """The run has not ended and is under way or due: Running, Paused (an approval gate),
    Pending, Cancelling, or Scheduled for a time already past (a worker is about to pick it up).
    A retry scheduled for later is not the release in progress yet."""
    state = run.state
    if state is None or state.is_final():
        return False
    if state.is_scheduled():
        due = state.state_details.scheduled_time or run.expected_start_time
        return due is None or due <= (now or datetime.now(UTC))
    return True


def current_release(service: str, *, now: datetime | None = None) -> Any:
    """What a person means by "the release of ``service``": its newest run in progress, else its
    newest run; None when it has none on record."""
    runs = release_runs(service)
    return next((r for r in runs if in_progress(r, now=now)), runs[0] if runs else None)


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
