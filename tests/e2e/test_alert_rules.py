"""Our alert rules and dashboard queries in the real Prometheus, fed by a real rolled-back release.

The local stack loads ``monitoring/prometheus/alerts.yml`` through ``rule_files`` and evaluates
rules at its 1 s scrape interval; DeploymentRollbackDetected has no ``for``, so it fires on the first
evaluation that sees the rollback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from canaryflow.local.stack import LocalStack
from canaryflow.release import ReleaseRolledBack
from flows.release import canary_release
from tests.e2e.conftest import FAST_SPEC, prom_value

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "monitoring" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "monitoring" / "grafana" / "deployment-overview.json"
#: Grafana's variables and macros as the dashboard would send them with "All" selected.
GRAFANA_VALUES = {"$__rate_interval": "1m", "$__range_s": "3600", "$__range": "1h", "$environment": ".*",
                  "$service": ".*"}


@pytest.fixture(scope="module")
def rolled_back(tmp_path_factory, prefect_server) -> Iterator[tuple[LocalStack, Any, dict[str, Any]]]:
    """One stack with our rules, one rolled-back release of v3-errors (5% errors), for every test here.

    Yields the stack, the release's outcome, and the rules Prometheus loaded before the release."""
    with pytest.MonkeyPatch.context() as monkeypatch, \
            LocalStack(service="checkout", stable="v1", rps=100, workdir=tmp_path_factory.mktemp("stack"),
                       rule_files=[ALERTS]) as stack:
        for name, value in stack.settings_env().items():
            monkeypatch.setenv(name, value)
        groups = api(stack, "rules")["groups"]
        rules = {r["name"]: r for g in groups for r in g["rules"]}
        assert not [a for a in api(stack, "alerts")["alerts"] if a["state"] == "firing"]
        state = canary_release({**FAST_SPEC, "version": "v3-errors"}, return_state=True)
        yield stack, state.result(raise_on_failure=False), rules


def api(stack: LocalStack, path: str, **params: str) -> Any:
    body = httpx.get(f"{stack.prometheus_url}/api/v1/{path}", params=params, timeout=5).json()
    assert body["status"] == "success", body
    return body["data"]


def wait_for_alert(stack: LocalStack, name: str, *, timeout: float = 20) -> dict[str, Any]:
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        seen = api(stack, "alerts")["alerts"]
        for alert in seen:
            if alert["labels"]["alertname"] == name and alert["state"] == "firing":
                return alert
        time.sleep(0.5)
    raise AssertionError(f"{name} never fired; alerts: {seen}")


def test_rollback_fires_deployment_rollback_detected(rolled_back):
    stack, outcome, loaded = rolled_back
    assert len(loaded) == 9 and all(r["health"] != "err" for r in loaded.values()), loaded
    assert isinstance(outcome, ReleaseRolledBack) and outcome.reason == "high_error_rate"

    alert = wait_for_alert(stack, "DeploymentRollbackDetected")
    assert alert["labels"] == {"alertname": "DeploymentRollbackDetected", "severity": "critical",
                               "service": "checkout", "environment": "production", "reason": "high_error_rate"}
    assert alert["annotations"]["summary"] == "checkout (production) rolled back: high_error_rate"
    assert alert["annotations"]["runbook_url"] == "monitoring/runbooks.md#deploymentrollbackdetected"
    # The canary took traffic for seconds, far less than HighErrorRateProduction's 1m: it never fires,
    # and after the rollback (traffic 0) its condition is false.
    firing = {a["labels"]["alertname"] for a in api(stack, "alerts")["alerts"] if a["state"] == "firing"}
    assert "HighErrorRateProduction" not in firing
    assert api(stack, "query", query=loaded["HighErrorRateProduction"]["query"])["result"] == []


def test_dashboard_queries_run_in_the_real_prometheus(rolled_back):
    stack, outcome, _ = rolled_back
    assert isinstance(outcome, ReleaseRolledBack)
    prom_value(stack, 'deployment_rollback_total{service="checkout",reason="high_error_rate"}',
               until=lambda v: v >= 1)

    model = json.loads(DASHBOARD.read_text())
    results: dict[str, list[dict[str, Any]]] = {}
    for panel in model["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in GRAFANA_VALUES.items():
                expr = expr.replace(name, value)
            results[panel["title"]] = api(stack, "query", query=expr)["result"]  # a bad query raises
    reasons = {r["metric"]["reason"]: float(r["value"][1]) for r in results["Rollback reasons"]}
    assert set(reasons) == {"high_error_rate"} and reasons["high_error_rate"] > 0
    not_restored = results["Not restored for"]
    assert [r["metric"]["service"] for r in not_restored] == ["checkout"]
    assert float(not_restored[0]["value"][1]) >= 0
    assert float(results["Rollback rate"][0]["value"][1]) == pytest.approx(1.0)
