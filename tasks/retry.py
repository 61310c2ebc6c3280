"""Schedule a later attempt of an aborted canary as a new run of the same deployment."""

from __future__ import annotations

from prefect import get_run_logger, task

from canaryflow.events import RETRY_SCHEDULED, emit_release_event
from canaryflow.release import ReleaseRun
from canaryflow.retries import plan_retry, release_tags, retry_tags
from tasks.common import PLAIN_TASK
from tasks.prefect_api import prefect_api


@task(name="schedule-retry", **PLAIN_TASK)
def schedule_retry(run: ReleaseRun, reason: str) -> str | None:
    """A Scheduled run at now + backoff, tagged ``canary-retry``; returns a line for the summary.

    Only deployment runs can be retried this way (the retry is a run *of the deployment*); a
    plain script run says so and schedules nothing.
    """
    log = get_run_logger()
    api = prefect_api(run)
    plan = plan_retry(run.spec, reason=reason, attempt=run.attempt, origin=run.retry_of or str(api.flow_run_id()))
    if plan is None:
        return None
    deployment_id = api.deployment_id()
    if not deployment_id:
        log.info("%s is retryable, but this run has no deployment: no retry scheduled", reason)
        return "not scheduled (not a deployment run)"
    scheduled = api.run_deployment(
        deployment_id, parameters={"spec": run.spec.model_dump(mode="json"), "attempt": plan.attempt,
                                            "retry_of": plan.origin},
        scheduled_time=plan.scheduled_time, idempotency_key=plan.idempotency_key,
        tags=retry_tags(release_tags(api.flow_run_tags(), service=run.spec.service, version=run.spec.version,
                                     environment=run.spec.environment.value), plan.attempt),
        timeout=0, as_subflow=False)
    when = plan.scheduled_time.isoformat(timespec="seconds")
    emit_release_event(RETRY_SCHEDULED, run.spec, reason=reason, attempt=plan.attempt, scheduled_time=when,
                       flow_run_id=str(scheduled.id))
    log.warning("scheduled attempt %d/%d of this release at %s (flow run %s)", plan.attempt,
                run.spec.retry.max_attempts, when, scheduled.id)
    return f"attempt {plan.attempt}/{run.spec.retry.max_attempts} scheduled at {when} (flow run {scheduled.id})"
