"""The canary release, as the runbook reads:

take the service's lock -> preflight -> deploy -> wait until ready -> smoke test -> dashboard and
annotation -> for each step: (approval before the last, where the spec asks) move traffic, analyse
during the wait -> promote. A FAIL, a failed smoke test, a stuck rollout, a canary that stops
serving mid-step, a rejection, a platform error or an interruption rolls back: traffic to stable
first, then the canary goes.

One exit: ``release`` returns an ``Outcome`` (promoted, rolled back, refused) and never raises for
anything it can answer; ``finalise`` then reports it exactly once (metrics, annotation, dashboard
restore, retry decision, report), each reporting step guarded so that its failure is logged and
counted but never changes the outcome nor rolls back again. The run ends Completed (promoted),
Failed with the reason (rolled back, refused), or Crashed/Cancelled for an interruption, which is
re-raised only after the rollback and the report.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.states import Failed

from canaryflow import events
from canaryflow.analysis import next_pause, policy_for
from canaryflow.deliberate_endings import deliberate
from canaryflow.errors import ConfigError, PlatformError, PreflightError, RolloutStuck
from canaryflow.events import emit_release_event, latest_evidence
from canaryflow.judge import Action, Decision, Reason, decide
from canaryflow.outcome import Ending, Outcome, is_interruption
from canaryflow.pipeline_metrics import metrics_for
from canaryflow.platforms import create as create_platform
from canaryflow.prometheus import PrometheusSource
from canaryflow.release import ReleaseRolledBack, ReleaseRun
from canaryflow.retries import release_tags
from canaryflow.settings import Settings, get_settings
from canaryflow.spec import Environment, ReleaseSpec, validate_spec
from tasks.analysis import analyse_canary, preflight, start_analysis
from tasks.approval import await_approval
from tasks.control import read_operator_command
from tasks.grafana import annotate_release, restore_dashboard, update_dashboard
from tasks.locks import one_release_per_service
from tasks.platform import deploy_canary, promote_canary, rollback_canary, set_canary_weight, wait_until_ready
from tasks.report import publish_report, show_weight
from tasks.retry import schedule_retry
from tasks.smoke import smoke_test

#: What the runbook calls, by name. In a flow run: the Prefect tasks. ``plain_tasks()`` gives their
#: bodies (``task.fn``) for running the runbook without a Prefect server (the fault matrix).
PREFECT_TASKS = SimpleNamespace(
    preflight=preflight, deploy_canary=deploy_canary, wait_until_ready=wait_until_ready, smoke_test=smoke_test,
    update_dashboard=update_dashboard, annotate_release=annotate_release, restore_dashboard=restore_dashboard,
    start_analysis=start_analysis, await_approval=await_approval, set_canary_weight=set_canary_weight,
    show_weight=show_weight, analyse_canary=analyse_canary, promote_canary=promote_canary,
    rollback_canary=rollback_canary, schedule_retry=schedule_retry, publish_report=publish_report,
    read_operator_command=read_operator_command)


def plain_tasks() -> SimpleNamespace:
    return SimpleNamespace(**{name: getattr(t, "fn", t) for name, t in vars(PREFECT_TASKS).items()})


#: Flow runs (by id) whose release settled in this process: promoted, or rolled back. The crash and
#: cancellation hooks leave them alone (a second rollback could undo a finished promotion).
SETTLED: set[str] = set()


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _run_name() -> str:
    from prefect.runtime import flow_run

    return validate_spec(flow_run.parameters["spec"]).run_name


def _this_run() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


def _refuse_other_environment(spec: ReleaseSpec) -> None:
    """The ``production`` deployment releases to production only (its worker may hold production
    credentials): a spec naming another environment is refused before anything starts."""
    from prefect.runtime import deployment

    if deployment.name in {e.value for e in Environment} and deployment.name != spec.environment.value:
        emit_release_event(events.REFUSED, spec, reason="wrong_environment", deployment=deployment.name)
        raise ConfigError(f"deployment {deployment.name!r} cannot release to {spec.environment.value}",
                          fields=("environment",))


def _tag_this_run(spec: ReleaseSpec) -> None:
    """Tag the run with the release it is (``release_tags``), however it was started; monitoring,
    so a failure is logged and the release goes on."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    run_id = _this_run()
    if run_id is None:
        return
    tags = release_tags(list(flow_run.tags or []), service=spec.service, version=spec.version,
                        environment=spec.environment.value)
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(UUID(run_id), tags=tags)
    except Exception as exc:  # noqa: BLE001 - a tag never stops a release
        get_run_logger().warning("could not tag this run %s: %s", tags, exc)


def _restore_stable(flow: Any, flow_run: Any, state: Any) -> None:
    """Crash/cancel hook: the process is going away, so put all traffic back on stable now,
    unless this release already settled (rolled back, or promoted: undoing that is not ours)."""
    if str(flow_run.id) in SETTLED:
        return
    spec = validate_spec(flow_run.parameters["spec"])
    platform = create_platform(spec.platform, settings=get_settings(), service=spec.service, spec=spec)
    try:
        platform.rollback()
    finally:
        platform.close()


@flow(name="canary-release", flow_run_name=_run_name, on_crashed=[_restore_stable],
      on_cancellation=[_restore_stable])
def canary_release(spec: ReleaseSpec, attempt: int = 1, retry_of: str | None = None) -> Any:
    """Release ``spec.version``; ``attempt``/``retry_of`` are set on scheduled retries of an aborted canary."""
    spec = validate_spec(spec)
    _tag_this_run(spec)
    _refuse_other_environment(spec)
    settings = get_settings()  # bad settings fail the run here, before it holds or changes anything
    with one_release_per_service(spec.service, timeout=spec.queue_timeout_seconds):
        run = open_release(spec, settings, attempt=attempt, retry_of=retry_of)
        try:
            outcome = release(run)
            summary = finalise(run, outcome)
        finally:
            run.close()
    return final_state(outcome, summary)


def final_state(outcome: Outcome, summary: dict[str, Any]) -> Any:
    """Completed with the summary, Failed with the reason, or the interruption raised again (Crashed)."""
    if outcome.interrupted:
        raise outcome.cause  # type: ignore[misc]  # rolled back and reported; now the run ends Crashed
    if outcome.ending is Ending.PROMOTED:
        return summary
    if outcome.ending is Ending.ROLLED_BACK:
        rolled_back = ReleaseRolledBack(outcome.reason.value, outcome.explanation, summary)  # type: ignore[union-attr]
        # Named, so the UI tells it from a crash; deliberate, so a worker's engine logs no traceback for it.
        return Failed(message=outcome.describe(), data=deliberate(rolled_back), name="RolledBack")
    # Refused before any change: named apart from a rollback, so the UI and `canaryflow wait` tell them apart.
    refusal = outcome.cause or PreflightError(outcome.explanation)
    return Failed(message=outcome.describe(), data=deliberate(refusal), name="Refused")


def release(run: ReleaseRun, tasks: SimpleNamespace | None = None) -> Outcome:
    """The runbook. Returns how it ended; raises only for an interruption during the rollback itself
    (the crash hook then rolls back) or during preflight (nothing changed yet)."""
    tasks = tasks or PREFECT_TASKS
    try:
        tasks.preflight(run)
    except PreflightError as exc:  # nothing changed; Prometheus may just be down for now
        return Outcome.refused(Reason(exc.reason) if exc.reason else None, str(exc), cause=exc)
    except Exception as exc:  # the platform could not be asked (transient): nothing changed either
        return Outcome.refused(Reason.PLATFORM_ERROR, describe(exc), cause=exc)
    run.metrics.release_started(committed_at=run.spec.committed_at)
    _report(run, "prefect", "event", lambda: emit_release_event(
        events.STARTED, run.spec, attempt=run.attempt, previous_version=run.previous_version))
    try:
        planned = _steps(run, tasks)
        if planned.ending is Ending.PROMOTED:
            tasks.promote_canary(run)
            _settle()
            return planned
    except BaseException as exc:  # platform failure or interruption: never leave traffic split
        reason = Reason.INTERRUPTED if is_interruption(exc) else Reason.PLATFORM_ERROR
        planned = Outcome.rolled_back(reason, describe(exc), cause=exc)
    return _roll_back(run, tasks, planned)


def _steps(run: ReleaseRun, tasks: SimpleNamespace) -> Outcome:
    """Deploy to the last step: a promotion with the judge's evidence, or why to roll back."""
    tasks.deploy_canary(run)
    try:
        tasks.wait_until_ready(run)
    except RolloutStuck as exc:
        return Outcome.rolled_back(Reason.ROLLOUT_STUCK, str(exc))
    report = tasks.smoke_test(run)
    if not report.passed:
        return Outcome.rolled_back(Reason.SMOKE_TEST_FAILED, "; ".join(report.failures()))
    _report(run, "grafana", "update_dashboard", lambda: tasks.update_dashboard(run))  # never blocks the release
    _report(run, "grafana", "annotate", lambda: tasks.annotate_release(run, "started"))
    tasks.start_analysis(run)  # counters and latency boundaries fixed before any user traffic
    passed: list[Decision] = []
    index, last, approved, stepped_back = 0, len(run.spec.steps) - 1, False, False
    while index <= last:
        weight = run.spec.steps[index]
        if index == last and run.spec.needs_approval and not approved:
            approved, why = tasks.await_approval(run, run.spec.steps[index - 1])
            if not approved:
                return Outcome.rolled_back(Reason.MANUAL, why)
        tasks.set_canary_weight(run, weight)
        _announce_weight(run, tasks, weight, step=index + 1, stepped_back=stepped_back)
        decision = analyse_step(run, index, tasks)
        if decision.action is Action.ROLLBACK:
            return Outcome.rolled_back(decision.reason, decision.explanation, evidence=(decision,))
        stepped_back = decision.action is Action.STEP_BACK
        if stepped_back:  # no baseline at this weight: compare at the previous one
            index -= 1
            continue
        passed.append(decision)
        if decision.action is Action.PROMOTE:  # a person's promote skips the remaining steps
            break
        index += 1
    return Outcome.promoted(tuple(passed))


def _announce_weight(run: ReleaseRun, tasks: SimpleNamespace, weight: int, *, step: int, stepped_back: bool) -> None:
    """The new weight's event, the UI's weight and the dashboard annotation: reporting only."""
    event = events.STEPPED_BACK if stepped_back else events.STEP_ADVANCED
    _report(run, "prefect", "event", lambda: emit_release_event(event, run.spec, weight=weight, step=step,
                                                                  steps=len(run.spec.steps)))
    _report(run, "prefect", "show_weight", lambda: tasks.show_weight(run, weight))
    _report(run, "grafana", "annotate", lambda: tasks.annotate_release(run, "step", weight))


def _roll_back(run: ReleaseRun, tasks: SimpleNamespace, planned: Outcome) -> Outcome:
    """The one rollback of a release. If the task machinery itself failed (the Prefect API is
    down) rather than the platform, the platform is asked once directly: its rollback is idempotent."""
    record = run.begin("rollback", 0)
    try:
        tasks.rollback_canary(run, planned.reason.value)  # type: ignore[union-attr]
    except Exception as exc:
        error: str | None = describe(exc)
        if not isinstance(exc, PlatformError):
            try:
                run.platform.rollback()
                error = None
            except Exception as direct:
                error = describe(direct)
    else:
        error = None
    if error is None:
        run.end(record, "rolled_back", planned.explanation)
    else:
        run.end(record, "rollback_failed", error)
        get_run_logger().error("rollback failed (%s); %s", error, run.platform.after_failed_rollback)
    _settle()
    return dataclasses.replace(planned, rollback_error=error)


def _settle() -> None:
    """Remember that this run's release settled (promoted or rolled back), so the crash hook does
    not roll back a second time what a late interruption cut short after it."""
    try:
        run_id = _this_run()
    except Exception:  # no run context (the runbook run as plain code): no hook to tell either
        return
    if run_id:
        SETTLED.add(run_id)


def finalise(run: ReleaseRun, outcome: Outcome, tasks: SimpleNamespace | None = None) -> dict[str, Any]:
    """Report ``outcome`` once. Each step below is one reporting operation; a failure of any is
    logged and counted in ``canaryflow_monitoring_operations_total`` and the next one runs. Adding a
    way to report (an event, a notification) is one more entry in ``reporting_steps``."""
    tasks = tasks or PREFECT_TASKS
    summary = run.summary(status=outcome.ending.value, reason=outcome.reason, explanation=outcome.explanation)
    if outcome.rollback_error:
        summary["rollback_error"] = outcome.rollback_error
    for system, operation, step in reporting_steps(run, outcome, tasks, summary):
        _report(run, system, operation, step)
    return summary


Step = Callable[[], Any]


def reporting_steps(run: ReleaseRun, outcome: Outcome, tasks: SimpleNamespace,
                    summary: dict[str, Any]) -> list[tuple[str, str, Step]]:
    """(system, operation, call) in order: what a person sees first comes first."""
    reason = outcome.reason.value if outcome.reason else None
    duration = time.monotonic() - run.started
    steps: list[tuple[str, str, Step]]
    if outcome.ending is Ending.PROMOTED:
        steps = [("prefect", "show_weight", lambda: tasks.show_weight(run, 100)),
                 ("grafana", "annotate", lambda: tasks.annotate_release(run, "promoted")),
                 ("pipeline", "release_finished",
                  lambda: run.metrics.release_finished(status="success", duration=duration)),
                 ("pipeline", "log", lambda: get_run_logger().info("release of %s %s promoted", run.spec.service,
                                                      run.spec.version))]
    elif outcome.ending is Ending.ROLLED_BACK:
        steps = [("grafana", "annotate", lambda: tasks.annotate_release(
                     run, "rolled_back", reason=reason, explanation=outcome.explanation)),
                 ("grafana", "restore_dashboard", lambda: tasks.restore_dashboard(run)),
                 ("pipeline", "release_finished",
                  lambda: run.metrics.release_finished(status="rolled_back", duration=duration, reason=reason)),
                 ("pipeline", "log", lambda: get_run_logger().error(
                     "release of %s %s rolled back: %s — %s", run.spec.service, run.spec.version, reason,
                     outcome.explanation)),
                 ("prefect", "show_weight", lambda: tasks.show_weight(run, 0))]
    else:
        steps = [("pipeline", "release_finished",
                  lambda: run.metrics.release_finished(status="failed", duration=duration)),
                 ("pipeline", "log", lambda: get_run_logger().error("release of %s %s refused: %s", run.spec.service,
                                                       run.spec.version, outcome.explanation))]
    steps.append(("prefect", "event", lambda: _emit_outcome_event(run, outcome, summary)))
    steps.append(("pushgateway", "push", lambda: run.metrics.push()))
    retry_reason = outcome.retry_reason
    if retry_reason is not None:
        steps.append(("prefect", "schedule_retry", lambda: _retry(run, tasks, retry_reason, summary)))
    if outcome.ending is not Ending.REFUSED:
        steps.append(("prefect", "publish_report", lambda: tasks.publish_report(run, summary)))
    return steps


def _emit_outcome_event(run: ReleaseRun, outcome: Outcome, summary: dict[str, Any]) -> None:
    event, payload = _outcome_event(run, outcome, summary)
    emit_release_event(event, run.spec, **payload)


def _outcome_event(run: ReleaseRun, outcome: Outcome, summary: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The Prefect event (name, payload) that says how the release ended."""
    reason = outcome.reason.value if outcome.reason else None
    if outcome.ending is Ending.PROMOTED:
        return events.PROMOTED, {"previous_version": run.previous_version, "reason": reason,
                                           "duration_s": summary.get("duration_s")}
    if outcome.ending is Ending.ROLLED_BACK:
        return events.ROLLED_BACK, {"reason": reason, "explanation": outcome.explanation,
                                              "evidence": latest_evidence(summary)}
    return events.REFUSED, {"reason": reason or "preflight_failed", "explanation": outcome.explanation}


def _retry(run: ReleaseRun, tasks: SimpleNamespace, reason: str, summary: dict[str, Any]) -> None:
    """The retry decision goes into the report: what was scheduled, None for no retry, or (kept if
    scheduling raises) that a retry was due and could not be scheduled."""
    summary["retry"] = "not scheduled: the Prefect API refused the retry run"
    summary["retry"] = tasks.schedule_retry(run, reason)


def _report(run: ReleaseRun, system: str, operation: str, step: Step) -> None:
    try:
        step()
    except Exception as exc:
        run.metrics.monitoring(system, operation, "failed")
        try:
            get_run_logger().warning("%s %s failed (%s); the release's outcome stands", system, operation,
                                     describe(exc))
        except Exception:  # not even the run log answers: the counter above is the record
            pass


def open_release(spec: ReleaseSpec, settings: Settings, *, attempt: int = 1, retry_of: str | None = None) -> ReleaseRun:
    metrics = metrics_for(service=spec.service, environment=spec.environment.value,
                          pushgateway_url=settings.pushgateway_url, metrics_port=settings.metrics_port)
    source = PrometheusSource(settings.prometheus_url, timeout=settings.prometheus_timeout_seconds,
                              observer=lambda seconds, outcome: metrics.query("canary_analysis", seconds, outcome))
    platform = create_platform(spec.platform, settings=settings, service=spec.service, spec=spec)
    return ReleaseRun(spec=spec, platform=platform, source=source, metrics=metrics, attempt=attempt,
                      retry_of=retry_of)


def analyse_step(run: ReleaseRun, index: int, tasks: SimpleNamespace) -> Decision:
    """Measure every analysis interval during the step's wait (and after it, until a PASS or the
    hold limit); stop as soon as the judge decides anything but hold."""
    weight, policy = run.spec.steps[index], policy_for(run.spec)
    record = run.begin(f"step {index + 1}/{len(run.spec.steps)}", weight)
    started = time.monotonic()
    run.step_starts.append((started - run.started, weight))
    while True:
        round_, signal = tasks.analyse_canary(run, index, weight, started)
        decision = decide(policy, step_index=index, elapsed=round_.elapsed, rounds=run.rounds, signal=signal,
                          operator=tasks.read_operator_command())
        if decision.action is not Action.HOLD:
            run.end(record, decision.action.value, decision.explanation)
            return decision
        if not _renew_lease(run, weight):
            continue  # the canary stopped since this round's check: the next round says how, at once
        time.sleep(next_pause(elapsed=time.monotonic() - started, wait=run.spec.step_wait_seconds,
                              interval=run.spec.analysis_interval_seconds))


def _renew_lease(run: ReleaseRun, weight: int) -> bool:
    """Renew the step's traffic lease. A canary that dies between the round's check and the renewal
    makes the platform refuse the weight; that is the canary's failure (rollout_stuck, with its exit),
    not the platform's, so report False and let the next round's signal decide. Any other refusal
    is a platform error."""
    try:
        run.platform.set_weight(weight, lease_seconds=run.lease_seconds)
    except PlatformError as exc:
        if getattr(exc, "lease_lost", False) or run.platform.canary_problem() is None:
            raise
        return False
    return True
