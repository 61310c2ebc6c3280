"""Smoke tests against the canary, before any user traffic reaches it."""

from __future__ import annotations

from prefect import get_run_logger, task

from canaryflow.release import ReleaseRun
from canaryflow.smoke import SmokeReport, run_smoke
from tasks.common import PLAIN_TASK


@task(name="smoke-test", **PLAIN_TASK)
def smoke_test(run: ReleaseRun) -> SmokeReport:
    with run.stage("smoke test") as record:
        report = run_smoke(run.platform.canary_url(), run.spec.smoke)
        record.outcome = "passed" if report.passed else "failed"
        record.detail = "; ".join(r.describe() for r in report.results)
        run.metrics.smoke_test(passed=report.passed, duration=report.duration)
        log = get_run_logger()
        for result in report.results:
            (log.info if result.passed else log.warning)("smoke %s", result.describe())
        return report
