"""The Grafana side of a release (DashboardTracker) against the Grafana API emulator over HTTP."""

from __future__ import annotations

import json
import logging

import pytest

from canaryflow.dashboard_release import DashboardTracker
from canaryflow.dashboards import DEFAULT_UID, render
from canaryflow.grafana import GrafanaClient
from canaryflow.pipeline_metrics import PipelineMetrics
from tests.emulators.grafana import GrafanaEmulator

UID = DEFAULT_UID
BEFORE = {"uid": UID, "title": "Deployments (hand-edited)", "tags": ["team"], "panels": [{"id": 7, "type": "text"}]}


@pytest.fixture
def grafana():
    with GrafanaEmulator() as emulator:
        yield emulator


@pytest.fixture
def metrics() -> PipelineMetrics:
    return PipelineMetrics(service="checkout", environment="production")


def make_tracker(grafana, metrics, *, token=None, dashboard_file=None, **kwargs) -> DashboardTracker:
    client = None if grafana is None else GrafanaClient(grafana.url, token=token or grafana.token, backoff=0)
    return DashboardTracker(client, service="checkout", version="v2", environment="production", run_id="run-1",
                            previous_version="v1", dashboard_uid=UID, dashboard_file=dashboard_file,
                            metrics=metrics, **kwargs)


def count(metrics: PipelineMetrics, operation: str, result: str) -> float:
    return metrics.registry.get_sample_value("canaryflow_monitoring_operations_total", {
        "environment": "production", "system": "grafana", "operation": operation, "result": result}) or 0.0


def seed(grafana) -> None:
    with GrafanaClient(grafana.url, token=grafana.token) as c:
        c.upsert_dashboard(dict(BEFORE), message="by hand")


def test_rolled_back_release_restores_the_version_live_before(grafana, metrics):
    seed(grafana)
    tracker = make_tracker(grafana, metrics)
    outcome = tracker.update_dashboard()
    assert outcome.result == "ok", outcome.message
    assert (tracker.before_version, tracker.after_version) == (1, 2)
    during = grafana.history(UID)[-1]
    assert during["message"] == "canaryflow: release checkout v2 to production (run run-1)"
    assert "canaryflow" in during["model"]["tags"]
    assert tracker.annotate("rolled_back", reason="high_error_rate", explanation="5.00% > 0.10%").result == "ok"
    restored = tracker.restore()
    assert restored.result == "ok" and "content of version 1" in restored.message
    history = grafana.history(UID)
    assert [(h["version"], h["message"]) for h in history] == [
        (1, "by hand"), (2, during["message"]), (3, "Restored from version 1")]
    live = grafana.dashboard(UID)
    assert {k: v for k, v in live.items() if k not in ("id", "version")} == BEFORE
    [note] = grafana.annotations
    assert note["dashboardUID"] == UID
    assert note["tags"] == ["canaryflow", "service:checkout", "version:v2", "environment:production", "rollback"]
    assert note["text"] == "Rolled back: checkout v2 in production — high_error_rate: 5.00% > 0.10%"
    assert count(metrics, "update_dashboard", "ok") == 1 and count(metrics, "restore_dashboard", "ok") == 1


def test_promoted_release_annotates_start_steps_and_promotion(grafana, metrics):
    tracker = make_tracker(grafana, metrics)
    assert tracker.update_dashboard().result == "ok"
    assert tracker.before is None and tracker.after_version == 1
    saved = grafana.dashboard(UID)  # the generator's dashboard, as checked in under monitoring/grafana
    assert {k: v for k, v in saved.items() if k not in ("id", "version", "tags")} == {
        k: v for k, v in json.loads(render(UID)).items() if k not in ("id", "version", "tags")}
    tracker.annotate("started")
    for step, weight in enumerate((10, 50, 100), start=1):
        tracker.annotate("step", weight=weight, step=step, steps=3)
    tracker.annotate("promoted")
    texts = [a["text"] for a in grafana.annotations]
    assert texts == ["Release started: checkout v2 to production (stable: v1)",
                     "checkout v2: canary at 10% of production traffic (step 1/3)",
                     "checkout v2: canary at 50% of production traffic (step 2/3)",
                     "checkout v2: canary at 100% of production traffic (step 3/3)",
                     "Promoted: checkout v2 serves all production traffic"]
    assert [a["tags"][-1] for a in grafana.annotations] == ["release", "step", "step", "step", "promotion"]
    assert count(metrics, "annotate", "ok") == 5


def test_the_checked_in_dashboard_is_saved_on_top_of_the_live_one(grafana, metrics, tmp_path):
    seed(grafana)
    path = tmp_path / "deployment-overview.json"
    path.write_text(json.dumps({"uid": "other-uid", "id": 99, "title": "From the repository", "panels": []}))
    tracker = make_tracker(grafana, metrics, dashboard_file=path)
    assert tracker.update_dashboard().result == "ok"
    live = grafana.dashboard(UID)
    assert live["title"] == "From the repository" and live["uid"] == UID and live["version"] == 2


def test_a_dashboard_new_with_the_release_is_not_restored(grafana, metrics):
    tracker = make_tracker(grafana, metrics)
    tracker.update_dashboard()
    outcome = tracker.restore()
    assert outcome.result == "skipped" and "did not exist before" in outcome.message
    assert len(grafana.history(UID)) == 1


def test_a_dashboard_edited_during_the_release_is_not_clobbered(grafana, metrics):
    seed(grafana)
    tracker = make_tracker(grafana, metrics)
    tracker.update_dashboard()
    with GrafanaClient(grafana.url, token=grafana.token) as someone:
        someone.upsert_dashboard({**grafana.dashboard(UID), "title": "edited meanwhile"}, message="edit")
    outcome = tracker.restore()
    assert outcome.result == "skipped" and outcome.level == logging.WARNING
    assert grafana.dashboard(UID)["title"] == "edited meanwhile"


def test_unconfigured_grafana_is_skipped_and_announced_once(metrics):
    tracker = make_tracker(None, metrics)
    outcomes = [tracker.update_dashboard(), tracker.annotate("started"), tracker.annotate("rolled_back"),
                tracker.restore()]
    assert [o.result for o in outcomes] == ["skipped"] * 4
    assert [bool(o.message) for o in outcomes] == [True, False, False, False]
    assert "not configured" in outcomes[0].message
    assert count(metrics, "update_dashboard", "skipped") == 1 and count(metrics, "annotate", "skipped") == 2


def test_an_unavailable_grafana_fails_softly_and_stops_retrying(grafana, metrics):
    grafana.fail_all(500)
    tracker = make_tracker(grafana, metrics)
    first = tracker.update_dashboard()
    assert first.result == "failed" and first.level == logging.WARNING
    assert "unavailable after 4 attempt(s)" in first.message and "the release goes on" in first.message
    grafana.requests.clear()
    second = tracker.annotate("started")
    assert second.result == "failed" and len(grafana.requests) == 1  # degraded: one attempt, no retries
    assert tracker.restore().result == "skipped"  # nothing was changed, nothing to put back
    assert count(metrics, "update_dashboard", "failed") == 1 and count(metrics, "annotate", "failed") == 1


def test_annotations_fall_back_to_the_organisation_without_the_dashboard(grafana, metrics):
    tracker = make_tracker(grafana, metrics)
    outcome = tracker.annotate("rolled_back", reason="smoke_test_failed")
    assert outcome.result == "ok" and "for the organisation" in outcome.message
    assert grafana.annotations[0]["dashboardUID"] == ""


@pytest.mark.parametrize("which, status", [("bad", 401), ("viewer", 403)])
def test_refused_tokens_are_errors_that_never_show_the_token(grafana, metrics, which, status):
    seed(grafana)
    token = "glsa_not_a_valid_token_123456789" if which == "bad" else grafana.viewer_token
    tracker = make_tracker(grafana, metrics, token=token)
    outcomes = [tracker.update_dashboard(), tracker.annotate("started")]
    for outcome in outcomes:
        assert outcome.result == "unauthorized" and outcome.level == logging.ERROR
        assert f"HTTP {status}" in outcome.message and "the release goes on" in outcome.message
        assert token not in outcome.message
    assert token not in repr(tracker)
    assert count(metrics, "update_dashboard", "unauthorized") == 1
    assert len(grafana.history(UID)) == 1 and grafana.annotations == []
