"""``POST /hooks/fleet`` served by uvicorn over real HTTP, starting a run of a real fleet deployment
on a real Prefect server: the server accepts the parameters against the flow's own schema, dedupes
a resend on the key, and a refused delivery creates nothing (no worker: runs stay Scheduled)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from canaryflow.fleet import FleetSpec
from canaryflow.webhook import WebhookConfig, WebhookSecrets, create_app
from tests.integration.served import ServedApp
from tests.integration.test_webhook import count_runs, read_run
from tests.unit.webhook.support import FLEET_SECRET, body_of, fleet_headers

pytestmark = pytest.mark.timeout(420)

FLEET_DEPLOYMENT = "canary-fleet/webhook-it-fleet"


@pytest.fixture(scope="module")
def fleet_deployment(prefect_server) -> str:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from flows.fleet import canary_fleet
    from flows.release import canary_release

    # The children's deployment must exist for the receiver to accept the fleet; another module
    # may already have registered it with its work pool, which is then left as it is.
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name("canary-release/staging")
        except ObjectNotFound:
            canary_release.to_deployment(name="staging").apply()
    return str(canary_fleet.to_deployment(name="webhook-it-fleet", tags=["webhook-it"]).apply())


@pytest.fixture(scope="module")
def receiver(fleet_deployment) -> Iterator[ServedApp]:
    config = WebhookConfig(fleet_deployment=FLEET_DEPLOYMENT, rate_limit_per_second=0)
    with ServedApp(create_app(config, secrets=WebhookSecrets(fleet=SecretStr(FLEET_SECRET)))) as served:
        yield served


def post(served: ServedApp, payload, headers=None) -> httpx.Response:
    body = body_of(payload)
    return httpx.post(f"{served.url}/hooks/fleet", content=body, headers=headers or fleet_headers(body), timeout=15)


def test_a_fleet_delivery_starts_one_scheduled_fleet_run_and_a_resend_returns_it(receiver, fleet_deployment):
    before = count_runs(fleet_deployment)
    version = f"v{uuid.uuid4().hex[:6]}"
    payload = {"version": version, "services": ["checkout", "payments"], "waves": [1, "rest"],
               "spec": {"steps": [50, 100], "step_wait_seconds": 5}}
    body = body_of(payload)
    headers = fleet_headers(body, delivery="pipeline-1")
    first = httpx.post(f"{receiver.url}/hooks/fleet", content=body, headers=headers, timeout=15)
    assert first.status_code == 202, first.text
    resent = httpx.post(f"{receiver.url}/hooks/fleet", content=body,
                        headers={**headers, "x-canaryflow-delivery": "x-2"}, timeout=15)
    assert resent.status_code == 200 and resent.json()["flow_run_id"] == first.json()["flow_run_id"]
    assert count_runs(fleet_deployment) == before + 1
    run = read_run(first.json()["flow_run_id"])
    assert run.state.is_scheduled() and run.name == f"fleet/{version}/staging/2-services"
    assert {"webhook", "source:fleet", "fleet"} <= set(run.tags)
    spec = FleetSpec.model_validate(run.parameters["spec"])
    assert (spec.version, spec.services, spec.waves) == (version, ["checkout", "payments"], [1, "rest"])


def test_refused_fleet_deliveries_create_no_run(receiver, fleet_deployment):
    before = count_runs(fleet_deployment)
    body = body_of({"version": "v2", "services": ["checkout"]})
    answers = [post(receiver, {"version": "v2", "services": ["checkout", 3]}),
               post(receiver, {"version": "v2", "services": ["checkout"], "environment": "production-eu"}),
               httpx.post(f"{receiver.url}/hooks/fleet", content=body, headers={"content-type": "application/json"},
                          timeout=15)]
    assert [a.status_code for a in answers] == [422, 422, 401]
    assert answers[0].json()["fields"] == ["services.1"]
    assert count_runs(fleet_deployment) == before
