"""Roll a service back to its stable version, by hand (``canaryflow rollback``) or on an alert.

Cancels any release of the service still running first (so it cannot move traffic again), then
puts all traffic on stable and removes the canary: the same idempotent ``Platform.rollback`` the
release flow uses. Safe to run when nothing is in progress.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.states import Cancelling

from canaryflow.pipeline_metrics import metrics_for
from canaryflow.platforms import create as create_platform
from canaryflow.settings import get_settings
from canaryflow.spec import ReleaseSpec, validate_spec
from tasks.common import WAITING_PLATFORM_TASK

ACTIVE = [StateType.RUNNING, StateType.PAUSED, StateType.PENDING, StateType.SCHEDULED]


@task(name="cancel-releases")
def cancel_releases(service: str, *, except_run: str | None = None) -> list[str]:
    """Cancel every active run named ``release/<service>/...``: they would renew the canary's traffic."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(like_=f"release/{service}/"),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=ACTIVE))))
        cancelled = []
        for found in runs:
            if found.name.startswith(f"release/{service}/") and str(found.id) != except_run:
                client.set_flow_run_state(found.id, Cancelling(message="rolled back by canary-rollback"), force=True)
                cancelled.append(f"{found.name} ({found.id})")
    return cancelled


@task(name="rollback-service", **WAITING_PLATFORM_TASK)
def rollback_service(spec: ReleaseSpec) -> str | None:
    platform = create_platform(spec.platform, settings=get_settings(), service=spec.service, spec=spec)
    try:
        platform.rollback()
        return platform.stable_version()
    finally:
        platform.close()


def _run_name() -> str:
    from prefect.runtime import flow_run

    spec = validate_spec(flow_run.parameters["spec"])
    return f"rollback/{spec.service}/{spec.environment.value}"


@flow(name="canary-rollback", flow_run_name=_run_name)
def canary_rollback(spec: ReleaseSpec, reason: Literal["manual", "alert"] = "manual", detail: str = "") -> dict[str, Any]:
    spec = validate_spec(spec)
    log = get_run_logger()
    cancelled = cancel_releases(spec.service)
    stable = rollback_service(spec)
    settings = get_settings()
    metrics = metrics_for(service=spec.service, environment=spec.environment.value,
                          pushgateway_url=settings.pushgateway_url, metrics_port=settings.metrics_port)
    metrics.rollback(reason)
    metrics.traffic(0)
    metrics.push()
    log.warning("rolled back %s (%s)%s; stable is %s; cancelled: %s", spec.service, reason,
                f": {detail}" if detail else "", stable, ", ".join(cancelled) or "nothing in progress")
    return {"service": spec.service, "reason": reason, "detail": detail, "stable_version": stable,
            "cancelled": cancelled}
