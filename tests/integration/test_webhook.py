"""The webhook receiver served by uvicorn over real HTTP, starting runs on a real Prefect server.

A real deployment of the canary-release flow is registered per test module (no worker: runs stay
Scheduled, which is all a receiver is responsible for). Every rejected request is checked against
the Prefect API: the deployment's flow-run count does not move.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from pydantic import SecretStr

from canaryflow.errors import ConfigError
from canaryflow.webhook import WebhookConfig, WebhookSecrets, create_app, resolve_secrets
from canaryflow.webhook.replay import signed_key
from canaryflow.webhook.signatures import generic_message
from tests.integration.served import ServedApp
from tests.unit.webhook.support import (
    ALL_SECRETS,
    GENERIC_SECRET,
    GITHUB_SECRET,
    GITLAB_TOKEN,
    body_of,
    generic_headers,
    github_deployment,
    github_headers,
    gitlab_headers,
    gitlab_pipeline,
)

# The first test of a session also waits for the PostgreSQL-backed server: initdb and Prefect's
# migrations on PostgreSQL take 1-3 min on a busy 2-core machine, inside that test's timeout.
pytestmark = pytest.mark.timeout(420)

TEMPLATE = "canary-release/webhook-it-{environment}"
SECRETS = WebhookSecrets(github=SecretStr(GITHUB_SECRET), gitlab=SecretStr(GITLAB_TOKEN),
                         generic=SecretStr(GENERIC_SECRET))
CAP = 8192


@pytest.fixture(scope="module")
def deployments(prefect_server) -> dict[str, str]:
    from flows.release import canary_release

    ids = {}
    for environment in ("staging", "production"):
        deployment = canary_release.to_deployment(name=f"webhook-it-{environment}", tags=["webhook-it"])
        ids[environment] = str(deployment.apply())
    return ids


def count_runs(deployment_id: str) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        return client.count_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[uuid.UUID(deployment_id)])))


def read_run(flow_run_id: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(uuid.UUID(flow_run_id))


@pytest.fixture(scope="module")
def receiver(deployments) -> Iterator[ServedApp]:
    config = WebhookConfig(deployment_template=TEMPLATE, max_body_bytes=CAP, rate_limit_per_second=0)
    with ServedApp(create_app(config, secrets=SECRETS)) as served:
        yield served


def post(served: ServedApp, path: str, body, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(served.url + path, content=body, headers=headers, timeout=15)


def test_signed_delivery_starts_one_scheduled_run_and_redelivery_returns_it(receiver, deployments,
                                                                            prefect_server):
    before = count_runs(deployments["staging"])
    payload = {"service": "checkout", "version": "v2", "environment": "staging",
               "spec": {"steps": [20, 100], "step_wait_seconds": 5}}
    body = body_of(payload)
    delivery = f"{uuid.uuid4().hex[:8]}-1"
    headers = generic_headers(body, delivery=delivery)
    first = post(receiver, "/hooks/generic", body, headers)
    assert first.status_code == 202, first.text
    data = first.json()
    assert data["duplicate"] is False and data["deployment"] == "canary-release/webhook-it-staging"
    assert data["ui_url"] == f"{prefect_server.ui_url}/runs/flow-run/{data['flow_run_id']}"

    run = read_run(data["flow_run_id"])
    assert str(run.deployment_id) == deployments["staging"]
    assert run.state.is_scheduled()
    assert run.name == data["flow_run_name"] == "release/checkout/v2/staging"
    assert run.idempotency_key == data["idempotency_key"] == signed_key(
        "generic", generic_message(headers["x-canaryflow-timestamp"], body))
    assert {"webhook", "source:generic", "service:checkout", "environment:staging"} <= set(run.tags)
    spec = run.parameters["spec"]
    assert (spec["steps"], spec["step_wait_seconds"], spec["thresholds"]["max_error_rate"]) == ([20, 100], 5, 0.01)

    # A redelivery (the same signed request, as curl --retry resends it) returns the same run.
    again = post(receiver, "/hooks/generic", body, headers)
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True and again.json()["flow_run_id"] == data["flow_run_id"]
    assert count_runs(deployments["staging"]) == before + 1


def test_github_and_gitlab_deliveries_start_runs_per_environment(receiver, deployments):
    before = count_runs(deployments["production"])
    body = body_of(github_deployment(version="v7", environment="production"))
    delivery = str(uuid.uuid4())
    first = post(receiver, "/hooks/github", body, github_headers(body, delivery=delivery))
    assert first.status_code == 202, first.text
    # GitHub's "Redeliver" resends the same body and delivery id.
    second = post(receiver, "/hooks/github", body, github_headers(body, delivery=delivery))
    assert second.status_code == 200 and second.json()["flow_run_id"] == first.json()["flow_run_id"]
    assert count_runs(deployments["production"]) == before + 1
    assert str(read_run(first.json()["flow_run_id"]).deployment_id) == deployments["production"]

    before = count_runs(deployments["staging"])
    body = body_of(gitlab_pipeline(tag=f"v{uuid.uuid4().hex[:6]}"))
    response = post(receiver, "/hooks/gitlab", body, gitlab_headers())
    assert response.status_code == 202, response.text
    assert count_runs(deployments["staging"]) == before + 1


def test_concurrent_copies_of_one_delivery_make_one_run(receiver, deployments):
    before = count_runs(deployments["staging"])
    body = body_of({"service": "checkout", "version": "v3"})
    signed = generic_headers(body)
    headers = [{**signed, "x-canaryflow-delivery": f"{uuid.uuid4().hex[:8]}-{i}"} for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda h: post(receiver, "/hooks/generic", body, h), headers))
    assert sorted(a.status_code for a in answers) == [200] * 5 + [202], [a.text for a in answers]
    assert len({a.json()["flow_run_id"] for a in answers}) == 1
    assert count_runs(deployments["staging"]) == before + 1


def test_rejected_requests_start_no_run(receiver, deployments):
    staging, production = deployments["staging"], deployments["production"]
    before = (count_runs(staging), count_runs(production))
    body = body_of({"service": "checkout", "version": "v4"})
    gh_body = body_of(github_deployment(version="v4"))
    big = body_of({"service": "checkout", "version": "v4", "spec": {"smoke": [{"path": "/" + "x" * CAP}]}})
    stale = generic_headers(body, timestamp=int(time.time()) - 900)  # a genuine signature, replayed late

    def chunks():
        for _ in range(4):
            yield big[: CAP // 2 + 1]

    cases = [
        ("forged github", "/hooks/github", gh_body, github_headers(gh_body, secret="guessed"), 401),
        ("unsigned github", "/hooks/github", gh_body,
         {k: v for k, v in github_headers(gh_body).items() if k != "x-hub-signature-256"}, 401),
        ("stale generic replay", "/hooks/generic", body, stale, 401),
        ("future generic", "/hooks/generic", body, generic_headers(body, timestamp=int(time.time()) + 900), 401),
        ("wrong gitlab token", "/hooks/gitlab", body, gitlab_headers(token="guess"), 401),
        ("oversized", "/hooks/generic", big, generic_headers(big), 413),
        ("oversized chunked", "/hooks/generic", chunks(), generic_headers(big), 413),
        ("malformed json", "/hooks/generic", b'{"service": ', generic_headers(b'{"service": '), 400),
        ("spec-invalid", "/hooks/generic", body_of({"service": "x", "version": "v1", "environment": "qa"}),
         generic_headers(body_of({"service": "x", "version": "v1", "environment": "qa"})), 422),
        ("ignored event", "/hooks/github", body_of({"zen": 1}), github_headers(body_of({"zen": 1}), event="star"),
         202),
    ]
    for name, path, content, headers, status in cases:
        response = post(receiver, path, content, headers)
        assert response.status_code == status, (name, response.status_code, response.text)
        assert "flow_run_id" not in response.json(), name
    assert (count_runs(staging), count_runs(production)) == before


def test_rate_limit_unknown_route_and_healthz_over_http(deployments):
    config = WebhookConfig(deployment_template=TEMPLATE, rate_limit_per_second=0.5, rate_limit_burst=2)
    with ServedApp(create_app(config, secrets=SECRETS)) as served:
        before = count_runs(deployments["staging"])
        statuses = []
        for n in range(3):
            body = body_of({"service": "ratelimited", "version": f"v{n}"})
            response = post(served, "/hooks/generic", body, generic_headers(body))
            statuses.append(response.status_code)
        assert statuses == [202, 202, 429]
        assert int(response.headers["retry-after"]) >= 1
        assert count_runs(deployments["staging"]) == before + 2
        assert httpx.post(f"{served.url}/hooks/travis", content=b"{}").status_code == 404
        assert httpx.get(f"{served.url}/healthz").json() == {"status": "ok"}


def test_secret_from_prefect_block(prefect_server, deployments):
    from prefect.blocks.system import Secret

    Secret(value="block-held-secret-XYZ").save("webhook-it-generic", overwrite=True)
    secrets = resolve_secrets(WebhookConfig(generic_secret_block="webhook-it-generic"))
    assert secrets.get("generic") == "block-held-secret-XYZ" and "XYZ" not in repr(secrets)
    with pytest.raises(ConfigError) as info:
        resolve_secrets(WebhookConfig(gitlab_token_block="webhook-it-missing"))
    assert info.value.fields == ("gitlab_secret_block",)

    config = WebhookConfig(deployment_template=TEMPLATE, generic_secret_block="webhook-it-generic")
    with ServedApp(create_app(config)) as served:
        body = body_of({"service": "blocksigned", "version": "v1"})
        ok = post(served, "/hooks/generic", body, generic_headers(body, secret="block-held-secret-XYZ"))
        assert ok.status_code == 202, ok.text
        assert post(served, "/hooks/generic", body, generic_headers(body)).status_code == 401


def test_no_secret_in_responses_or_logs(receiver, caplog):
    caplog.set_level(logging.DEBUG)
    body = body_of({"service": "checkout", "version": "v5"})
    answers = [
        post(receiver, "/hooks/generic", body, generic_headers(body)),
        post(receiver, "/hooks/generic", body, generic_headers(body, secret=GENERIC_SECRET[:-1])),
        post(receiver, "/hooks/gitlab", body, gitlab_headers(token=GITLAB_TOKEN + "!")),
        post(receiver, "/hooks/github", body, github_headers(body, secret=GITHUB_SECRET.upper())),
    ]
    assert [a.status_code for a in answers] == [202, 401, 401, 401]
    logged = caplog.text + json.dumps([str(r.args) for r in caplog.records])
    assert "canaryflow.webhook" in caplog.text
    for secret in ALL_SECRETS:
        for text in [logged] + [a.text + json.dumps(dict(a.headers)) for a in answers]:
            assert secret not in text and secret[:-1] not in text and secret.upper() not in text
