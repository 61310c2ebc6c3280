"""A firing alert rolls the service back: a real Alertmanager notifies the receiver, which starts a
run of prefect.yaml's `canary-rollback/manual` deployment on the real Prefect server.

The alert is posted to Alertmanager's own API (what Prometheus does when a rule fires), so the test
does not wait out the rules' `for:` durations. No worker runs here: the rollback run stays
Scheduled, and it is deleted at teardown so a later test's worker never executes it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr

from canaryflow.local import procs
from canaryflow.webhook import WebhookConfig, WebhookSecrets, create_app
from tests.integration.served import ServedApp

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
TOKEN = f"am-e2e-{uuid.uuid4().hex}"
DEADLINE_SECONDS = 30


def alertmanager_config(receiver_url: str) -> dict[str, Any]:
    """What an operator writes: one receiver, the canary alerts routed to it, a bearer token."""
    return {
        "route": {"receiver": "canaryflow", "group_by": ["alertname", "service", "environment"],
                  "group_wait": "0s", "group_interval": "1s", "repeat_interval": "2s"},
        "receivers": [{"name": "canaryflow", "webhook_configs": [{
            "url": f"{receiver_url}/hooks/alertmanager", "send_resolved": True,
            "http_config": {"authorization": {"type": "Bearer", "credentials": TOKEN}}}]}],
    }


@pytest.fixture
def alertmanager(tmp_path: Path, receiver: ServedApp) -> Iterator[str]:
    if not Path(ALERTMANAGER).exists():
        pytest.skip("prometheus-alertmanager is not installed")
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(alertmanager_config(receiver.url)))
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    proc = procs.spawn([ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
                        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                        f"--web.external-url={url}", "--log.level=debug"],
                       log_path=tmp_path / "alertmanager.log")
    try:
        procs.wait_http(f"{url}/-/ready", 20, proc=proc)
        yield url
    finally:
        procs.stop(proc)


@pytest.fixture
def receiver(deployments) -> Iterator[ServedApp]:
    config = WebhookConfig(rate_limit_per_second=0)  # default rollback deployment: canary-rollback/manual
    with ServedApp(create_app(config, secrets=WebhookSecrets(alertmanager=SecretStr(TOKEN)))) as served:
        yield served


def client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def rollback_runs(marker: str) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with client() as c:
        deployment = c.read_deployment_by_name("canary-rollback/manual")
        runs = c.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
    return [run for run in runs if marker in run.parameters.get("detail", "")]


def webhook_notifications(alertmanager: str) -> tuple[float, float]:
    """(sent, failed) webhook notifications, from Alertmanager's own metrics."""
    sent = failed = 0.0
    for line in httpx.get(f"{alertmanager}/metrics", timeout=5).text.splitlines():
        if 'integration="webhook"' in line:
            if line.startswith("alertmanager_notifications_total"):
                sent += float(line.rsplit(" ", 1)[1])
            elif line.startswith("alertmanager_notifications_failed_total"):
                failed += float(line.rsplit(" ", 1)[1])
    return sent, failed


@pytest.fixture
def release_on_record(deployments) -> Iterator[dict[str, Any]]:
    from flows.release import canary_release

    spec = {"service": "checkout", "version": "v2", "environment": "production"}
    with client() as c:
        run = c.create_flow_run(canary_release, name="release/checkout/v2/production", parameters={"spec": spec},
                                tags=["alertmanager-e2e"])
    yield spec
    with client() as c:
        c.delete_flow_run(run.id)


def test_a_firing_alert_in_alertmanager_starts_one_rollback_run(release_on_record, alertmanager):
    marker = uuid.uuid4().hex[:12]
    alert = {"labels": {"alertname": "HighErrorRateProduction", "service": "checkout", "environment": "production",
                        "severity": "critical"},
             "annotations": {"summary": f"Canary of checkout (production) has a 2.5% error rate [{marker}]"}}
    started: list[Any] = []
    try:
        answer = httpx.post(f"{alertmanager}/api/v2/alerts", json=[alert], timeout=5)
        assert answer.status_code == 200, answer.text

        deadline = time.monotonic() + DEADLINE_SECONDS
        while not started and time.monotonic() < deadline:
            started = rollback_runs(marker)
            time.sleep(0.3)
        assert started, f"no rollback run within {DEADLINE_SECONDS} s"
        [run] = started
        assert run.parameters["reason"] == "alert"
        assert run.parameters["detail"].startswith("HighErrorRateProduction: Canary of checkout (production)")
        spec = run.parameters["spec"]
        assert (spec["service"], spec["environment"]) == ("checkout", "production")
        [active] = httpx.get(f"{alertmanager}/api/v2/alerts", params={"filter": 'alertname="HighErrorRateProduction"'},
                             timeout=5).json()
        assert run.idempotency_key.startswith(f"alertmanager:{active['fingerprint']}:")
        assert {"source:alertmanager", "service:checkout", "environment:production"} <= set(run.tags)

        # repeat_interval 2s: Alertmanager notifies again; the receiver answers with the same run.
        while webhook_notifications(alertmanager)[0] < 2 and time.monotonic() < deadline:
            time.sleep(0.3)
        sent, failed = webhook_notifications(alertmanager)
        assert sent >= 2 and failed == 0, (sent, failed)
        assert [r.id for r in rollback_runs(marker)] == [run.id]
    finally:
        with client() as c:
            for found in started or rollback_runs(marker):
                c.delete_flow_run(found.id)
