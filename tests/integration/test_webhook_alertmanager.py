"""Alertmanager notifications over real HTTP start rollback runs on a real Prefect server.

The rollback flow is registered as a deployment (no worker: runs stay Scheduled) and a release of
the service is put on record as a flow run named like the release flow names its runs. Each test
uses its own service name, so the session's other release runs never answer the lookup.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from canaryflow.webhook import WebhookConfig, WebhookSecrets, create_app
from tests.integration.served import ServedApp
from tests.integration.test_webhook import count_runs, read_run
from tests.unit.webhook.support import ALERTMANAGER_TOKEN, alertmanager_payload, bearer_headers, body_of, firing_alert

pytestmark = pytest.mark.timeout(180)

ROLLBACK = "canary-rollback/alert-it"


@pytest.fixture(scope="module")
def rollback_deployment(prefect_server) -> str:
    from flows.rollback import canary_rollback

    return str(canary_rollback.to_deployment(name="alert-it", tags=["webhook-it"]).apply())


def record_release(service: str, environment: str = "production", version: str = "v2") -> dict:
    """A release run on record, as the release flow names it, with its spec parameter."""
    from prefect.client.orchestration import get_client

    from flows.release import canary_release

    spec = {"service": service, "version": version, "environment": environment, "steps": [25, 100]}
    with get_client(sync_client=True) as client:
        client.create_flow_run(canary_release, name=f"release/{service}/{version}/{environment}",
                               parameters={"spec": spec}, tags=["webhook-it"])
    return spec


@pytest.fixture(scope="module")
def receiver(rollback_deployment) -> Iterator[ServedApp]:
    config = WebhookConfig(rollback_deployment=ROLLBACK, rate_limit_per_second=0)
    with ServedApp(create_app(config, secrets=WebhookSecrets(alertmanager=SecretStr(ALERTMANAGER_TOKEN)))) as served:
        yield served


def post(served: ServedApp, payload: dict, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(served.url + "/hooks/alertmanager", content=body_of(payload),
                      headers=bearer_headers() if headers is None else headers, timeout=15)


def test_firing_alert_starts_one_rollback_run_per_episode(receiver, rollback_deployment, prefect_server):
    service = f"checkout-{uuid.uuid4().hex[:6]}"
    record_release(service, "staging", "v1")
    record_release(service, "production", "v2")
    before = count_runs(rollback_deployment)
    alert = firing_alert(service=service, fingerprint=uuid.uuid4().hex[:16])
    payload = alertmanager_payload(alert, firing_alert(service=service, status="resolved"))

    # A wrong token first: 401, nothing started.
    refused = post(receiver, payload, headers=bearer_headers("not-the-token"))
    assert refused.status_code == 401 and ALERTMANAGER_TOKEN not in refused.text
    assert count_runs(rollback_deployment) == before

    first = post(receiver, payload)
    assert first.status_code == 202, first.text
    [started] = first.json()["runs"]
    assert first.json()["ignored"][0]["reason"].startswith("status 'resolved'")
    assert started["ui_url"] == f"{prefect_server.ui_url}/runs/flow-run/{started['flow_run_id']}"
    run = read_run(started["flow_run_id"])
    assert str(run.deployment_id) == rollback_deployment and run.state.is_scheduled()
    assert run.parameters["reason"] == "alert"
    assert run.parameters["detail"] == "HighErrorRateProduction: Canary of checkout (production) has a 2.5% error rate"
    spec = run.parameters["spec"]
    assert (spec["service"], spec["version"], spec["environment"], spec["steps"]) == (service, "v2", "production",
                                                                                      [25, 100])
    assert run.idempotency_key == f"alertmanager:{alert['fingerprint']}:{alert['startsAt']}"
    assert run.name == f"rollback/{service}/production"

    # Alertmanager's repeat_interval resend: the same run, nothing new.
    again = post(receiver, payload)
    assert again.status_code == 200, again.text
    assert again.json()["runs"][0]["flow_run_id"] == started["flow_run_id"]
    assert count_runs(rollback_deployment) == before + 1

    # The same alert firing again later is a new episode: a new rollback.
    later = post(receiver, alertmanager_payload({**alert, "startsAt": "2026-03-01T12:00:00Z"}))
    assert later.status_code == 202, later.text
    assert later.json()["runs"][0]["flow_run_id"] != started["flow_run_id"]
    assert count_runs(rollback_deployment) == before + 2


def test_alert_for_a_service_never_released_answers_422_and_starts_nothing(receiver, rollback_deployment):
    service = f"unreleased-{uuid.uuid4().hex[:6]}"
    record_release(service, "staging")  # released, but not in the alert's environment
    before = count_runs(rollback_deployment)
    response = post(receiver, alertmanager_payload(firing_alert(service=service, fingerprint=uuid.uuid4().hex[:16])))
    assert response.status_code == 422, response.text
    assert f"{service} (production)" in response.json()["error"]
    assert count_runs(rollback_deployment) == before
