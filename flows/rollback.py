"""Roll a service back to its stable version, by hand (``canaryflow rollback``) or on an alert.

Users first: the moment a running release of the service has been asked to abort
(``canaryflow.control``), the canary's weight goes to 0, before anything waits on that release,
which may be dead (a killed orchestrator whose run still shows Running) and would otherwise keep
traffic split for the whole grace period. A live release then rolls back itself, through its own
exit, with reason ``manual`` and who asked, at its next analysis round (the abort is read before
the weight it finds changed, so the reason stays ``manual``). Cancelling it instead would leave a
CLI run Cancelling for minutes and make it report its vanished canary as ``rollout_stuck``. A
release that does not end in time, or is not running yet (scheduled, pending, paused), is
cancelled. Then the canary is removed: the same idempotent ``Platform.rollback`` the release flow
uses. With nothing to roll back (no release stopped, no canary, no weight) it says so and counts
nothing.
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


#: How long a running release gets to act on the abort (it reads commands every analysis round).
ABORT_GRACE_SECONDS = 60


@task(name="ask-releases-to-abort")
def ask_releases_to_abort(service: str, *, except_run: str | None = None, reason: str = "manual",
                          detail: str = "") -> list[dict[str, str]]:
    """Every active run named ``release/<service>/...`` (they would renew the canary's traffic); the
    running ones are sent an abort. Returned as plain data: id, name, state type."""
    from canaryflow import control

    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(like_=f"release/{service}/"),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=ACTIVE))))
            if r.name.startswith(f"release/{service}/") and str(r.id) != except_run]
    command = control.OperatorCommand(control.Verb.ABORT, f"canary-rollback ({reason})", detail)
    for found in runs:
        if found.state_type is StateType.RUNNING:
            control.send(str(found.id), command)
    listed = []
    for r in runs:
        assert r.state_type is not None, "the runs were read filtered on their state type"
        listed.append({"id": str(r.id), "name": r.name, "state": r.state_type.value})
    return listed


@task(name="move-traffic-to-stable", **WAITING_PLATFORM_TASK)
def move_traffic_to_stable(spec: ReleaseSpec) -> int:
    """Weight 0 at once (the canary stays for the release's own rollback); the weight it had."""
    platform = create_platform(spec.platform, settings=get_settings(), service=spec.service, spec=spec)
    try:
        weight = platform.get_weight()
        if weight > 0:
            platform.set_weight(0)
        return weight
    finally:
        platform.close()


@task(name="stop-releases")
def stop_releases(runs: list[dict[str, str]]) -> list[str]:
    """Wait for the running releases to end by their own rollback; cancel the rest."""
    from canaryflow import control

    stopped, left = [], []
    for found in runs:
        ended = None
        if found["state"] == StateType.RUNNING.value:
            ended = control.wait_for_end(found["id"], timeout=ABORT_GRACE_SECONDS)
        if ended is not None:  # it rolled back itself and counted its rollback
            stopped.append(f"{found['name']} ({found['id']}, {ended.state.name})")
        else:
            left.append(found)
    with get_client(sync_client=True) as client:
        for found in left:
            client.set_flow_run_state(found["id"], Cancelling(message="rolled back by canary-rollback"), force=True)
            stopped.append(f"{found['name']} ({found['id']}, cancelled)")
    return stopped


@task(name="canary-present", **WAITING_PLATFORM_TASK)
def canary_present(spec: ReleaseSpec) -> bool:
    """Whether there is anything to roll back: a canary deployed or any traffic on it."""
    platform = create_platform(spec.platform, settings=get_settings(), service=spec.service, spec=spec)
    try:
        problem = platform.canary_problem()  # both platforms say "... is gone" when no canary exists
        return platform.get_weight() > 0 or problem is None or "gone" not in problem
    finally:
        platform.close()


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
def canary_rollback(spec: ReleaseSpec, reason: Literal["manual", "alert"] = "manual", detail: str = ""
                    ) -> dict[str, Any]:
    spec = validate_spec(spec)
    log = get_run_logger()
    releases = ask_releases_to_abort(spec.service, reason=reason, detail=detail)
    move_traffic_to_stable(spec)
    cancelled = stop_releases(releases)
    present = canary_present(spec)
    stable = rollback_service(spec)
    if not present:  # nothing was there, or the release rolled back itself and counted it
        log.info("nothing left to roll back: %s runs %s; releases stopped: %s", spec.service, stable,
                 ", ".join(cancelled) or "none")
        return {"service": spec.service, "reason": reason, "detail": detail, "stable_version": stable,
                "cancelled": [], "rolled_back": False}
    settings = get_settings()
    metrics = metrics_for(service=spec.service, environment=spec.environment.value,
                          pushgateway_url=settings.pushgateway_url, metrics_port=settings.metrics_port)
    metrics.rollback(reason)
    metrics.traffic(0)
    metrics.push()
    log.warning("rolled back %s (%s)%s; stable is %s; cancelled: %s", spec.service, reason,
                f": {detail}" if detail else "", stable, ", ".join(cancelled) or "nothing in progress")
    return {"service": spec.service, "reason": reason, "detail": detail, "stable_version": stable,
            "cancelled": cancelled, "rolled_back": True}
