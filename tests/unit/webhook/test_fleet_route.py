"""``POST /hooks/fleet`` over ASGI with an in-memory starter: a signed fleet delivery starts one run
of the fleet deployment with the services and version it names; anything else starts nothing."""

from __future__ import annotations

import logging
import time

from pydantic import SecretStr

from canaryflow.fleet import FleetSpec
from canaryflow.webhook import WebhookSecrets
from canaryflow.webhook.replay import signed_key
from canaryflow.webhook.signatures import generic_message
from canaryflow.webhook.starter import InMemoryStarter, StarterUnavailable
from tests.unit.webhook.support import (
    ALL_SECRETS,
    FLEET_SECRET,
    GENERIC_SECRET,
    body_of,
    fleet_headers,
    generic_headers,
)
from tests.unit.webhook.test_app import SECRETS, assert_refused_401, make, run, send

FLEET_SECRETS = WebhookSecrets(github=SECRETS.github, gitlab=SECRETS.gitlab, generic=SECRETS.generic,
                               fleet=SecretStr(FLEET_SECRET))
FLEET = {"version": "v2", "environment": "production", "services": ["checkout", "payments", "search"],
         "waves": [1, "rest"], "max_concurrency": 2, "spec": {"steps": [25, 100], "step_wait_seconds": 5}}
DEPLOYMENTS = ("canary-fleet/fleet", "canary-release/staging", "canary-release/production")


def fleet_app(**config):
    return make(InMemoryStarter(deployments=DEPLOYMENTS), secrets=FLEET_SECRETS, **config)


def post_fleet(app, payload=FLEET, *, route="/hooks/fleet", **header_kwargs):
    body = body_of(payload)
    return run(send(app, "POST", route, content=body, headers=fleet_headers(body, **header_kwargs)))


def test_a_signed_fleet_delivery_starts_one_run_of_the_fleet_deployment():
    app, starter = fleet_app()
    ts = int(time.time())
    response = post_fleet(app, delivery="pipeline-9-1", timestamp=ts)
    answer = response.json()
    assert (response.status_code, answer["duplicate"], answer["delivery"]) == (202, False, "pipeline-9-1"), answer
    assert answer["deployment"] == "canary-fleet/fleet"
    assert answer["release_deployment"] == "canary-release/production"
    assert answer["flow_run_name"] == "fleet/v2/production/3-services"
    assert answer["services"] == FLEET["services"]
    assert answer["waves"] == [["checkout"], ["payments", "search"]]
    # The key is the fleet route's own digest of what was signed, "<timestamp>.<body>".
    assert answer["idempotency_key"] == signed_key("fleet", generic_message(ts, body_of(FLEET)))
    [stored] = starter.runs.values()
    request = stored["request"]
    assert request.deployment == "canary-fleet/fleet"
    spec = FleetSpec.model_validate(request.parameters["spec"])  # what flows/fleet.py receives
    assert (spec.version, spec.environment, spec.services) == ("v2", "production", FLEET["services"])
    assert (spec.waves, spec.max_concurrency, spec.stop_on_rollback) == ([1, "rest"], 2, True)
    assert spec.spec == FLEET["spec"] and spec.deployment == "canary-release/{environment}"
    assert set(request.tags) == {"webhook", "source:fleet", "fleet", "version:v2", "environment:production"}


def test_a_resent_fleet_delivery_is_the_same_run_and_a_new_signing_a_new_one():
    app, starter = fleet_app()
    ts = int(time.time())
    first = post_fleet(app, timestamp=ts, delivery="a-1")
    again = post_fleet(app, timestamp=ts, delivery="forged-2")  # a resend, any delivery id
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["duplicate"] is True and again.json()["flow_run_id"] == first.json()["flow_run_id"]
    rerun = post_fleet(app, timestamp=ts - 1)  # the CI job re-run: signed anew
    assert rerun.status_code == 202 and len(starter.runs) == 2


def test_unsigned_or_wrongly_signed_fleet_deliveries_are_401_and_start_nothing():
    app, starter = fleet_app()
    body = body_of(FLEET)
    good = fleet_headers(body)
    unsigned = {k: v for k, v in good.items() if k not in ("x-canaryflow-signature", "x-canaryflow-timestamp")}
    cases = [(unsigned, "signature missing"),
             ({k: v for k, v in good.items() if k != "x-canaryflow-signature"}, "signature missing"),
             (generic_headers(body, secret=GENERIC_SECRET), "signature invalid"),  # the generic secret is not enough
             (fleet_headers(body, timestamp=int(time.time()) - 301), "signature invalid"),
             ({**good, "x-canaryflow-signature": "sha256=" + "0" * 64}, "signature invalid")]
    assert_refused_401(app, "/hooks/fleet", body, good, cases)
    assert starter.runs == {}


def test_the_fleet_route_without_its_secret_is_disabled():
    app, starter = make(InMemoryStarter(), secrets=SECRETS)  # generic secret set, fleet's not
    assert post_fleet(app).status_code == 401
    body = body_of(FLEET)
    response = run(send(app, "POST", "/hooks/fleet", content=body, headers=generic_headers(body)))
    assert response.status_code == 401 and starter.runs == {}


def test_malformed_services_are_422_naming_the_field():
    app, starter = fleet_app(max_fleet_services=5)
    cases = {
        ("services",): [{"version": "v2"}, {"version": "v2", "services": "checkout"},
                        {"version": "v2", "services": {"checkout": True}},
                        {"version": "v2", "services": ["Checkout"]},  # not a DNS label
                        {"version": "v2", "services": ["checkout", "checkout"]},
                        {"version": "v2", "services": []},
                        {"version": "v2", "services": [f"s{i}" for i in range(6)]}],  # over the cap
        ("services.1",): [{"version": "v2", "services": ["checkout", 7]},
                          {"version": "v2", "services": ["checkout", None]}],
        ("waves.0",): [{"version": "v2", "services": ["checkout"], "waves": [0]}],
        ("waves",): [{"version": "v2", "services": ["checkout"], "waves": ["rest", 1]}],
        ("max_concurrency",): [{"version": "v2", "services": ["checkout"], "max_concurrency": 0}],
        ("version",): [{"services": ["checkout"]}, {"version": 2, "services": ["checkout"]}],
        ("spec.steps",): [{"version": "v2", "services": ["checkout"], "spec": {"steps": [150]}}],
        ("spec",): [{"version": "v2", "services": ["checkout"], "spec": {"service": "payments"}},
                    {"version": "v2", "services": ["checkout"], "spec": [1]}],
        ("deployment",): [{"version": "v2", "services": ["checkout"], "deployment": "other/flow"}],
        ("service",): [{"service": "checkout", "version": "v2"}],  # a generic body is not a fleet
    }
    for fields, payloads in cases.items():
        for payload in payloads:
            response = post_fleet(app, payload)
            assert response.status_code == 422, (payload, response.text)
            answer = response.json()
            assert fields[0] in answer["fields"], (payload, answer)
            assert answer["error"]
    assert starter.runs == {}


def test_spec_overrides_can_be_disabled_and_the_base_spec_fills_the_rest(tmp_path):
    app, starter = fleet_app(allow_spec_overrides=False)
    response = post_fleet(app)
    assert response.status_code == 422 and response.json()["fields"] == ["spec"]
    base = tmp_path / "base.yaml"
    base.write_text("service: ignored\nenvironment: production\nstep_wait_seconds: 30\n")
    app, starter = fleet_app(base_spec=base)
    response = post_fleet(app, {"version": "v3", "services": ["checkout"]})
    assert response.status_code == 202, response.text
    [stored] = starter.runs.values()
    spec = stored["request"].parameters["spec"]
    assert spec["environment"] == "production" and spec["spec"] == {"step_wait_seconds": 30}


def test_missing_deployments_are_422_and_an_unreachable_orchestrator_503():
    app, starter = make(InMemoryStarter(deployments=("canary-fleet/fleet", "canary-release/staging")),
                        secrets=FLEET_SECRETS)
    response = post_fleet(app)  # production has no release deployment: every child would fail
    assert response.status_code == 422 and response.json()["fields"] == ["environment"]
    app, starter = make(InMemoryStarter(deployments=("canary-release/production",)), secrets=FLEET_SECRETS)
    response = post_fleet(app)
    assert response.status_code == 422 and response.json()["fields"] == ["fleet_deployment"]
    assert starter.runs == {}

    class Down:
        async def start(self, request):
            raise StarterUnavailable("Prefect API unreachable (ConnectError)")

    app, _ = make(Down(), secrets=FLEET_SECRETS)
    response = post_fleet(app)
    assert response.status_code == 503 and response.headers["retry-after"] == "5"


def test_the_fleet_secret_is_never_in_answers_or_logs(caplog):
    caplog.set_level(logging.DEBUG)
    app, _ = fleet_app()
    answers = [post_fleet(app), post_fleet(app, {"version": "v2", "services": 3}),
               post_fleet(app, secret=FLEET_SECRET[:-1])]
    logged = caplog.text + " ".join(str(r.args) for r in caplog.records)
    for secret in ALL_SECRETS:
        assert not any(secret in a.text for a in answers) and secret not in logged
