"""What a release does to Grafana: the deployment dashboard, its version history, and annotations.

At the start (after the smoke test) the tracker checks Grafana's health, remembers the dashboard
version that was live, saves the deployment dashboard with a message naming the release, and
remembers the version it made. It annotates the start, every traffic step, the promotion or the
rollback (with its reason), all tagged ``canaryflow``, ``service:<s>``, ``version:<v>``,
``environment:<e>``. On rollback it restores the version that was live before the release
(Grafana keeps the history: the restore is a new version with the old content).

Monitoring never blocks a deploy: every method returns an ``Outcome`` instead of raising, and
counts it in ``canaryflow_monitoring_operations_total{system="grafana", operation, result}``:

- Grafana not configured → ``skipped`` (announced once);
- 5xx, timeouts, connection errors after bounded retries → ``failed`` (warning); later calls then
  try once without retries, so a Grafana outage costs a release seconds, not minutes;
- 401/403 → ``unauthorized`` (error: the token must be fixed), the release goes on.

Prefect-free: the task layer resolves the token, builds the client and logs the outcomes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from canaryflow.dashboards import DEFAULT_UID, deployment_overview
from canaryflow.grafana import Dashboard, GrafanaAuthError, GrafanaClient, GrafanaError, GrafanaNotFound

SYSTEM = "grafana"
TAG = "canaryflow"

#: Annotation events and the extra tag each carries.
EVENT_TAGS = {"started": "release", "step": "step", "promoted": "promotion", "rolled_back": "rollback"}


class MonitoringRecorder(Protocol):
    def monitoring(self, system: str, operation: str, result: str) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """What one Grafana operation came to. ``message`` is what to log at ``level`` ("" for nothing)."""

    operation: str
    result: str  # ok | skipped | failed | unauthorized
    message: str = ""
    level: int = logging.INFO


class DashboardTracker:
    """The Grafana side of one release. ``client=None`` means Grafana is not configured."""

    def __init__(self, client: GrafanaClient | None, *, service: str, version: str, environment: str,
                 run_id: str = "", previous_version: str | None = None,
                 dashboard_uid: str = DEFAULT_UID, folder_uid: str | None = None,
                 dashboard_file: Path | None = None, metrics: MonitoringRecorder | None = None) -> None:
        self.client = client
        self.service, self.version, self.environment = service, version, environment
        self.run_id = run_id
        self.previous_version = previous_version
        self.dashboard_uid = dashboard_uid
        self.folder_uid = folder_uid
        self.dashboard_file = dashboard_file
        self.metrics = metrics
        self.before: Dashboard | None = None  # the dashboard live before the release, if any
        self.after_version: int | None = None  # the version this release saved
        self.restored_version: int | None = None  # the version the restore created
        self.degraded = False  # Grafana was unavailable once: no more retries this release
        self.outcomes: list[Outcome] = []
        self._announced_skip = False

    def __repr__(self) -> str:
        return (f"DashboardTracker({self.service} {self.version} {self.environment}, uid={self.dashboard_uid!r}, "
                f"before={self.before_version}, after={self.after_version}, client={self.client!r})")

    @property
    def configured(self) -> bool:
        return self.client is not None

    @property
    def before_version(self) -> int | None:
        return None if self.before is None else self.before.version

    @property
    def release_name(self) -> str:
        return f"{self.service} {self.version} to {self.environment}"

    @property
    def save_message(self) -> str:
        run = f" (run {self.run_id})" if self.run_id else ""
        return f"canaryflow: release {self.release_name}{run}"

    def tags(self, event: str) -> list[str]:
        return [TAG, f"service:{self.service}", f"version:{self.version}", f"environment:{self.environment}",
                EVENT_TAGS[event]]

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    # -- operations --------------------------------------------------------------------------------

    def update_dashboard(self) -> Outcome:
        """Health check, remember the live version, save the deployment dashboard for this release."""
        def run(client: GrafanaClient, retries: int | None) -> str:
            client.health(retries=retries)
            try:
                self.before = client.get_dashboard(self.dashboard_uid, retries=retries)
            except GrafanaNotFound:
                self.before = None
            saved = client.upsert_dashboard(self.dashboard_model(), message=self.save_message,
                                            folder_uid=self.folder_uid, retries=retries)
            self.after_version = int(saved.get("version", 0)) or None
            was = f"version {self.before_version}" if self.before else "new"
            return f"dashboard {self.dashboard_uid} saved as version {self.after_version} ({was} before): " \
                   f"{self.save_message}"

        return self._do("update_dashboard", run)

    def annotate(self, event: str, *, weight: int | None = None, step: int | None = None, steps: int | None = None,
                 reason: str | None = None, explanation: str = "") -> Outcome:
        """One annotation: ``started``, ``step`` (with weight), ``promoted`` or ``rolled_back`` (with reason)."""
        text = self.annotation_text(event, weight=weight, step=step, steps=steps, reason=reason,
                                    explanation=explanation)
        tags = self.tags(event)

        def run(client: GrafanaClient, retries: int | None) -> str:
            try:
                client.annotate(dashboard_uid=self.dashboard_uid, text=text, tags=tags, retries=retries)
                where = f"on {self.dashboard_uid}"
            except GrafanaNotFound:  # no such dashboard (its save failed): an organisation annotation
                client.annotate(dashboard_uid=None, text=text, tags=tags, retries=retries)
                where = "for the organisation"
            return f"annotated {where}: {text}"

        return self._do("annotate", run)

    def restore(self) -> Outcome:
        """Put back the dashboard version that was live before the release, if this release changed it."""
        if self.configured and (self.after_version is None or self.before is None):
            why = ("this release did not change the dashboard" if self.after_version is None
                   else "the dashboard did not exist before this release")
            return self._record(Outcome("restore_dashboard", "skipped", f"dashboard not restored: {why}"))

        def run(client: GrafanaClient, retries: int | None) -> str:
            assert self.before is not None
            current = client.get_dashboard(self.dashboard_uid, retries=retries)
            if current.version != self.after_version:
                raise _ChangedMeanwhile(current.version)
            restored = client.restore(self.dashboard_uid, self.before.version, retries=retries)
            self.restored_version = int(restored.get("version", 0)) or None
            return (f"dashboard {self.dashboard_uid} restored to the content of version {self.before.version} "
                    f"(now version {self.restored_version})")

        return self._do("restore_dashboard", run)

    # -- content -----------------------------------------------------------------------------------

    def annotation_text(self, event: str, *, weight: int | None = None, step: int | None = None,
                        steps: int | None = None, reason: str | None = None, explanation: str = "") -> str:
        if event == "started":
            stable = f" (stable: {self.previous_version})" if self.previous_version else ""
            return f"Release started: {self.release_name}{stable}"
        if event == "step":
            of = f" (step {step}/{steps})" if step and steps else ""
            return f"{self.service} {self.version}: canary at {weight}% of {self.environment} traffic{of}"
        if event == "promoted":
            return f"Promoted: {self.service} {self.version} serves all {self.environment} traffic"
        if event == "rolled_back":
            why = f" — {reason}" + (f": {explanation}" if explanation else "") if reason else ""
            return f"Rolled back: {self.service} {self.version} in {self.environment}{why}"
        raise ValueError(f"unknown annotation event {event!r}")

    def dashboard_model(self) -> dict[str, Any]:
        """The deployment dashboard: the generator's (``canaryflow.dashboards``, the same model as the
        checked-in JSON), or the team's own export when ``dashboard_file`` names one; saved on top of
        the live version (so a concurrent edit shows as a 412 and is re-read, never overwritten)."""
        if self.dashboard_file is not None:
            model = json.loads(self.dashboard_file.read_text())
            if isinstance(model.get("dashboard"), dict):  # an export wrapped as {dashboard, meta}
                model = model["dashboard"]
        else:
            model = deployment_overview(self.dashboard_uid).model()
        model["uid"] = self.dashboard_uid
        model.pop("id", None)
        if self.before is not None:
            model["id"] = self.before.model.get("id")
            model["version"] = self.before.version
        else:
            model.pop("version", None)
        tags = list(model.get("tags") or [])
        model["tags"] = tags if TAG in tags else [*tags, TAG]
        return model

    # -- plumbing ----------------------------------------------------------------------------------

    def _do(self, operation: str, action: Any) -> Outcome:
        if self.client is None:
            if self._announced_skip:
                return self._record(Outcome(operation, "skipped"))
            self._announced_skip = True
            return self._record(Outcome(operation, "skipped", "Grafana not configured (CANARYFLOW_GRAFANA_URL "
                                        "unset): no dashboard update or annotations for this release"))
        retries = 0 if self.degraded else None
        try:
            message = action(self.client, retries)
        except GrafanaAuthError as exc:
            return self._record(Outcome(operation, "unauthorized", f"{exc}; the release goes on without it",
                                        logging.ERROR))
        except _ChangedMeanwhile as exc:
            return self._record(Outcome(operation, "skipped", f"dashboard {self.dashboard_uid} not restored: it "
                                        f"was changed after this release saved it (now version {exc.version})",
                                        logging.WARNING))
        except GrafanaError as exc:
            if exc.status is None or exc.status >= 500:
                self.degraded = True
            return self._record(Outcome(operation, "failed", f"{exc}; the release goes on without it",
                                        logging.WARNING))
        except (OSError, ValueError) as exc:  # an unreadable dashboard file
            return self._record(Outcome(operation, "failed", f"grafana {operation}: {type(exc).__name__}: {exc}; "
                                        "the release goes on without it", logging.WARNING))
        return self._record(Outcome(operation, "ok", message))

    def _record(self, outcome: Outcome) -> Outcome:
        self.outcomes.append(outcome)
        if self.metrics is not None:
            self.metrics.monitoring(SYSTEM, outcome.operation, outcome.result)
        return outcome


class _ChangedMeanwhile(Exception):
    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version
