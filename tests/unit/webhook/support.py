"""Signed request builders shared by the webhook tests and the benchmark-like checks."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from canaryflow.webhook.signatures import sign_generic, sign_github

GITHUB_SECRET = "gh-s3cret-DO-NOT-LEAK"
GITLAB_TOKEN = "gl-t0ken-DO-NOT-LEAK"
GENERIC_SECRET = "gen-s3cret-DO-NOT-LEAK"
FLEET_SECRET = "fleet-s3cret-DO-NOT-LEAK"
ALL_SECRETS = (GITHUB_SECRET, GITLAB_TOKEN, GENERIC_SECRET, FLEET_SECRET)


def body_of(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def generic_headers(body: bytes, *, secret: str = GENERIC_SECRET, timestamp: int | None = None,
                    delivery: str | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {"content-type": "application/json", "x-canaryflow-timestamp": ts,
            "x-canaryflow-signature": sign_generic(secret, ts, body),
            "x-canaryflow-delivery": delivery or uuid.uuid4().hex}


def fleet_headers(body: bytes, **kwargs: Any) -> dict[str, str]:
    """The fleet route signs like the generic one, with its own secret."""
    return generic_headers(body, **{"secret": FLEET_SECRET, **kwargs})


def github_headers(body: bytes, *, event: str = "deployment", secret: str = GITHUB_SECRET,
                   delivery: str | None = None) -> dict[str, str]:
    return {"content-type": "application/json", "x-github-event": event,
            "x-github-delivery": delivery or str(uuid.uuid4()),
            "x-hub-signature-256": sign_github(secret, body)}


def gitlab_headers(*, event: str = "Pipeline Hook", token: str = GITLAB_TOKEN,
                   delivery: str | None = None) -> dict[str, str]:
    return {"content-type": "application/json", "x-gitlab-event": event, "x-gitlab-token": token,
            "x-gitlab-event-uuid": delivery or str(uuid.uuid4())}


def github_deployment(service: str = "checkout", version: str = "v2", environment: str = "staging",
                      **custom: Any) -> dict[str, Any]:
    return {"action": "created", "repository": {"name": service},
            "deployment": {"environment": environment, "sha": "0" * 40,
                           "payload": {"service": service, "version": version, **custom}}}


def gitlab_pipeline(service: str = "checkout", tag: str = "v3") -> dict[str, Any]:
    return {"object_kind": "pipeline", "project": {"name": service, "path_with_namespace": f"acme/{service}"},
            "object_attributes": {"status": "success", "ref": tag, "tag": True, "sha": "1" * 40}}


ALERTMANAGER_TOKEN = "am-t0ken-DO-NOT-LEAK"


def bearer_headers(token: str = ALERTMANAGER_TOKEN) -> dict[str, str]:
    return {"content-type": "application/json", "authorization": f"Bearer {token}"}


def firing_alert(alertname: str = "HighErrorRateProduction", *, service: str | None = "checkout",
                 environment: str | None = "production", status: str = "firing",
                 starts_at: str = "2026-03-01T10:00:00.123456789Z", fingerprint: str | None = "9f3b1c2d4e5f6a7b",
                 summary: str = "Canary of checkout (production) has a 2.5% error rate") -> dict[str, Any]:
    labels = {"alertname": alertname, "severity": "critical"}
    if service is not None:
        labels["service"] = service
    if environment is not None:
        labels["environment"] = environment
    alert: dict[str, Any] = {
        "status": status, "labels": labels, "annotations": {"summary": summary}, "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-03-01T10:05:00Z",
        "generatorURL": "http://prometheus:9090/graph"}
    if fingerprint is not None:
        alert["fingerprint"] = fingerprint
    return alert


def alertmanager_payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    """A version-4 Alertmanager webhook notification."""
    return {"version": "4", "groupKey": '{}:{alertname="HighErrorRateProduction"}', "truncatedAlerts": 0,
            "status": status, "receiver": "canaryflow", "groupLabels": {"alertname": "HighErrorRateProduction"},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
            "alerts": list(alerts)}
