"""Alertmanager notifications -> rollback runs: the mapping, the bearer check, and the route over ASGI
with an in-memory starter."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from canaryflow.webhook import WebhookConfig, WebhookSecrets, create_app
from canaryflow.webhook.alertmanager import IgnoredAlert, RollbackRequest, map_alert, map_alerts
from canaryflow.webhook.config import DEFAULT_ROLLBACK_ALERTS
from canaryflow.webhook.mapping import UnmappablePayload
from canaryflow.webhook.signatures import Outcome, verify_bearer
from canaryflow.webhook.starter import InMemoryStarter, StarterUnavailable
from tests.unit.webhook.support import ALERTMANAGER_TOKEN, alertmanager_payload, bearer_headers, body_of, firing_alert
from tests.unit.webhook.test_app import run, send

ALLOWED = DEFAULT_ROLLBACK_ALERTS
RELEASED = {"service": "checkout", "version": "v2", "environment": "production", "steps": [10, 100]}


# --- mapping ---------------------------------------------------------------------------------------

def test_firing_allowed_alert_maps_to_a_rollback_with_detail_and_key():
    mapped = map_alert(firing_alert(), allowed=ALLOWED)
    assert isinstance(mapped, RollbackRequest)
    assert (mapped.alertname, mapped.service, mapped.environment) == ("HighErrorRateProduction", "checkout",
                                                                      "production")
    assert mapped.detail == "HighErrorRateProduction: Canary of checkout (production) has a 2.5% error rate"
    assert mapped.idempotency_key == "alertmanager:9f3b1c2d4e5f6a7b:2026-03-01T10:00:00.123456789Z"


def test_default_allow_list_names_the_canary_alerts_of_alerts_yml():
    import yaml

    root = Path(__file__).resolve().parents[3]
    rules = {rule["alert"]: rule for group in yaml.safe_load((root / "monitoring/prometheus/alerts.yml")
                                                             .read_text())["groups"] for rule in group["rules"]}
    for name in DEFAULT_ROLLBACK_ALERTS:
        assert name in rules
        # Their expressions aggregate by service and environment, so firing alerts carry both labels.
        assert "by (service, environment" in rules[name]["expr"]
    assert "DeploymentRollbackDetected" not in DEFAULT_ROLLBACK_ALERTS


@pytest.mark.parametrize("alert, reason", [
    (firing_alert(status="resolved"), "status 'resolved'"),
    (firing_alert(service=None), "no service label"),
    (firing_alert(environment=None), "no environment label"),
    (firing_alert(service=None, environment=None), "no service and no environment label"),
    (firing_alert("DeploymentRollbackDetected"), "not in the rollback allow-list"),
    (firing_alert(service="Check Out"), "not a service name"),
    (firing_alert(environment="qa"), "environment label must be one of"),
    (firing_alert(starts_at="yesterday"), "startsAt"),
    (firing_alert(fingerprint="not-hex!"), "fingerprint"),
    ("an alert", "not an object"),
])
def test_alerts_that_do_not_ask_for_a_rollback_are_ignored_with_the_reason(alert, reason):
    mapped = map_alert(alert, allowed=ALLOWED)
    assert isinstance(mapped, IgnoredAlert)
    assert reason in mapped.reason


def test_idempotency_key_is_stable_across_resends_and_differs_across_episodes():
    first = map_alert(firing_alert(), allowed=ALLOWED)
    # A resend after repeat_interval: same fingerprint and startsAt, other annotations / endsAt.
    resend = map_alert({**firing_alert(summary="now 3.1%"), "endsAt": "2026-03-01T10:09:00Z"}, allowed=ALLOWED)
    later = map_alert(firing_alert(starts_at="2026-03-01T11:30:00Z"), allowed=ALLOWED)
    other_service = map_alert(firing_alert(service="cart", fingerprint="0123456789abcdef"), allowed=ALLOWED)
    assert first.idempotency_key == resend.idempotency_key
    assert len({first.idempotency_key, later.idempotency_key, other_service.idempotency_key}) == 3


def test_a_missing_fingerprint_is_derived_from_the_labels():
    one = map_alert(firing_alert(fingerprint=None), allowed=ALLOWED)
    two = map_alert(firing_alert(fingerprint=None, summary="other"), allowed=ALLOWED)
    other = map_alert(firing_alert(fingerprint=None, service="cart"), allowed=ALLOWED)
    assert one.idempotency_key == two.idempotency_key != other.idempotency_key


def test_map_alerts_keeps_order_drops_repeats_and_needs_a_list():
    payload = alertmanager_payload(firing_alert(), firing_alert(status="resolved"), firing_alert())
    mapped = map_alerts(payload, allowed=ALLOWED)
    assert [type(m) for m in mapped] == [RollbackRequest, IgnoredAlert]
    with pytest.raises(UnmappablePayload) as info:
        map_alerts({"version": "4"}, allowed=ALLOWED)
    assert info.value.fields == ("alerts",)


def test_bearer_check():
    assert verify_bearer("tok", "Bearer tok").ok
    assert verify_bearer("tok", "bearer  tok ").ok
    assert verify_bearer("tok", None).outcome is Outcome.MISSING
    for header in ("Bearer nope", "Basic tok", "tok", "Bearer"):
        assert verify_bearer("tok", header).outcome is Outcome.INVALID
    assert verify_bearer(None, "Bearer tok").outcome is Outcome.INVALID


# --- the route -------------------------------------------------------------------------------------

def make(releases=None, **config):
    config.setdefault("rate_limit_per_second", 0)
    starter = InMemoryStarter(deployments=("canary-rollback/manual",),
                              releases={("checkout", "production"): dict(RELEASED)} if releases is None else releases)
    app = create_app(WebhookConfig(**config), starter=starter,
                     secrets=WebhookSecrets(alertmanager=SecretStr(ALERTMANAGER_TOKEN)))
    return app, starter


def post(app, payload, headers=None):
    body = payload if isinstance(payload, bytes) else body_of(payload)
    return run(send(app, "POST", "/hooks/alertmanager", content=body,
                    headers=bearer_headers() if headers is None else headers))


def test_firing_alert_starts_one_rollback_and_a_resend_returns_it():
    app, starter = make()
    payload = alertmanager_payload(firing_alert())
    first = post(app, payload)
    assert first.status_code == 202, first.text
    [started] = first.json()["runs"]
    assert started["duplicate"] is False and started["service"] == "checkout"
    [stored] = starter.runs.values()
    request = stored["request"]
    assert request.deployment == "canary-rollback/manual"
    assert request.parameters["reason"] == "alert"
    assert request.parameters["detail"].startswith("HighErrorRateProduction: Canary of checkout")
    spec = request.parameters["spec"]
    assert (spec["service"], spec["version"], spec["environment"], spec["steps"]) == ("checkout", "v2",
                                                                                      "production", [10, 100])
    assert request.run_name == "rollback/checkout/production"
    assert {"source:alertmanager", "alert:HighErrorRateProduction", "service:checkout"} <= set(request.tags)

    again = post(app, payload)
    assert again.status_code == 200, again.text
    assert again.json()["runs"][0]["flow_run_id"] == started["flow_run_id"]
    assert again.json()["runs"][0]["duplicate"] is True
    assert len(starter.runs) == 1


def test_resolved_and_unlabelled_alerts_are_ignored_with_202():
    app, starter = make()
    response = post(app, alertmanager_payload(firing_alert(status="resolved"), firing_alert(service=None),
                                              status="resolved"))
    assert response.status_code == 202, response.text
    assert response.json()["runs"] == []
    reasons = [item["reason"] for item in response.json()["ignored"]]
    assert "status 'resolved'" in reasons[0] and "no service label" in reasons[1]
    assert starter.runs == {}


def test_no_release_on_record_answers_422_naming_the_service_and_still_rolls_back_the_others():
    app, starter = make()
    payload = alertmanager_payload(firing_alert(service="cart", fingerprint="abcdef0123456789"), firing_alert())
    response = post(app, payload)
    assert response.status_code == 422, response.text
    assert "cart (production)" in response.json()["error"]
    assert [run["service"] for run in response.json()["runs"]] == ["checkout"]
    assert len(starter.runs) == 1


def test_authentication_and_body_gates_start_nothing():
    app, starter = make(max_body_bytes=2048)
    payload = alertmanager_payload(firing_alert())
    assert post(app, payload, headers={"content-type": "application/json"}).status_code == 401
    wrong = post(app, payload, headers=bearer_headers("not-the-token"))
    assert wrong.status_code == 401 and wrong.json() == {"error": "signature invalid"}
    assert post(app, payload, headers={"authorization": f"Basic {ALERTMANAGER_TOKEN}"}).status_code == 401
    assert post(app, b"{not json").status_code == 400
    assert post(app, b"[1, 2]").status_code == 400
    assert post(app, body_of({"alerts": [firing_alert(summary="x" * 4096)]})).status_code == 413
    unmappable = post(app, {"version": "4", "alerts": "none"})
    assert unmappable.status_code == 422 and unmappable.json()["fields"] == ["alerts"]
    assert run(send(app, "GET", "/hooks/alertmanager")).status_code == 405
    assert run(send(app, "POST", "/hooks/alertmanagers", content=b"{}")).status_code == 404
    assert starter.runs == {}


def test_unconfigured_token_disables_the_route():
    starter = InMemoryStarter(releases={("checkout", "production"): dict(RELEASED)})
    app = create_app(WebhookConfig(rate_limit_per_second=0), starter=starter, secrets=WebhookSecrets())
    assert post(app, alertmanager_payload(firing_alert())).status_code == 401
    assert starter.runs == {}


def test_rate_limit_applies_to_the_route():
    app, starter = make(rate_limit_per_second=0.001, rate_limit_burst=1)
    payload = alertmanager_payload(firing_alert(status="resolved"))
    assert post(app, payload).status_code == 202
    limited = post(app, payload)
    assert limited.status_code == 429 and "Retry-After" in limited.headers


def test_allow_list_and_deployment_are_configurable(monkeypatch):
    monkeypatch.setenv("CANARYFLOW_WEBHOOK_ROLLBACK_ALERTS", "CheckoutBurning")
    monkeypatch.setenv("CANARYFLOW_WEBHOOK_ROLLBACK_DEPLOYMENT", "canary-rollback/prod")
    config = WebhookConfig()
    assert config.rollback_alerts == ["CheckoutBurning"] and config.rollback_deployment == "canary-rollback/prod"
    monkeypatch.delenv("CANARYFLOW_WEBHOOK_ROLLBACK_ALERTS")
    monkeypatch.delenv("CANARYFLOW_WEBHOOK_ROLLBACK_DEPLOYMENT")
    starter = InMemoryStarter(deployments=("canary-rollback/manual",),
                              releases={("checkout", "production"): dict(RELEASED)})
    app = create_app(WebhookConfig(rate_limit_per_second=0, rollback_alerts=["CheckoutBurning"]), starter=starter,
                     secrets=WebhookSecrets(alertmanager=SecretStr(ALERTMANAGER_TOKEN)))
    ignored = post(app, alertmanager_payload(firing_alert()))
    assert ignored.status_code == 202 and "allow-list" in ignored.json()["ignored"][0]["reason"]
    started = post(app, alertmanager_payload(firing_alert("CheckoutBurning")))
    assert started.status_code == 202 and len(starter.runs) == 1
    missing = create_app(WebhookConfig(rate_limit_per_second=0, rollback_deployment="canary-rollback/nope"),
                         starter=starter, secrets=WebhookSecrets(alertmanager=SecretStr(ALERTMANAGER_TOKEN)))
    response = post(missing, alertmanager_payload(firing_alert(starts_at="2026-03-02T00:00:00Z")))
    assert response.status_code == 422 and response.json()["fields"] == ["rollback_deployment"]


def test_orchestrator_down_answers_503_so_alertmanager_retries(caplog):
    class Down(InMemoryStarter):
        async def latest_release_spec(self, service, environment):
            raise StarterUnavailable("Prefect API unreachable (ConnectError)")

    app = create_app(WebhookConfig(rate_limit_per_second=0), starter=Down(),
                     secrets=WebhookSecrets(alertmanager=SecretStr(ALERTMANAGER_TOKEN)))
    with caplog.at_level(logging.DEBUG, logger="canaryflow.webhook"):
        response = post(app, alertmanager_payload(firing_alert()))
        post(app, alertmanager_payload(firing_alert()), headers=bearer_headers("wr0ng-t0ken-value"))
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert "unreachable" in caplog.text and "token mismatch" in caplog.text
    assert ALERTMANAGER_TOKEN not in caplog.text and "wr0ng-t0ken-value" not in caplog.text
