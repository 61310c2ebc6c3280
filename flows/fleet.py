"""The fleet release: one version change across many services, wave by wave.

Each service's release is a run of the ``canary-release/<environment>`` deployment started with
``run_deployment`` from inside this flow, so Prefect links it as a child run (the UI shows it under
this run) and a worker runs it with the deployment's own infrastructure and credentials. At most
``max_concurrency`` children run at once; a wave starts when the one before it has finished; a
rolled-back service, with ``stop_on_rollback``, stops everything not yet started. The decisions
are in :mod:`canaryflow.fleet`; this flow only starts children and waits for them.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.runtime import flow_run as current_run
from prefect.states import Failed, State

from canaryflow.deliberate_endings import deliberate
from canaryflow.fleet import (
    FleetNotPromoted,
    FleetSpec,
    Outcome,
    fleet_summary,
    plan_waves,
    should_stop,
    summary_markdown,
)
from canaryflow.prefect_sync import sync_result
from canaryflow.waiting import INCOMPLETE_STATE, ROLLED_BACK_STATE

POLL_SECONDS = 2.0


def _run_name() -> str:
    spec = FleetSpec.model_validate(current_run.parameters["spec"])
    return f"fleet/{spec.version}/{spec.environment}/{len(spec.services)}-services"


def outcome_of(state: Any) -> Outcome | None:
    """None while the child runs; a rolled-back release ends Failed with the reason in its message."""
    if state is None or not state.is_final():
        return None
    if state.is_completed():
        return Outcome.PROMOTED
    if state.is_failed() and "rolled back" in (state.message or "").lower():
        return Outcome.ROLLED_BACK
    return Outcome.FAILED


def _start(spec: FleetSpec, service: str) -> UUID:
    parent = current_run.get_id() or "local"
    child = run_deployment(spec.deployment_name, parameters={"spec": spec.release_spec(service)}, timeout=0,
                           idempotency_key=f"fleet:{parent}:{service}",
                           tags=["canaryflow", "fleet", f"service:{service}", f"version:{spec.version}"])
    return sync_result(child, "run_deployment").id


@flow(name="canary-fleet", flow_run_name=_run_name)
def canary_fleet(spec: FleetSpec) -> dict[str, Any] | State[Any]:
    """Release ``spec.version`` to every service of ``spec.services`` in waves."""
    spec = FleetSpec.model_validate(spec if isinstance(spec, dict) else spec.model_dump())
    logger = get_run_logger()
    waves = plan_waves(spec.services, spec.waves)
    outcomes: dict[str, Outcome] = {}
    for number, wave in enumerate(waves, 1):
        if should_stop(outcomes, stop_on_rollback=spec.stop_on_rollback):
            break
        logger.info("wave %d/%d: %s", number, len(waves), ", ".join(wave))
        queue, running = list(wave), dict[str, UUID]()
        with get_client(sync_client=True) as client:
            while queue or running:
                while queue and len(running) < spec.max_concurrency and not should_stop(
                        outcomes, stop_on_rollback=spec.stop_on_rollback):
                    service = queue.pop(0)
                    running[service] = _start(spec, service)
                if not running:
                    break  # stopped: what is left in the queue is not attempted
                time.sleep(POLL_SECONDS)
                for service, run_id in list(running.items()):
                    outcome = outcome_of(client.read_flow_run(run_id).state)
                    if outcome is not None:
                        outcomes[service] = outcome
                        del running[service]
                        logger.info("%s: %s", service, outcome.value)
    summary = fleet_summary(spec, waves, outcomes)
    create_markdown_artifact(summary_markdown(summary), key="fleet-release",
                             description=f"fleet release of {spec.version}")
    if summary["status"] != "promoted":
        # Named as a release's states are, so `canaryflow fleet --wait` and `wait` exit 1 on a rollback.
        name = ROLLED_BACK_STATE if summary["status"] == "rolled_back" else INCOMPLETE_STATE
        message = (f"fleet release of {spec.version}: {summary['status']}; "
                   f"not attempted: {', '.join(summary['not_attempted']) or 'none'}")
        # An exception, as a Failed state's data must be (Prefect raises TypeError on a dict), and a
        # deliberate one, so a worker's engine logs no traceback for a fleet that stopped as designed.
        return Failed(name=name, message=message, data=deliberate(FleetNotPromoted(message, summary)))
    return summary
