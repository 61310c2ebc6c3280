"""Metric checks: the preflight and one analysis round."""

from __future__ import annotations

import time
from typing import Any

from prefect import get_run_logger, task

from canaryflow.analysis import check_preconditions, measure
from canaryflow.errors import PlatformError
from canaryflow.judge import Reason, Round, Signal, Verdict
from canaryflow.release import ReleaseRun
from tasks.common import PLAIN_TASK


@task(name="preflight", **PLAIN_TASK)
def preflight(run: ReleaseRun) -> None:
    """Refuse to start unless metrics can be read and the platform knows the service. Changes nothing."""
    with run.metrics.track_task("preflight"):
        try:
            check_preconditions(run)
        except Exception:  # counted as a release that failed to start: deployment_total{status="failed"}
            run.metrics.release_finished(status="failed", duration=time.monotonic() - run.started)
            raise
        get_run_logger().info("preflight ok: Prometheus ready, %s runs %s", run.spec.service, run.previous_version)


@task(name="analyse-canary", task_run_name="analyse-canary-{weight}pct", **PLAIN_TASK)
def analyse_canary(run: ReleaseRun, step_index: int, weight: int, step_started: float) -> tuple[Round, Signal | None]:
    """One round: the canary's metrics, and whether it still runs at all (a signal for the judge)."""
    with run.metrics.track_task("analyse_canary"):
        log = get_run_logger()
        signal = _canary_stopped(run, log)
        measurements = measure(run.source, run.spec, canary_age=run.canary_age)
        round_ = run.record_round(step_index, time.monotonic() - step_started, measurements)
        for m in measurements:
            level = log.warning if m.verdict in (Verdict.FAIL, Verdict.ERROR) else log.info
            level("[%d%%] %s %s: %s", weight, m.metric, m.verdict.value, m.detail)
        return round_, signal


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
