"""``canary-reconcile``: every minute, restore stable wherever a release died holding its traffic lease.

A SIGKILLed worker runs no crash hook; this flow is what returns users to stable then (see
``canaryflow.reconcile`` for the decision and the race with a renewing release). It ends Failed
when an object could not be restored or the cluster could not be read, so the UI shows it.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.states import Failed

from canaryflow.reconcile import DEFAULT_STALE_AFTER, Report, reconcile_kubernetes, reconcile_local
from canaryflow.settings import get_settings


@task(name="reconcile-leases")
def reconcile_leases(platform: str, namespaces: list[str], stale_after_seconds: float | None) -> Report:
    settings = get_settings()
    if platform == "local":
        return reconcile_local(settings.local_controller_url)
    return reconcile_kubernetes(settings, namespaces, stale_after=stale_after_seconds)


@flow(name="canary-reconcile")
def canary_reconcile(namespaces: list[str], platform: Literal["kubernetes", "local"] = "kubernetes",
                     stale_after_seconds: float | None = DEFAULT_STALE_AFTER) -> Any:
    """One pass; ``stale_after_seconds`` (None: never) treats a run Prefect still calls live as dead
    once its lease has been expired that long (a SIGKILLed run stays Running)."""
    log = get_run_logger()
    report = reconcile_leases(platform, namespaces, stale_after_seconds)
    for outcome in report.outcomes:
        (log.warning if outcome.restored or outcome.error else log.info)("%s", outcome.line())
    for problem in report.problems:
        log.error("%s", problem)
    summary = {"restored": [o.line() for o in report.restored],
               "outcomes": [o.line() for o in report.outcomes], "problems": report.problems}
    if report.failed:
        return Failed(message="; ".join(report.problems + [o.line() for o in report.outcomes if o.error]),
                      data=summary)
    return summary
