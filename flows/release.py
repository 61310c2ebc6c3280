"""The canary release, as the runbook reads:

take the service's lock -> preflight -> deploy -> wait until ready -> smoke test -> dashboard and
annotation -> for each step: (approval before the last, where the spec asks) move traffic, analyse
during the wait -> promote. A FAIL, a failed smoke test, a stuck rollout, a canary that stops
serving mid-step or a rejection rolls back:
traffic to stable first, then the canary goes, and the run ends Failed with the reason and the
numbers. An abort for a passing reason (metrics or platform unavailable) also schedules a retry run.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.exceptions import ExternalSignal
from prefect.states import Failed

from canaryflow.analysis import next_pause, policy_for
from canaryflow.errors import ConfigError, PreflightError, RolloutStuck
from canaryflow.judge import Action, Decision, Reason, decide
from canaryflow.pipeline_metrics import metrics_for
from canaryflow.platforms import create as create_platform
from canaryflow.prometheus import PrometheusSource
from canaryflow.release import ReleaseRolledBack, ReleaseRun
from canaryflow.settings import Settings, get_settings
from canaryflow.spec import Environment, ReleaseSpec, validate_spec
from tasks.analysis import analyse_canary, preflight
from tasks.approval import await_approval
from tasks.grafana import annotate_release, restore_dashboard, update_dashboard
from tasks.locks import one_release_per_service
from tasks.platform import deploy_canary, promote_canary, rollback_canary, set_canary_weight, wait_until_ready
from tasks.report import publish_report, show_weight
from tasks.retry import schedule_retry
from tasks.smoke import smoke_test


#: The orchestrator itself is going away: roll back, then let the signal end the run (Crashed).
INTERRUPTIONS = (KeyboardInterrupt, SystemExit, ExternalSignal)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _run_name() -> str:
    from prefect.runtime import flow_run

    return validate_spec(flow_run.parameters["spec"]).run_name


def _refuse_other_environment(spec: ReleaseSpec) -> None:
    """The ``production`` deployment releases to production only (its worker may hold production
    credentials): a spec naming another environment is refused before anything starts."""
    from prefect.runtime import deployment

    if deployment.name in {e.value for e in Environment} and deployment.name != spec.environment.value:
        raise ConfigError(f"deployment {deployment.name!r} cannot release to {spec.environment.value}",
                          fields=("environment",))


def _restore_stable(flow: Any, flow_run: Any, state: Any) -> None:
    """Crash/cancel hook: the process is going away, so put all traffic back on stable now."""
    spec = validate_spec(flow_run.parameters["spec"])
    platform = create_platform(spec.platform, settings=get_settings(), service=spec.service, spec=spec)
    try:
        platform.rollback()
    finally:
        platform.close()


@flow(name="canary-release", flow_run_name=_run_name, on_crashed=[_restore_stable],
      on_cancellation=[_restore_stable])
def canary_release(spec: ReleaseSpec, attempt: int = 1, retry_of: str | None = None) -> dict[str, Any]:
    """Release ``spec.version``; ``attempt``/``retry_of`` are set on scheduled retries of an aborted canary."""
    spec = validate_spec(spec)
    _refuse_other_environment(spec)
    settings = get_settings()  # bad settings fail the run here, before it holds or changes anything
    with one_release_per_service(spec.service, timeout=spec.queue_timeout_seconds):
        run = open_release(spec, settings, attempt=attempt, retry_of=retry_of)
        try:
            return release(run)
        except ReleaseRolledBack as rolled_back:  # an answer, not a crash: Failed, with the reason
            if isinstance(rolled_back.__cause__, INTERRUPTIONS):
                raise rolled_back.__cause__  # rolled back; now the run ends Crashed as it should
            return Failed(message=str(rolled_back), data=rolled_back)
        except PreflightError as exc:  # nothing changed; Prometheus may just be down for now
            if exc.reason:
                schedule_retry(run, exc.reason)
            raise
        finally:
            run.close()


def release(run: ReleaseRun) -> dict[str, Any]:
    """The runbook. Any breach, stuck rollout or failed smoke test goes through ``abort``."""
    preflight(run)
    run.metrics.release_started(committed_at=run.spec.committed_at)
    try:
        deploy_canary(run)
        try:
            wait_until_ready(run)
        except RolloutStuck as exc:
            abort(run, Reason.ROLLOUT_STUCK, str(exc))
        report = smoke_test(run)
        if not report.passed:
            abort(run, Reason.SMOKE_TEST_FAILED, "; ".join(report.failures()))
        update_dashboard(run)  # monitoring: never raises, never blocks the release
        annotate_release(run, "started")
        for index, weight in enumerate(run.spec.steps):
            if index == len(run.spec.steps) - 1 and run.spec.needs_approval:
                approved, why = await_approval(run, run.spec.steps[index - 1])
                if not approved:
                    abort(run, Reason.MANUAL, why)
            set_canary_weight(run, weight)
            show_weight(run, weight)
            annotate_release(run, "step", weight)
            decision = analyse_step(run, index)
            if decision.action is Action.ROLLBACK:
                abort(run, decision.reason, decision.explanation)
        promote_canary(run)
        show_weight(run, 100)
        annotate_release(run, "promoted")
    except ReleaseRolledBack:
        raise
    except BaseException as exc:  # platform failure or interruption: never leave traffic split
        reason = Reason.INTERRUPTED if isinstance(exc, INTERRUPTIONS) else Reason.PLATFORM_ERROR
        abort(run, reason, describe(exc), cause=exc)
    return finish(run)


def open_release(spec: ReleaseSpec, settings: Settings, *, attempt: int = 1, retry_of: str | None = None) -> ReleaseRun:
    metrics = metrics_for(service=spec.service, environment=spec.environment.value,
                          pushgateway_url=settings.pushgateway_url, metrics_port=settings.metrics_port)
    source = PrometheusSource(settings.prometheus_url, timeout=settings.prometheus_timeout_seconds,
                              observer=lambda seconds, outcome: metrics.query("canary_analysis", seconds, outcome))
    platform = create_platform(spec.platform, settings=settings, service=spec.service, spec=spec)
    return ReleaseRun(spec=spec, platform=platform, source=source, metrics=metrics, attempt=attempt,
                      retry_of=retry_of)


def analyse_step(run: ReleaseRun, index: int) -> Decision:
    """Measure every analysis interval during the step's wait (and after it, until a PASS or the
    hold limit); stop as soon as the judge decides anything but hold."""
    weight, policy = run.spec.steps[index], policy_for(run.spec)
    record = run.begin(f"step {index + 1}/{len(run.spec.steps)}", weight)
    started = time.monotonic()
    while True:
        round_, signal = analyse_canary(run, index, weight, started)
        decision = decide(policy, step_index=index, elapsed=round_.elapsed, rounds=run.rounds, signal=signal)
        if decision.action is not Action.HOLD:
            run.end(record, decision.action.value, decision.explanation)
            return decision
        run.platform.set_weight(weight, lease_seconds=run.lease_seconds)  # renew the lease
        time.sleep(next_pause(elapsed=time.monotonic() - started, wait=run.spec.step_wait_seconds,
                              interval=run.spec.analysis_interval_seconds))


def abort(run: ReleaseRun, reason: Reason, explanation: str, cause: BaseException | None = None) -> None:
    """Roll back, record why, and end the run Failed with the reason."""
    record = run.begin("rollback", 0)
    try:
        rollback_canary(run, reason.value)
        run.end(record, "rolled_back", explanation)
    except Exception as exc:  # the platform lease still returns traffic to stable
        run.end(record, "rollback_failed", f"{type(exc).__name__}: {exc}")
        get_run_logger().error("rollback failed (%s); the traffic lease returns users to stable", exc)
    annotate_release(run, "rolled_back", reason=reason.value, explanation=explanation)
    restore_dashboard(run)  # the dashboard version that was live before the release
    run.metrics.release_finished(status="rolled_back", duration=time.monotonic() - run.started, reason=reason.value)
    run.metrics.push()
    get_run_logger().error("release of %s %s rolled back: %s — %s", run.spec.service, run.spec.version,
                           reason.value, explanation)
    show_weight(run, 0)
    summary = run.summary(status="rolled_back", reason=reason, explanation=explanation)
    if not isinstance(cause, INTERRUPTIONS):  # a dying orchestrator schedules nothing
        summary["retry"] = schedule_retry(run, reason.value)
    publish_report(run, summary)
    raise ReleaseRolledBack(reason.value, explanation, summary) from cause


def finish(run: ReleaseRun) -> dict[str, Any]:
    run.metrics.release_finished(status="success", duration=time.monotonic() - run.started)
    run.metrics.push()
    get_run_logger().info("release of %s %s promoted", run.spec.service, run.spec.version)
    summary = run.summary(status="promoted", reason=Reason.ANALYSIS_PASSED)
    publish_report(run, summary)
    return summary
