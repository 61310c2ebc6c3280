"""Metric checks: the preflight and one analysis round."""

from __future__ import annotations

import time
from typing import Any

from prefect import get_run_logger, task

from canaryflow.analysis import Analysis, check_preconditions
from canaryflow.errors import PlatformError
from canaryflow.judge import Reason, Round, Signal, Verdict
from canaryflow.release import ReleaseRun
from tasks.common import PLAIN_TASK


@task(name="preflight", **PLAIN_TASK)
def preflight(run: ReleaseRun) -> None:
    """Refuse to start unless metrics can be read and the platform knows the service. Changes nothing.
    A refusal is counted by the release's finaliser, as ``deployment_total{status="failed"}``."""
    with run.metrics.track_task("preflight"):
        check_preconditions(run)
        get_run_logger().info("preflight ok: Prometheus ready, %s runs %s", run.spec.service, run.previous_version)


@task(name="start-analysis", **PLAIN_TASK)
def start_analysis(run: ReleaseRun) -> None:
    """Snapshot the counters before the canary gets traffic and fix the latency boundaries from the
    baseline's history, so every later count is the canary's own and every test is set in advance."""
    with run.metrics.track_task("start_analysis"):
        run.analysis = Analysis(run.spec, run.source, baseline_version=run.previous_version)
        run.analysis.start()
        boundaries = run.analysis.describe_boundaries()
        log = get_run_logger()
        for metric, error in run.analysis.unread_at_start.items():
            log.warning("analysis start could not read %s (%s): it counts from the first round that reads it%s",
                        metric, error, f"; its boundaries are the limit's ({boundaries[metric]} ms)"
                        if metric in boundaries else "")
        log.info("analysis starts: baseline %s; latency boundaries %s ms; alpha %s",
                 run.previous_version, boundaries, run.spec.analysis.alpha)


@task(name="analyse-canary", task_run_name="analyse-canary-{weight}pct", **PLAIN_TASK)
def analyse_canary(run: ReleaseRun, step_index: int, weight: int, step_started: float) -> tuple[Round, Signal | None]:
    """One round: the canary's metrics, and whether it still runs at all (a signal for the judge)."""
    with run.metrics.track_task("analyse_canary"):
        log = get_run_logger()
        signal = _canary_stopped(run, log)
        weight_set_at = time.time() - (time.monotonic() - step_started)
        measurements = run.analysis.round(step_index=step_index, expected_share=_effective_share(run, weight, log),
                                          weight_set_at=weight_set_at)
        round_ = run.record_round(step_index, time.monotonic() - step_started, measurements)
        for m in measurements:
            level = log.warning if m.verdict in (Verdict.FAIL, Verdict.ERROR) else log.info
            level("[%d%%] %s %s: %s", weight, m.metric, m.verdict.value, m.detail)
        return round_, signal


def _effective_share(run: ReleaseRun, weight: int, log: Any) -> float:
    """The share the platform really routes (a replica split of 1 pod in 10 is 10 %, whatever was
    asked), for the traffic-split check; the requested weight if the platform cannot say now."""
    try:
        return run.platform.get_weight() / 100
    except PlatformError as exc:
        log.warning("could not read the applied canary weight this round: %s", exc)
        return weight / 100


def _canary_stopped(run: ReleaseRun, log: Any) -> Signal | None:
    try:
        problem = run.platform.canary_problem()
    except PlatformError as exc:
        if not exc.transient:
            raise
        log.warning("could not check the canary this round: %s", exc)  # the next round asks again
        return None
    if problem is None:
        return None
    log.error("the canary stopped serving: %s", problem)
    return Signal(Reason.ROLLOUT_STUCK, problem)
