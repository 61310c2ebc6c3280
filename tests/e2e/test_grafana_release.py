"""Real releases against the local platform with the Grafana API emulator as Grafana.

The flow finds Grafana as a deployment would: ``CANARYFLOW_GRAFANA_URL`` and the token from
``CANARYFLOW_GRAFANA_TOKEN`` or a Prefect Secret block named by ``CANARYFLOW_GRAFANA_TOKEN_BLOCK``.
"""

from __future__ import annotations

import pytest

from canaryflow.dashboards import DEFAULT_UID
from canaryflow.release import ReleaseRolledBack
from flows.release import canary_release
from tests.e2e.conftest import FAST_SPEC, controller_state, prom_value
from tests.emulators.grafana import GrafanaEmulator

pytestmark = pytest.mark.e2e

UID = DEFAULT_UID
TAGS = ["canaryflow", "service:checkout", "environment:production"]
#: The dashboard as it was before any release touched it (no ``canaryflow`` tag, one text panel).
HAND_MADE = {"uid": UID, "title": "Deployments (by hand)", "tags": ["team-payments"],
             "panels": [{"id": 1, "type": "text", "title": "runbook"}]}


@pytest.fixture
def grafana(monkeypatch):
    with GrafanaEmulator() as emulator:
        monkeypatch.setenv("CANARYFLOW_GRAFANA_URL", emulator.url)
        monkeypatch.setenv("CANARYFLOW_GRAFANA_TOKEN", emulator.token)
        yield emulator


def release(version: str, **changes):
    state = canary_release({**FAST_SPEC, "version": version, **changes}, return_state=True)
    return state, state.result(raise_on_failure=False)


def annotations(grafana: GrafanaEmulator, *tags: str) -> list[dict]:
    return [a for a in grafana.annotations if set(tags) <= set(a["tags"])]


def test_rolled_back_release_restores_the_dashboard_and_annotates_why(stack, prefect_server, grafana):
    from canaryflow.grafana import GrafanaClient

    with GrafanaClient(grafana.url, token=grafana.token) as client:
        client.upsert_dashboard(dict(HAND_MADE), message="made by hand")
    state, outcome = release("v3-errors")
    assert state.is_failed() and isinstance(outcome, ReleaseRolledBack)
    assert outcome.reason == "high_error_rate"
    assert controller_state(stack)["stable"]["version"] == "v1"

    history = grafana.history(UID)
    assert [h["message"] for h in history] == [
        "made by hand", f"canaryflow: release checkout v3-errors to production (run {state.state_details.flow_run_id})",
        "Restored from version 1"]
    assert "canaryflow" in history[1]["model"]["tags"]  # the release saved its own dashboard
    assert history[1]["model"]["panels"] != HAND_MADE["panels"]
    live = grafana.dashboard(UID)
    assert {k: v for k, v in live.items() if k not in ("id", "version")} == HAND_MADE
    assert live["version"] == 3 and history[-1]["restoredFrom"] == 1

    [rollback] = annotations(grafana, *TAGS, "version:v3-errors", "rollback")
    assert rollback["dashboardUID"] == UID
    assert rollback["text"].startswith("Rolled back: checkout v3-errors in production — high_error_rate: ")
    assert len(annotations(grafana, "version:v3-errors", "release")) == 1
    assert [a["text"] for a in annotations(grafana, "version:v3-errors", "step")] == [
        "checkout v3-errors: canary at 10% of production traffic (step 1/3)"]
    assert not annotations(grafana, "promotion")
    prom_value(stack, 'canaryflow_monitoring_operations_total{system="grafana",operation="restore_dashboard",'
                      'result="ok"}', until=lambda v: v >= 1)


def test_promoted_release_with_the_token_from_a_secret_block_annotates_and_never_logs_it(
        stack, prefect_server, grafana, monkeypatch):
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    Secret(value=grafana.token).save("grafana-token-e2e", overwrite=True)
    monkeypatch.delenv("CANARYFLOW_GRAFANA_TOKEN")
    monkeypatch.setenv("CANARYFLOW_GRAFANA_TOKEN_BLOCK", "grafana-token-e2e")

    state, summary = release("v2")
    assert state.is_completed(), state.message
    assert summary["status"] == "promoted"

    mine = annotations(grafana, *TAGS, "version:v2")
    assert [a["tags"][-1] for a in sorted(mine, key=lambda a: a["id"])] == [
        "release", "step", "step", "step", "promotion"]
    assert all(a["dashboardUID"] == UID for a in mine)
    assert grafana.history(UID)[-1]["message"].startswith("canaryflow: release checkout v2 to production")
    assert grafana.authorizations and set(grafana.authorizations) == {f"Bearer {grafana.token}"}

    APILogWorker.drain_all(timeout=10)
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])), limit=200)
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        run = client.read_flow_run(run_id)
    messages = [log.message for log in logs]
    assert any(f"dashboard {UID} saved as version" in m for m in messages), messages
    assert any(m.startswith("annotated on") and "Promoted: checkout v2" in m for m in messages), messages
    texts = messages + [str(a.data) + str(a.description) for a in artifacts] + [str(run.parameters)]
    assert not [t for t in texts if grafana.token in t]


def test_grafana_down_never_blocks_a_release_and_the_misses_are_counted(stack, prefect_server, grafana):
    grafana.fail_all(500)
    state, summary = release("v2")
    assert state.is_completed(), state.message
    assert summary["status"] == "promoted"
    assert controller_state(stack)["stable"]["version"] == "v2"
    assert grafana.annotations == [] and grafana.dashboards == {}
    failed = 'canaryflow_monitoring_operations_total{service="checkout",system="grafana",result="failed"}'
    prom_value(stack, f'sum({failed})', until=lambda v: v >= 5)  # update + start + 3 steps + promotion
    prom_value(stack, 'canaryflow_monitoring_operations_total{system="grafana",operation="update_dashboard",'
                      'result="failed"}', until=lambda v: v == 1)
