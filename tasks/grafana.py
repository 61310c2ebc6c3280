"""Grafana: the deployment dashboard and release annotations. Monitoring never blocks a deploy.

Every task here returns normally whatever Grafana does; what happened is logged at the level it
deserves (info when done or unconfigured, warning when Grafana was unavailable, error when the
token is refused) and counted in ``canaryflow_monitoring_operations_total{system="grafana"}``.
The token comes from ``CANARYFLOW_GRAFANA_TOKEN`` or from the Prefect Secret block named by
``CANARYFLOW_GRAFANA_TOKEN_BLOCK``; it is never logged.
"""

from __future__ import annotations

import logging

from prefect import get_run_logger, task
from pydantic import SecretStr

from canaryflow.dashboard_release import DashboardTracker, Outcome
from canaryflow.grafana import GrafanaClient
from canaryflow.prefect_sync import sync_result
from canaryflow.release import ReleaseRun
from canaryflow.settings import Settings, get_settings
from tasks.common import PLAIN_TASK


def grafana_token(settings: Settings) -> SecretStr | None:
    """The service-account token: the setting, else the Prefect Secret block it names."""
    if settings.grafana_token is not None and settings.grafana_token.get_secret_value():
        return settings.grafana_token
    if settings.grafana_token_block:
        from prefect.blocks.system import Secret

        value = sync_result(Secret.load(settings.grafana_token_block), "Secret.load").get()
        return SecretStr(value if isinstance(value, str) else str(value))
    return None


def tracker(run: ReleaseRun) -> DashboardTracker:
    """The Grafana side of ``run``, made on first use and kept on the run."""
    if run.dashboard is None:
        from prefect.runtime import flow_run

        settings = get_settings()
        client = None
        if settings.grafana_url:
            try:
                token = grafana_token(settings)
            except Exception as exc:  # a missing block: requests go unauthenticated and say so
                get_run_logger().error("Grafana token block %r could not be read (%s); Grafana calls will be "
                                       "refused", settings.grafana_token_block, type(exc).__name__)
                token = None
            client = GrafanaClient(settings.grafana_url, token=token, timeout=settings.grafana_timeout_seconds)
        run.dashboard = DashboardTracker(
            client, service=run.spec.service, version=run.spec.version, environment=run.spec.environment.value,
            run_id=str(flow_run.id or ""), previous_version=run.previous_version,
            dashboard_uid=settings.grafana_dashboard_uid, folder_uid=settings.grafana_folder_uid,
            metrics=run.metrics)
    return run.dashboard


def _report(outcome: Outcome) -> None:
    if outcome.message:
        get_run_logger().log(outcome.level, "%s", outcome.message)


def _guarded(run: ReleaseRun, operation: str, action: object) -> None:
    """Run ``action(tracker)``, log its outcome; anything unexpected is logged and counted, never raised."""
    with run.metrics.track_task(operation):
        try:
            _report(action(tracker(run)))  # type: ignore[operator]
        except Exception as exc:
            run.metrics.monitoring("grafana", operation, "failed")
            get_run_logger().log(logging.WARNING, "grafana %s failed unexpectedly (%s); the release goes on",
                                 operation, type(exc).__name__)


@task(name="update-dashboard", **PLAIN_TASK)
def update_dashboard(run: ReleaseRun) -> None:
    """Health check, remember the live dashboard version, save the deployment dashboard for this release."""
    _guarded(run, "update_dashboard", lambda t: t.update_dashboard())


@task(name="annotate-release", task_run_name="annotate-{event}", **PLAIN_TASK)
def annotate_release(run: ReleaseRun, event: str, weight: int | None = None, reason: str | None = None,
                     explanation: str = "") -> None:
    """Annotate ``started``, ``step`` (at ``weight``), ``promoted`` or ``rolled_back`` (with ``reason``)."""
    steps = run.spec.steps
    step = steps.index(weight) + 1 if weight in steps else None
    _guarded(run, "annotate", lambda t: t.annotate(event, weight=weight, step=step, steps=len(steps),
                                                   reason=reason, explanation=explanation))


@task(name="restore-dashboard", **PLAIN_TASK)
def restore_dashboard(run: ReleaseRun) -> None:
    """After a rollback: put back the dashboard version that was live before the release."""
    _guarded(run, "restore_dashboard", lambda t: t.restore())
