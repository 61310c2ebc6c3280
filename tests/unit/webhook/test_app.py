"""The receiver over ASGI with an in-memory starter: every status code and what it guarantees.

No request that fails a gate reaches the starter (``starter.runs`` stays empty)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time

import httpx
from prefect.states import Completed
from pydantic import SecretStr

from canaryflow.webhook import WebhookConfig, WebhookSecrets, create_app
from canaryflow.webhook.replay import signed_key
from canaryflow.webhook.signatures import generic_message, sign_generic
from canaryflow.webhook.starter import InMemoryStarter, RunRejected, StartedRun, StarterUnavailable
from canaryflow.webhook.status import RunSeen, status_token
from tests.unit.webhook.support import (
    ALERTMANAGER_TOKEN,
    ALL_SECRETS,
    FLEET_SECRET,
    GENERIC_SECRET,
    GITHUB_SECRET,
    GITLAB_TOKEN,
    alertmanager_payload,
    bearer_headers,
    body_of,
    firing_alert,
    fleet_headers,
    generic_headers,
    github_deployment,
    github_headers,
    gitlab_headers,
    gitlab_pipeline,
)

SECRETS = WebhookSecrets(github=SecretStr(GITHUB_SECRET), gitlab=SecretStr(GITLAB_TOKEN),
                         generic=SecretStr(GENERIC_SECRET))
RELEASE = {"service": "checkout", "version": "v2", "environment": "staging"}


def make(starter=None, secrets=SECRETS, **config):
    config.setdefault("rate_limit_per_second", 0)
    starter = starter if starter is not None else InMemoryStarter()
    app = create_app(WebhookConfig(**config), starter=starter, secrets=secrets)
    return app, starter


async def send(app, method: str, path: str, **kwargs) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        return await client.request(method, path, **kwargs)


def run(coro):
    return asyncio.run(coro)


def post_generic(app, payload=RELEASE, **header_kwargs) -> httpx.Response:
    body = body_of(payload)
    return run(send(app, "POST", "/hooks/generic", content=body, headers=generic_headers(body, **header_kwargs)))


def test_generic_release_starts_one_run_with_a_validated_spec():
    app, starter = make()
    ts = int(time.time())
    response = post_generic(app, delivery="build-42-1", timestamp=ts)
    assert response.status_code == 202, response.text
    data = response.json()
    assert data["duplicate"] is False and data["delivery"] == "build-42-1"
    # The key is made of what was signed, "<timestamp>.<body>", not of the unsigned delivery id.
    assert data["idempotency_key"] == signed_key("generic", generic_message(ts, body_of(RELEASE)))
    assert data["deployment"] == "canary-release/staging"
    assert data["flow_run_name"] == "release/checkout/v2/staging"
    [stored] = starter.runs.values()
    request = stored["request"]
    assert request.parameters["spec"]["thresholds"] == {"max_error_rate": 0.01, "max_p95_latency_ms": 500.0}
    assert set(request.tags) == {"webhook", "source:generic", "service:checkout", "environment:staging"}


def test_same_signed_delivery_twice_is_one_run_and_answers_200():
    app, starter = make()
    ts = int(time.time())  # a retried post (curl --retry) resends the very same signed request
    first = post_generic(app, delivery="build-7-1", timestamp=ts)
    second = post_generic(app, delivery="build-7-1", timestamp=ts)
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json()["duplicate"] is True
    assert first.json()["flow_run_id"] == second.json()["flow_run_id"]
    assert len(starter.runs) == 1


def test_replayed_signature_with_a_new_delivery_id_returns_the_original_run():
    app, starter = make()
    body, ts = body_of(RELEASE), int(time.time())
    headers = generic_headers(body, timestamp=ts, delivery="orig-1")
    first = run(send(app, "POST", "/hooks/generic", content=body, headers=headers))
    replay = run(send(app, "POST", "/hooks/generic", content=body,
                      headers={**headers, "x-canaryflow-delivery": "forged-2"}))
    assert first.status_code == 202 and replay.status_code == 200
    assert replay.json()["flow_run_id"] == first.json()["flow_run_id"]
    assert len(starter.runs) == 1


def test_missing_and_invalid_signatures_are_401_and_start_nothing():
    app, starter = make()
    body = body_of(RELEASE)
    good = generic_headers(body)
    cases = {
        "signature missing": [{k: v for k, v in good.items() if k != "x-canaryflow-signature"},
                              {k: v for k, v in good.items() if k != "x-canaryflow-timestamp"}],
        "signature invalid": [{**good, "x-canaryflow-signature": "sha256=" + "0" * 64},
                              generic_headers(body, secret="wrong"),
                              generic_headers(body, timestamp=int(time.time()) - 301),  # stale
                              generic_headers(body, timestamp=int(time.time()) + 301),  # future
                              {**good, "x-canaryflow-timestamp": "yesterday"}],
    }
    assert_refused_401(app, "/hooks/generic", body, good,
                       [(headers, message) for message, header_sets in cases.items() for headers in header_sets])
    assert starter.runs == {}


def assert_refused_401(app, path: str, body: bytes, good: dict, cases: list[tuple[dict, str]]) -> None:
    """Each ``(headers, message)`` is answered 401 with that message, and so is a body changed after
    ``good`` signed it."""
    for headers, message in cases:
        response = run(send(app, "POST", path, content=body, headers=headers))
        assert response.status_code == 401 and response.json() == {"error": message}
    tampered = run(send(app, "POST", path, content=body.replace(b"v2", b"v3"), headers=good))
    assert tampered.status_code == 401


def test_replay_with_stale_timestamp_is_refused():
    app, starter = make()
    body, old = body_of(RELEASE), int(time.time()) - 600
    headers = generic_headers(body, timestamp=old)  # a genuine signature, captured ten minutes ago
    response = run(send(app, "POST", "/hooks/generic", content=body, headers=headers))
    assert response.status_code == 401 and response.json() == {"error": "signature invalid"}
    assert starter.runs == {}


def test_disabled_source_answers_401_to_everything():
    app, starter = make(secrets=WebhookSecrets(github=SecretStr(GITHUB_SECRET)))
    body = body_of(RELEASE)
    response = run(send(app, "POST", "/hooks/generic", content=body, headers=generic_headers(body)))
    assert response.status_code == 401 and response.json() == {"error": "signature invalid"}
    response = run(send(app, "POST", "/hooks/gitlab", content=body, headers=gitlab_headers()))
    assert response.status_code == 401
    assert starter.runs == {}


def test_declared_oversized_body_is_413_before_reading():
    app, starter = make(max_body_bytes=1000)
    body = body_of({**RELEASE, "spec": {"smoke": [{"path": "/" + "x" * 2000}]}})
    response = run(send(app, "POST", "/hooks/generic", content=body, headers=generic_headers(body)))
    assert response.status_code == 413 and response.headers["connection"] == "close"
    assert starter.runs == {}


def _raw_asgi_post(app, path: str, headers: dict[str, str] | list[tuple[bytes, bytes]], chunks: list[bytes], *,
                   complete: bool = True) -> tuple[int, bytes, int]:
    """Drive the ASGI app directly: lets a request declare one Content-Length and stream another size,
    send header bytes httpx would refuse, or stop sending before the body is complete.
    Returns (status, body, bytes the app pulled)."""
    received = {"bytes": 0}
    queue = [{"type": "http.request", "body": c, "more_body": not complete or i < len(chunks) - 1}
             for i, c in enumerate(chunks)]
    sent: list[dict] = []

    async def receive():
        if queue:
            message = queue.pop(0)
            received["bytes"] += len(message["body"])
            return message
        await asyncio.sleep(2)  # far beyond any deadline under test; then the client gives up
        return {"type": "http.disconnect"}

    async def send_(message):
        sent.append(message)

    raw = headers if isinstance(headers, list) else [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": raw, "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send_))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, received["bytes"]


def test_a_declared_oversized_body_is_refused_without_reading_a_byte_of_it():
    app, starter = make(max_body_bytes=1000)
    chunks = [b"x" * 400] * 10
    body = b"".join(chunks)
    headers = {**generic_headers(body), "content-length": str(len(body))}  # honest, and over the cap
    status, answer, pulled = _raw_asgi_post(app, "/hooks/generic", headers, chunks)
    assert status == 413, answer
    assert pulled == 0  # the streaming cap would answer 413 too, but only after pulling 1200 bytes
    assert starter.runs == {}


def test_streamed_body_over_the_cap_is_aborted_with_413_whatever_content_length_says():
    app, starter = make(max_body_bytes=1000)
    chunks = [b"x" * 400] * 10  # 4000 bytes in 10 chunks
    body = b"".join(chunks)
    headers = generic_headers(body)
    for declared in ({}, {"content-length": "10"}):  # absent (chunked) or lying
        status, answer, pulled = _raw_asgi_post(app, "/hooks/generic", {**headers, **declared}, list(chunks))
        assert status == 413, answer
        assert pulled <= 1200  # stopped at the first chunk over the cap, not after reading it all
    assert starter.runs == {}


def test_malformed_json_is_400_after_authentication():
    app, starter = make()
    for body in (b"{not json", b"\xff\xfe", b"[1, 2]", b""):
        response = run(send(app, "POST", "/hooks/generic", content=body, headers=generic_headers(body)))
        assert response.status_code == 400, body
    assert starter.runs == {}


def test_invalid_spec_is_422_with_field_names():
    app, starter = make()
    response = post_generic(app, {"service": "Bad_Name", "version": "v2", "environment": "qa",
                                  "spec": {"steps": [50, 10]}})
    assert response.status_code == 422
    assert set(response.json()["fields"]) >= {"service", "environment", "steps"}
    response = post_generic(app, {"service": "checkout", "version": "v2", "extra": 1})
    assert response.status_code == 422 and response.json()["fields"] == ["extra"]
    assert starter.runs == {}


def test_deployment_missing_for_environment_is_422():
    app, starter = make(InMemoryStarter(deployments=("canary-release/staging",)))
    response = post_generic(app, {**RELEASE, "environment": "production"})
    assert response.status_code == 422 and response.json()["fields"] == ["environment"]
    assert "canary-release/production" in response.json()["error"]


def test_orchestrator_down_or_slow_is_503_with_retry_after():
    class Down:
        async def start(self, request):
            raise StarterUnavailable("Prefect API unreachable (ConnectError)")

    app, _ = make(Down())
    response = post_generic(app)
    assert response.status_code == 503 and response.headers["retry-after"] == "5"

    app, starter = make(InMemoryStarter(delay_seconds=5), start_timeout_seconds=0.1)
    response = post_generic(app)
    assert response.status_code == 503


def test_github_deployment_ping_ignored_and_allow_list():
    app, starter = make()
    body = body_of(github_deployment(version="v5", environment="production", image="ghcr.io/acme/checkout:v5"))
    response = run(send(app, "POST", "/hooks/github", content=body,
                        headers=github_headers(body, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")))
    assert response.status_code == 202, response.text
    data = response.json()
    assert (data["environment"], data["version"], data["image"]) == ("production", "v5", "ghcr.io/acme/checkout:v5")
    assert data["delivery"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert data["idempotency_key"] == signed_key("github", body)

    ping = body_of({"zen": "Keep it logically awesome.", "hook_id": 1})
    response = run(send(app, "POST", "/hooks/github", content=ping, headers=github_headers(ping, event="ping")))
    assert response.status_code == 200 and response.json() == {"pong": True}

    push = body_of({"ref": "refs/heads/main", "repository": {"name": "checkout"}})
    response = run(send(app, "POST", "/hooks/github", content=push, headers=github_headers(push, event="push")))
    assert response.status_code == 202 and "allow-list" in response.json()["ignored"]

    forged = run(send(app, "POST", "/hooks/github", content=body,
                      headers=github_headers(body, secret="It's a Secret to Everybody")))
    assert forged.status_code == 401
    assert len(starter.runs) == 1


def test_github_form_encoded_delivery():
    from urllib.parse import urlencode

    app, starter = make()
    body = urlencode({"payload": json.dumps(github_deployment())}).encode()
    headers = {**github_headers(body), "content-type": "application/x-www-form-urlencoded"}
    response = run(send(app, "POST", "/hooks/github", content=body, headers=headers))
    assert response.status_code == 202, response.text


def test_json_is_accepted_whatever_the_content_type():
    app, starter = make()
    body = body_of(RELEASE)
    for content_type in ("application/x-www-form-urlencoded", "text/plain"):  # curl -d defaults to the first
        headers = {**generic_headers(body), "content-type": content_type}
        response = run(send(app, "POST", "/hooks/generic", content=body, headers=headers))
        assert response.status_code in (200, 202), response.text


def test_gitlab_pipeline_hook_and_token():
    app, starter = make()
    body = body_of(gitlab_pipeline())
    response = run(send(app, "POST", "/hooks/gitlab", content=body,
                        headers={**gitlab_headers(delivery="a-1"), "idempotency-key": "retry-key-9"}))
    assert response.status_code == 202, response.text
    assert response.json()["delivery"] == "retry-key-9"
    assert response.json()["idempotency_key"] == signed_key("gitlab", body)
    assert response.json()["version"] == "v3"
    wrong = run(send(app, "POST", "/hooks/gitlab", content=body, headers=gitlab_headers(token="nope")))
    assert wrong.status_code == 401 and wrong.json() == {"error": "signature invalid"}
    missing = {k: v for k, v in gitlab_headers().items() if k != "x-gitlab-token"}
    response = run(send(app, "POST", "/hooks/gitlab", content=body, headers=missing))
    assert response.json() == {"error": "signature missing"}
    assert len(starter.runs) == 1


def test_invalid_delivery_id_is_400():
    app, starter = make()
    response = post_generic(app, delivery="../../etc;rm -rf")
    assert response.status_code == 400 and starter.runs == {}


def test_rate_limit_is_per_source_with_retry_after():
    app, starter = make(rate_limit_per_second=1, rate_limit_burst=2)

    async def burst():
        answers = []
        for n in range(3):
            body = body_of({**RELEASE, "version": f"v{n}"})
            answers.append(await send(app, "POST", "/hooks/generic", content=body, headers=generic_headers(body)))
        body = body_of(github_deployment())
        answers.append(await send(app, "POST", "/hooks/github", content=body, headers=github_headers(body)))
        return answers

    first, second, third, other_source = run(burst())
    assert (first.status_code, second.status_code) == (202, 202)
    assert third.status_code == 429 and third.headers["retry-after"] == "1"
    assert other_source.status_code == 202


def test_unknown_route_wrong_method_and_healthz():
    app, _ = make()
    assert run(send(app, "POST", "/hooks/bitbucket", content=b"{}")).status_code == 404
    assert run(send(app, "GET", "/nope")).json() == {"error": "not found"}
    assert run(send(app, "GET", "/hooks/github")).status_code == 405
    health = run(send(app, "GET", "/healthz"))
    assert health.status_code == 200 and health.json() == {"status": "ok"}


def test_secrets_never_in_responses_or_logs(caplog):
    caplog.set_level(logging.DEBUG)
    app, _ = make(rate_limit_per_second=1, rate_limit_burst=3)
    body = body_of(RELEASE)
    answers = [
        run(send(app, "POST", "/hooks/generic", content=body, headers=generic_headers(body))),
        run(send(app, "POST", "/hooks/generic", content=body,
                 headers=generic_headers(body, secret=GENERIC_SECRET + "x"))),
        run(send(app, "POST", "/hooks/gitlab", content=body, headers=gitlab_headers(token=GITLAB_TOKEN[:-1]))),
        run(send(app, "POST", "/hooks/gitlab", content=body, headers=gitlab_headers())),
    ]
    for response in answers:
        text = response.text + json.dumps(dict(response.headers))
        assert not any(secret in text for secret in ALL_SECRETS)
    logged = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert logged  # something was logged
    for secret in ALL_SECRETS:
        assert secret not in logged and secret[:-1] not in logged
    signature = sign_generic(GENERIC_SECRET, "1", body)[7:]
    assert signature[:16] not in logged


# --- replays, copies and hostile signed input -----------------------------------------------------

WHITESPACE_INSIDE = (" ", "\t", "\xa0", "\r\n ")  # space, tab, latin-1 NBSP, obs-fold


def _with_whitespace(headers: dict[str, str], name: str, inside: str) -> list[tuple[bytes, bytes]]:
    """Raw ASGI headers (httpx would refuse a folded line): ``sha256=<inside><hex>``."""
    value = headers[name].replace("sha256=", "sha256=" + inside)
    raw = [(k.encode(), v.encode()) for k, v in headers.items() if k != name]
    return raw + [(name.encode(), value.encode("latin-1"))]


def test_whitespace_inside_a_captured_signature_replays_nothing():
    app, starter = make()
    github_body = body_of(github_deployment(version="v8"))
    github = github_headers(github_body, delivery="orig-gh")
    generic_body = body_of(RELEASE)
    generic = generic_headers(generic_body, delivery="orig-gen")
    assert run(send(app, "POST", "/hooks/github", content=github_body, headers=github)).status_code == 202
    assert run(send(app, "POST", "/hooks/generic", content=generic_body, headers=generic)).status_code == 202
    for n, inside in enumerate(WHITESPACE_INSIDE):
        replay = {**github, "x-github-delivery": f"forged-gh-{n}"}
        status, _, _ = _raw_asgi_post(app, "/hooks/github", _with_whitespace(replay, "x-hub-signature-256", inside),
                                      [github_body])
        assert status == 401, repr(inside)
        replay = {**generic, "x-canaryflow-delivery": f"forged-gen-{n}"}
        status, _, _ = _raw_asgi_post(app, "/hooks/generic",
                                      _with_whitespace(replay, "x-canaryflow-signature", inside), [generic_body])
        assert status == 401, repr(inside)
    assert len(starter.runs) == 2


def test_a_replay_with_a_new_delivery_id_returns_the_first_run_on_every_route():
    app, starter = make()
    gh_body, gl_body = body_of(github_deployment(version="v9")), body_of(gitlab_pipeline(tag="v9"))
    first_gh = run(send(app, "POST", "/hooks/github", content=gh_body, headers=github_headers(gh_body)))
    first_gl = run(send(app, "POST", "/hooks/gitlab", content=gl_body, headers=gitlab_headers()))
    assert (first_gh.status_code, first_gl.status_code) == (202, 202)
    # No timestamp in either scheme: a replay is answered with the first run, however late.
    again_gh = run(send(app, "POST", "/hooks/github", content=gh_body, headers=github_headers(gh_body)))
    again_gl = run(send(app, "POST", "/hooks/gitlab", content=gl_body,
                        headers={**gitlab_headers(), "idempotency-key": "forged"}))
    assert (again_gh.status_code, again_gl.status_code) == (200, 200)
    assert again_gh.json()["flow_run_id"] == first_gh.json()["flow_run_id"]
    assert again_gl.json()["flow_run_id"] == first_gl.json()["flow_run_id"]
    assert len(starter.runs) == 2


def test_generic_same_body_with_a_new_timestamp_is_a_new_delivery():
    app, starter = make()
    now = int(time.time())
    first = post_generic(app, delivery="job-1", timestamp=now - 10)
    second = post_generic(app, delivery="job-1", timestamp=now)  # re-signed: the sender means it again
    assert (first.status_code, second.status_code) == (202, 202)
    assert len(starter.runs) == 2


def test_simultaneous_copies_with_different_delivery_ids_start_one_run():
    app, starter = make(InMemoryStarter(delay_seconds=0.05))
    body = body_of(RELEASE)
    headers = generic_headers(body)

    async def copies():
        return await asyncio.gather(*(send(app, "POST", "/hooks/generic", content=body,
                                           headers={**headers, "x-canaryflow-delivery": f"copy-{n}"})
                                      for n in range(8)))

    answers = run(copies())
    assert sorted(a.status_code for a in answers) == [200] * 7 + [202]
    assert len({a.json()["flow_run_id"] for a in answers}) == 1 and len(starter.runs) == 1
    assert len(app.state.receiver.reservations) == 0


def _deployment_with(**deployment):
    return {"action": "created", "repository": {"name": "checkout"}, "deployment": deployment}


def _pipeline_with(**attributes):
    return {"project": {"name": "checkout"}, "object_attributes": {"status": "success", "sha": "1" * 40,
                                                                  **attributes}}


HOSTILE_SIGNED = [
    # (route, event, raw body, expected status) — each answered 4xx, none starting a run
    ("generic", None, b'{"service": "checkout", "version": "v2", "spec": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", 400),
    ("github", "deployment", b"[" * 200_000, 400),
    ("github", "deployment", body_of({"repository": {"name": "checkout"}, "deployment": "prod"}), 422),
    ("github", "deployment", body_of({"repository": {"name": "checkout"}, "deployment": ["prod"]}), 422),
    ("github", "deployment", body_of({"repository": {"name": "checkout"}, "deployment": 3}), 422),
    ("gitlab", "Pipeline Hook", body_of({"project": {"name": "checkout"}, "object_attributes": "x"}), 422),
    ("gitlab", "Pipeline Hook", body_of({"project": {"name": "checkout"}, "object_attributes": [1]}), 422),
    ("gitlab", "Pipeline Hook", body_of(_pipeline_with(variables=7)), 422),
    ("gitlab", "Pipeline Hook", body_of(_pipeline_with(variables=[{"key": ["k"]}])), 422),
    ("generic", None, b'{"service": "\\ud800", "version": "v2"}', 400),
    ("generic", None, b'{"service": "checkout", "version": "v2", "\\udc00": 1}', 400),
    ("generic", None, b'{"service": "checkout", "version": "v2", "image": NaN}', 400),
    ("generic", None, b'{"service": "checkout", "version": "v2", "image": Infinity}', 400),
    ("generic", None, b'{"service": "checkout", "version": "v2", "spec": {"step_wait_seconds": 1e999}}', 400),
    ("generic", None, b'{"service": "checkout", "version": "v2", "spec": {"step_wait_seconds": "Infinity"}}', 422),
    ("github", "deployment", b'{"repository": {"name": "checkout"}, "deployment": {"environment": "staging", '
                             b'"sha": "abc", "payload": {"image": NaN}}}', 400),
    ("github", "deployment", b'{"repository": {"name": "checkout"}, "deployment": {"environment": "staging", '
                             b'"sha": "abc", "payload": {"image": "\\ud800"}}}', 400),
    ("github", "deployment", body_of(_deployment_with(environment="staging", sha="abc", payload={"image": {"a": 1}})),
     422),
    ("github", "deployment", body_of(_deployment_with(environment="staging", sha="abc", payload={"image": 42})), 422),
    ("github", "deployment", body_of(_deployment_with(environment="staging", sha="abc",
                                                      payload='{"image": Infinity}')), 422),
    ("gitlab", "Pipeline Hook", b'{"project": {"name": "checkout"}, "object_attributes": {"status": "success", '
                                b'"sha": "abc", "variables": [{"key": "CANARYFLOW_IMAGE", "value": "\\udbff"}]}}', 400),
    ("gitlab", "Pipeline Hook", body_of(_pipeline_with(variables=[{"key": "CANARYFLOW_IMAGE", "value": "no image"}])),
     422),
    ("generic", None, body_of({"service": "checkout", "version": "v2", "image": ["ghcr.io/a/b:1"]}), 422),
    ("generic", None, body_of({"service": "checkout", "version": "v2", "spec": {"min_canary_requests": 2**60}}), 400),
]


def _signed(route: str, event: str | None, body: bytes) -> dict[str, str]:
    if route == "github":
        return github_headers(body, event=event)
    if route == "gitlab":
        return gitlab_headers(event=event)
    return generic_headers(body)


def test_hostile_signed_deliveries_are_answered_4xx_with_a_reason_and_start_nothing():
    app, starter = make()
    for route, event, body, status in HOSTILE_SIGNED:
        response = run(send(app, "POST", f"/hooks/{route}", content=body, headers=_signed(route, event, body)))
        assert response.status_code == status, (route, body[:120], response.text)
        assert response.json()["error"] and response.content.isascii()
    assert starter.runs == {}


def test_text_from_the_payload_is_echoed_escaped():
    app, starter = make()
    body = body_of({"ref": "x", "repository": {"name": "checkout"}})
    response = run(send(app, "POST", "/hooks/github", content=body,
                        headers={**github_headers(body), "x-github-event": "caf\u00e9".encode("latin-1")}))
    assert response.status_code == 202 and "\\u00e9" in response.text and response.content.isascii()
    assert response.json()["ignored"].startswith("GitHub event 'café'")


def test_a_body_that_never_arrives_is_cut_off_at_the_deadline_with_408():
    app, starter = make(body_timeout_seconds=0.2)
    body = body_of(RELEASE)
    status, answer, pulled = _raw_asgi_post(app, "/hooks/generic", generic_headers(body), [body[:10], body[10:20]],
                                            complete=False)  # then never sends the rest
    assert status == 408 and b"not received within 0.2 s" in answer and pulled == 20
    assert starter.runs == {}


def test_a_request_head_over_the_cap_is_431_before_anything_else():
    app, starter = make(max_header_bytes=2048)
    body = body_of(RELEASE)
    response = run(send(app, "POST", "/hooks/generic", content=body,
                        headers={**generic_headers(body), "x-padding": "p" * 2048}))
    assert response.status_code == 431 and response.headers["connection"] == "close"
    assert starter.runs == {}


# --- exact answers, headers and log lines -----------------------------------------------------------
#
# CI systems parse these answers and operators read these log lines: each refusal and each start is
# pinned byte for byte (compact JSON), with the headers that tell a client what to do next.

CLIENT = "127.0.0.1"  # httpx's ASGI transport presents every request as coming from here


class Orchestrator(InMemoryStarter):
    """The in-memory starter, with a UI link for each run as the Prefect starter gives one."""

    async def start(self, request):
        started = await super().start(request)
        return dataclasses.replace(started, ui_url=f"http://prefect.test/runs/{started.flow_run_id}")


class StartOnly:
    """A starter that can start runs and nothing else: it cannot read a run or a release back."""

    def __init__(self, error: BaseException | None = None, delay: float = 0.0) -> None:
        self.requests: list = []
        self.error, self.delay = error, delay

    async def start(self, request):
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        self.requests.append(request)
        return StartedRun("00000000-0000-4000-8000-000000000001", request.run_name, duplicate=False)


def compact(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def webhook_lines(caplog, level: str | None = None) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "canaryflow.webhook" and (level is None or r.levelname == level)]


def assert_answer(response: httpx.Response, status: int, body: dict, **headers: str) -> None:
    assert response.status_code == status, response.text
    assert response.content == compact(body)
    assert response.headers["content-type"] == "application/json"
    for name, value in headers.items():
        assert response.headers.get(name.replace("_", "-")) == value, (name, response.headers)


def is_plain_json(value) -> bool:
    """Only the types a JSON document holds (no enums, tuples or models): what Prefect stores."""
    if type(value) is dict:
        return all(type(k) is str and is_plain_json(v) for k, v in value.items())
    if type(value) is list:
        return all(is_plain_json(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def asgi_exchange(app, path: str, headers: list[tuple[bytes, bytes]], messages: list[dict], *,
                  method: str = "POST", client: tuple[str, int] | None = ("127.0.0.1", 5555)):
    """Drive the app with exactly these ASGI messages; the receive after the last one waits 2 s and
    then reports the client gone. Returns (status, headers, body)."""
    queue = list(messages)
    sent: list[dict] = []

    async def receive():
        if queue:
            return queue.pop(0)
        await asyncio.sleep(2)  # far beyond any deadline under test; then the client gives up
        return {"type": "http.disconnect"}

    async def send_(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": headers, "server": ("127.0.0.1", 80)}
    if client is not None:
        scope["client"] = client
    asyncio.run(app(scope, receive, send_))
    start = next(m for m in sent if m["type"] == "http.response.start")
    answer_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], answer_headers, body


def raw_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()]


def whole(body: bytes) -> list[dict]:
    return [{"type": "http.request", "body": body, "more_body": False}]


def test_a_started_release_is_answered_with_everything_a_ci_job_reads_and_logged(caplog):
    app, starter = make(Orchestrator())
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    caplog.clear()
    ts = int(time.time())
    key = signed_key("generic", generic_message(ts, body_of(RELEASE)))
    first = post_generic(app, delivery="build-42-1", timestamp=ts)
    run_id = first.json()["flow_run_id"]
    expected = {"flow_run_id": run_id, "flow_run_name": "release/checkout/v2/staging",
                "ui_url": f"http://prefect.test/runs/{run_id}", "duplicate": False, "delivery": "build-42-1",
                "status_url": f"/hooks/runs/{run_id}", "status_token": status_token(GENERIC_SECRET, run_id),
                "idempotency_key": key, "deployment": "canary-release/staging", "service": "checkout",
                "version": "v2", "environment": "staging", "image": None}
    assert_answer(first, 202, expected)
    again = post_generic(app, delivery="build-42-2", timestamp=ts)
    assert_answer(again, 200, {**expected, "duplicate": True, "delivery": "build-42-2"})
    line = f"flow run {run_id} (release/checkout/v2/staging) for checkout v2 -> staging"
    assert webhook_lines(caplog) == [f"generic delivery build-42-1: started {line}",
                                     f"generic delivery build-42-2: existing {line}"]
    [stored] = starter.runs.values()
    request = stored["request"]
    assert (request.deployment, request.idempotency_key, request.run_name) == (
        "canary-release/staging", key, "release/checkout/v2/staging")
    assert request.tags == ("webhook", "source:generic", "service:checkout", "environment:staging")
    assert list(request.parameters) == ["spec"] and is_plain_json(request.parameters)
    assert (request.parameters["spec"]["service"], request.parameters["spec"]["environment"]) == ("checkout", "staging")


def test_the_deployment_template_may_name_the_service():
    app, starter = make(deployment_template="canary-release/{service}-{environment}")
    response = post_generic(app)
    assert response.status_code == 202 and response.json()["deployment"] == "canary-release/checkout-staging"
    [stored] = starter.runs.values()
    assert stored["request"].deployment == "canary-release/checkout-staging"


def test_a_delivery_without_an_id_is_named_by_the_digest_of_what_was_signed():
    app, _ = make()
    body, ts = body_of(RELEASE), int(time.time())
    headers = {k: v for k, v in generic_headers(body, timestamp=ts).items() if k != "x-canaryflow-delivery"}
    response = run(send(app, "POST", "/hooks/generic", content=body, headers=headers))
    key = signed_key("generic", generic_message(ts, body))
    assert response.status_code == 202 and response.json()["delivery"] == key.partition(":")[2]
    assert response.json()["idempotency_key"] == key


def test_a_starter_that_cannot_read_runs_gets_no_status_url_or_token():
    starter = StartOnly()
    app = create_app(WebhookConfig(rate_limit_per_second=0), starter=starter, secrets=SECRETS)
    response = post_generic(app)
    assert response.status_code == 202, response.text
    assert "status_url" not in response.json() and "status_token" not in response.json()
    assert len(starter.requests) == 1


def test_an_explicit_run_lookup_and_release_lookup_win_over_the_starters_own(caplog):
    class Runs:
        async def run_status(self, flow_run_id):
            return RunSeen(name="from the lookup", state=Completed())

    class Releases:
        async def latest_release_spec(self, service, environment):
            return {"service": service, "version": "v1", "environment": environment}

    starter = InMemoryStarter()  # can read runs and releases itself, knows none
    app = create_app(WebhookConfig(rate_limit_per_second=0), starter=starter, runs=Runs(), releases=Releases(),
                     secrets=WebhookSecrets(generic=SecretStr(GENERIC_SECRET),
                                            alertmanager=SecretStr(ALERTMANAGER_TOKEN)))
    started = post_generic(app).json()
    answer = run(send(app, "GET", started["status_url"],
                      headers={"authorization": f"Bearer {started['status_token']}"}))
    assert answer.status_code == 200 and answer.json()["flow_run_name"] == "from the lookup"
    rollback = run(send(app, "POST", "/hooks/alertmanager", content=body_of(alertmanager_payload(firing_alert())),
                        headers=bearer_headers()))
    assert rollback.status_code == 202, rollback.text


def test_secrets_come_from_the_configuration_when_not_given():
    app = create_app(WebhookConfig(rate_limit_per_second=0, generic_secret=SecretStr(GENERIC_SECRET)),
                     starter=InMemoryStarter())
    assert post_generic(app).status_code == 202


def test_disabled_routes_are_logged_at_startup(caplog):
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    make(secrets=WebhookSecrets(generic=SecretStr(GENERIC_SECRET), fleet=SecretStr("f")))
    assert webhook_lines(caplog, "WARNING") == [
        f"{source} webhook disabled: no secret configured; /hooks/{source} answers 401"
        for source in ("github", "gitlab", "alertmanager")]


def test_the_injected_clock_and_the_configured_window_decide_a_timestamps_age():
    then = 1_700_000_000
    app = create_app(WebhookConfig(rate_limit_per_second=0, timestamp_tolerance_seconds=30),
                     starter=InMemoryStarter(), secrets=SECRETS, clock=lambda: then + 29)
    assert post_generic(app, timestamp=then).status_code == 202
    assert_answer(post_generic(app, timestamp=then - 2), 401, {"error": "signature invalid"})


def test_every_refusal_is_answered_exact_json_and_logged_with_its_reason(caplog):
    app, starter = make(InMemoryStarter(deployments=("canary-release/staging",)), max_body_bytes=1000)
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    caplog.clear()
    body = body_of(RELEASE)
    good = generic_headers(body)
    unsigned = {k: v for k, v in good.items() if k != "x-canaryflow-signature"}
    big = body_of({**RELEASE, "pad": "x" * 2000})
    cases = [
        ("generic", body, unsigned, 401, {"error": "signature missing"}, {}, "signature headers missing"),
        ("generic", body, {**good, "x-canaryflow-signature": "sha256=" + "0" * 64}, 401,
         {"error": "signature invalid"}, {}, "HMAC mismatch"),
        ("generic", big, generic_headers(big), 413, {"error": "body larger than 1000 bytes"}, {"connection": "close"},
         f"declared body of {len(big)} bytes over the cap"),
        ("generic", body, {**good, "x-canaryflow-delivery": "a b"}, 400,
         {"error": "invalid delivery id in x-canaryflow-delivery (1-128 of [A-Za-z0-9._:-])"}, {},
         "invalid delivery id"),
        ("generic", b"\xff", generic_headers(b"\xff"), 400, {"error": "body is not valid JSON"}, {}, "malformed JSON"),
        ("generic", b"[1]", generic_headers(b"[1]"), 400, {"error": "body must be a JSON object"}, {},
         "body refused: body must be a JSON object"),
        ("github", body_of({}), {k: v for k, v in github_headers(body_of({})).items() if k != "x-github-event"}, 400,
         {"error": "missing X-GitHub-Event header"}, {}, "no event header"),
        ("gitlab", body_of({}), {k: v for k, v in gitlab_headers().items() if k != "x-gitlab-event"}, 400,
         {"error": "missing X-Gitlab-Event header"}, {}, "no event header"),
        ("generic", body_of({**RELEASE, "extra": 1}), None, 422, None, {}, "unmappable payload (extra)"),
        ("generic", body_of({**RELEASE, "environment": "production"}), None, 422,
         {"error": "no deployment 'canary-release/production' for environment 'production'", "fields": ["environment"]},
         {}, "deployment canary-release/production not found"),
    ]
    for route, content, headers, status, expected, answer_headers, reason in cases:
        caplog.clear()
        headers = headers if headers is not None else generic_headers(content)
        response = run(send(app, "POST", f"/hooks/{route}", content=content, headers=headers))
        if expected is None:
            expected = {"error": response.json()["error"], "fields": ["extra"]}
            assert "extra" in expected["error"]
        assert_answer(response, status, expected, **answer_headers)
        assert webhook_lines(caplog) == [f"{route} webhook from {CLIENT} answered {status}: {reason}"], reason
    assert starter.runs == {}


def test_an_unmappable_payload_is_422_with_the_mappings_own_message(caplog):
    app, _ = make()
    response = post_generic(app, {"service": "checkout"})
    answer = response.json()
    assert response.status_code == 422 and answer["fields"] == ["version"]
    assert "version" in answer["error"] and answer["error"] != "None"
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    caplog.clear()
    response = post_generic(app, {"service": "Bad_Name", "version": "v2", "environment": "qa"})
    fields = response.json()["fields"]
    assert response.status_code == 422 and {"service", "environment"} <= set(fields)
    assert webhook_lines(caplog) == [f"generic webhook from {CLIENT} answered 422: "
                                     f"unmappable payload ({', '.join(fields)})"]


def test_a_request_without_a_client_address_is_logged_as_unknown(caplog):
    app, _ = make()
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    caplog.clear()
    status, _, body = asgi_exchange(app, "/hooks/generic", [(b"content-type", b"application/json")],
                                    whole(b"{}"), client=None)
    assert (status, body) == (401, b'{"error":"signature missing"}')
    assert webhook_lines(caplog) == ["generic webhook from unknown answered 401: signature headers missing"]


def test_the_rate_limit_answer_and_its_buckets_per_client(caplog):
    app, starter = make(rate_limit_per_second=0.001, rate_limit_burst=1)
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")

    def post_from(address: str):
        body = body_of({**RELEASE, "version": f"v{len(starter.runs) + 10}"})
        return asgi_exchange(app, "/hooks/generic", raw_headers(generic_headers(body)), whole(body),
                             client=(address, 4000))

    assert post_from("10.0.0.1")[0] == 202
    caplog.clear()
    status, headers, answer = post_from("10.0.0.1")
    assert (status, answer, headers["retry-after"]) == (429, b'{"error":"rate limit exceeded"}', "1000")
    assert webhook_lines(caplog) == ["generic webhook from 10.0.0.1 answered 429: rate limited"]
    assert post_from("10.0.0.2")[0] == 202  # another client has a bucket of its own


def test_the_request_head_cap_is_inclusive_and_logged_with_the_heads_size(caplog):
    body = body_of(RELEASE)
    headers = raw_headers({**generic_headers(body), "x-padding": "p" * 1500})
    size = sum(len(name) + len(value) + 4 for name, value in headers)
    app, _ = make(max_header_bytes=size)
    assert asgi_exchange(app, "/hooks/generic", headers, whole(body))[0] == 202
    app, starter = make(max_header_bytes=size - 1)
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    caplog.clear()
    status, answer_headers, answer = asgi_exchange(app, "/hooks/generic", headers, whole(body))
    assert (status, answer, answer_headers["connection"]) == (
        431, compact({"error": f"request head larger than {size - 1} bytes"}), "close")
    assert webhook_lines(caplog) == [f"generic webhook from {CLIENT} answered 431: head of {size} bytes over the cap"]
    assert starter.runs == {}


def test_a_body_of_exactly_the_cap_is_accepted_declared_or_streamed():
    body = body_of(RELEASE)
    for declared in (True, False):
        app, starter = make(max_body_bytes=len(body))
        headers = {**generic_headers(body), **({"content-length": str(len(body))} if declared else {})}
        chunks = [{"type": "http.request", "body": body[:7], "more_body": True},
                  {"type": "http.request", "body": body[7:], "more_body": False}]
        status, _, answer = asgi_exchange(app, "/hooks/generic", raw_headers(headers), chunks)
        assert status == 202, (declared, answer)
        assert len(starter.runs) == 1


def test_a_streamed_body_over_the_cap_is_413_closing_the_connection(caplog):
    app, starter = make(max_body_bytes=1000)
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    caplog.clear()
    body = b"x" * 1200
    chunks = [{"type": "http.request", "body": body[:600], "more_body": True},
              {"type": "http.request", "body": body[600:], "more_body": False}]
    status, headers, answer = asgi_exchange(app, "/hooks/generic", raw_headers(generic_headers(body)), chunks)
    assert (status, answer, headers["connection"]) == (413, b'{"error":"body larger than 1000 bytes"}', "close")
    assert webhook_lines(caplog) == [
        f"generic webhook from {CLIENT} answered 413: streamed body over the cap of 1000 bytes"]
    assert starter.runs == {}


def test_a_content_length_that_is_not_a_plain_number_is_400(caplog):
    app, starter = make()
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    body = body_of(RELEASE)
    for declared in (b"abc", b"\xb2", b"-1"):  # "\xb2" is a superscript two: a digit, but not ASCII
        caplog.clear()
        headers = [*raw_headers(generic_headers(body)), (b"content-length", declared)]
        status, _, answer = asgi_exchange(app, "/hooks/generic", headers, whole(body))
        assert (status, answer) == (400, b'{"error":"invalid Content-Length"}'), declared
        assert webhook_lines(caplog) == [f"generic webhook from {CLIENT} answered 400: invalid Content-Length"]
    assert starter.runs == {}


def test_a_body_cut_off_at_the_deadline_closes_the_connection_and_logs_what_arrived(caplog):
    app, starter = make(body_timeout_seconds=0.2)
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    caplog.clear()
    body = body_of(RELEASE)
    status, headers, answer = asgi_exchange(app, "/hooks/generic", raw_headers(generic_headers(body)),
                                            [{"type": "http.request", "body": body[:20], "more_body": True}])
    assert (status, answer, headers["connection"]) == (408, b'{"error":"body not received within 0.2 s"}', "close")
    assert webhook_lines(caplog) == [
        f"generic webhook from {CLIENT} answered 408: body read deadline (20 bytes in 0.2 s)"]
    assert starter.runs == {}


def test_a_client_that_disconnects_mid_body_is_400(caplog):
    app, starter = make()
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    caplog.clear()
    body = body_of(RELEASE)
    status, _, answer = asgi_exchange(app, "/hooks/generic", raw_headers(generic_headers(body)),
                                      [{"type": "http.request", "body": body[:5], "more_body": True},
                                       {"type": "http.disconnect"}])
    assert (status, answer) == (400, b'{"error":"client disconnected"}')
    assert webhook_lines(caplog) == [f"generic webhook from {CLIENT} answered 400: client disconnected"]
    assert starter.runs == {}


def test_only_githubs_form_encoded_delivery_is_unwrapped():
    from urllib.parse import urlencode

    app, starter = make()
    wrapped = urlencode({"payload": json.dumps(RELEASE)}).encode()
    response = run(send(app, "POST", "/hooks/generic", content=wrapped, headers=generic_headers(wrapped)))
    assert response.status_code == 400, response.text  # the generic route takes JSON only
    gh = urlencode({"payload": json.dumps(github_deployment())}).encode()
    response = run(send(app, "POST", "/hooks/github", content=gh, headers={**github_headers(gh),
                                                                            "content-type": "text/plain"}))
    assert response.status_code == 400, response.text  # not declared form-encoded: read as JSON
    junk = gh + b"&junk"
    response = run(send(app, "POST", "/hooks/github", content=junk,
                        headers={**github_headers(junk), "content-type": "application/x-www-form-urlencoded"}))
    assert_answer(response, 400, {"error": "body is not valid JSON"})
    assert starter.runs == {}


def test_a_github_delivery_without_a_content_type_is_read_as_json():
    app, starter = make()
    body = body_of(github_deployment())
    headers = [(k.encode(), v.encode()) for k, v in github_headers(body).items() if k != "content-type"]
    status, _, answer = asgi_exchange(app, "/hooks/github", headers, whole(body))
    assert status == 202, answer
    assert len(starter.runs) == 1


def test_the_configured_json_depth_is_the_limit():
    app, starter = make(max_json_depth=3)
    response = post_generic(app, {**RELEASE, "spec": {"labels": {"a": {"b": 1}}}})
    assert response.status_code == 400 and "deep" in response.json()["error"], response.text
    assert starter.runs == {}


def test_events_outside_the_allow_lists_are_answered_202_with_the_reason_and_logged(caplog):
    app, starter = make(github_events=["workflow_run"], github_workflows=["release"])
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    caplog.clear()
    workflow = body_of({"action": "completed", "repository": {"name": "checkout"},
                        "workflow_run": {"name": "lint", "conclusion": "success", "head_sha": "a" * 40}})
    response = run(send(app, "POST", "/hooks/github", content=workflow,
                        headers=github_headers(workflow, event="workflow_run", delivery="wf-1")))
    reason = "workflow 'lint' is not one of the configured workflows"
    assert_answer(response, 202, {"ignored": reason, "delivery": "wf-1"})
    pipeline = body_of(gitlab_pipeline())
    response = run(send(app, "POST", "/hooks/gitlab", content=pipeline,
                        headers=gitlab_headers(event="Push Hook", delivery="gl-1")))
    assert_answer(response, 202, {"ignored": "GitLab event 'Push Hook' is not in the allow-list", "delivery": "gl-1"})
    assert webhook_lines(caplog) == [f"github delivery wf-1 ignored: {reason}",
                                     "gitlab delivery gl-1 ignored: GitLab event 'Push Hook' is not in the allow-list"]
    assert starter.runs == {}


def test_spec_overrides_are_taken_by_default_and_can_be_refused_on_the_ci_routes():
    app, starter = make()
    body = body_of(github_deployment(spec={"steps": [50, 100]}))
    response = run(send(app, "POST", "/hooks/github", content=body, headers=github_headers(body)))
    assert response.status_code == 202, response.text
    [stored] = starter.runs.values()
    assert stored["request"].parameters["spec"]["steps"] == [50, 100]
    app, starter = make(allow_spec_overrides=False)
    response = post_generic(app, {**RELEASE, "spec": {"steps": [50, 100]}})
    assert response.status_code == 422 and response.json()["fields"] == ["spec"], response.text
    body = body_of(github_deployment(spec={"steps": [50, 100]}))
    response = run(send(app, "POST", "/hooks/github", content=body, headers=github_headers(body)))
    assert response.status_code == 422 and response.json()["fields"] == ["deployment.payload.spec"], response.text
    assert starter.runs == {}


def test_the_base_spec_fills_what_a_ci_delivery_leaves_out(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("service: ignored\nenvironment: staging\nstep_wait_seconds: 30\n")
    app, starter = make(base_spec=base)
    assert post_generic(app).status_code == 202
    [stored] = starter.runs.values()
    assert stored["request"].parameters["spec"]["step_wait_seconds"] == 30


def test_orchestrator_refusals_and_outages_are_answered_and_logged(caplog):
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    cases = [
        (StartOnly(RunRejected("the deployment refused the run parameters")), {}, 422,
         {"error": "the deployment refused the run parameters", "fields": ["spec"]}, {}, "run parameters refused"),
        (StartOnly(StarterUnavailable("Prefect API unreachable (ConnectError)")), {}, 503,
         {"error": "orchestrator unavailable, retry later"}, {"retry_after": "5"},
         "Prefect API unreachable (ConnectError)"),
        (StartOnly(delay=1.0), {"start_timeout_seconds": 0.05}, 503,
         {"error": "orchestrator unavailable, retry later"}, {"retry_after": "5"}, "Prefect API too slow"),
    ]
    for starter, config, status, expected, headers, reason in cases:
        app = create_app(WebhookConfig(rate_limit_per_second=0, **config), starter=starter, secrets=SECRETS)
        caplog.clear()
        assert_answer(post_generic(app), status, expected, **headers)
        assert webhook_lines(caplog) == [f"generic webhook from {CLIENT} answered {status}: {reason}"]


def test_different_deliveries_start_their_runs_at_the_same_time():
    class Overlapping(InMemoryStarter):
        in_flight = peak = 0

        async def start(self, request):
            Overlapping.in_flight += 1
            Overlapping.peak = max(Overlapping.peak, Overlapping.in_flight)
            await asyncio.sleep(0.05)
            Overlapping.in_flight -= 1
            return await super().start(request)

    app, starter = make(Overlapping())

    async def two():
        bodies = [body_of({**RELEASE, "version": v}) for v in ("v5", "v6")]
        return await asyncio.gather(*(send(app, "POST", "/hooks/generic", content=b, headers=generic_headers(b))
                                      for b in bodies))

    assert [a.status_code for a in run(two())] == [202, 202]
    assert Overlapping.peak == 2 and len(starter.runs) == 2


def test_an_unexpected_error_is_a_bare_500_and_logged(caplog):
    app = create_app(WebhookConfig(rate_limit_per_second=0), starter=StartOnly(RuntimeError("boom")),
                     secrets=SECRETS)
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    caplog.clear()

    async def post():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            body = body_of(RELEASE)
            return await client.post("/hooks/generic", content=body, headers=generic_headers(body))

    assert_answer(run(post()), 500, {"error": "internal error"})
    assert webhook_lines(caplog, "ERROR") == ["unexpected RuntimeError while handling /hooks/generic"]


def test_wrong_methods_are_405_naming_the_allowed_ones():
    app, _ = make()
    run_id = "0b0e3c7e-6a39-4f7a-9b1e-2f1f6f3d9a10"
    routes = (("GET", "/hooks/github", {"POST"}), ("POST", f"/hooks/runs/{run_id}", {"GET", "HEAD"}),
              ("POST", "/healthz", {"GET", "HEAD"}))
    for method, path, allowed in routes:
        response = run(send(app, method, path, content=b"{}"))
        assert_answer(response, 405, {"error": "method not allowed"})
        assert set(response.headers["allow"].split(", ")) == allowed  # in no particular order
    assert_answer(run(send(app, "GET", "/healthz")), 200, {"status": "ok"})


def test_shutting_the_app_down_closes_the_starter():
    class Closing(InMemoryStarter):
        closed = False

        async def aclose(self):
            Closing.closed = True

    app, _ = make(Closing())
    events = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive():
        if len(sent) == 1:
            assert Closing.closed is False  # still serving after startup
        return events.pop(0)

    async def send_(message):
        sent.append(message["type"])

    run(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send_))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert Closing.closed is True


# --- the run status route: exact answers ---------------------------------------------------------------

def status_of(app, run_id: str, token: str | None, *, client: tuple[str, int] = ("127.0.0.1", 5555)):
    headers = [(b"authorization", f"Bearer {token}".encode())] if token is not None else []
    status, headers, body = asgi_exchange(app, f"/hooks/runs/{run_id}", headers, [], method="GET", client=client)
    return status, headers, json.loads(body)


def test_the_status_of_a_run_is_answered_exactly_with_its_caching_headers():
    app, starter = make()
    started = post_generic(app).json()
    run_id, token = started["flow_run_id"], started["status_token"]
    name = "release/checkout/v2/staging"
    response = run(send(app, "GET", f"/hooks/runs/{run_id}", headers={"authorization": f"Bearer {token}"}))
    expected = {"flow_run_id": run_id, "flow_run_name": name, "state": "Scheduled", "ended": False,
                "outcome": "running", "exit_code": 3, "line": response.json()["line"], "message": "",
                "ui_url": None}
    assert_answer(response, 200, expected, cache_control="no-store", retry_after="15")
    assert response.json()["line"].startswith(f"{name} ({run_id}): ")
    starter.end(run_id, Completed())
    response = run(send(app, "GET", f"/hooks/runs/{run_id}", headers={"authorization": f"Bearer {token}"}))
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    assert "retry-after" not in response.headers
    assert (response.json()["state"], response.json()["ended"], response.json()["exit_code"]) == ("Completed", True, 0)


def test_a_status_token_of_any_configured_route_reads_its_run():
    secrets = WebhookSecrets(gitlab=SecretStr(GITLAB_TOKEN), fleet=SecretStr(FLEET_SECRET))  # others unset
    app, starter = make(InMemoryStarter(deployments=("canary-fleet/fleet", "canary-release/production")),
                        secrets=secrets)
    body = body_of({"version": "v2", "environment": "production", "services": ["checkout"]})
    started = run(send(app, "POST", "/hooks/fleet", content=body, headers=fleet_headers(body))).json()
    assert started["status_token"] == status_token(FLEET_SECRET, started["flow_run_id"])
    status, _, answer = status_of(app, started["flow_run_id"], started["status_token"])
    assert status == 200 and answer["flow_run_id"] == started["flow_run_id"]


def test_status_refusals_are_answered_exactly_and_logged(caplog):
    class Counting(InMemoryStarter):
        lookups = 0

        async def run_status(self, flow_run_id):
            Counting.lookups += 1
            return await super().run_status(flow_run_id)

    app, starter = make(Counting())
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    started = post_generic(app).json()
    run_id = started["flow_run_id"]
    unknown = "0b0e3c7e-6a39-4f7a-9b1e-2f1f6f3d9a10"
    cases = [
        (run_id, None, 401, "status token invalid", "status token invalid"),
        (run_id, "0" * 64, 401, "status token invalid", "status token invalid"),
        ("not-a-run", status_token(GENERIC_SECRET, "not-a-run"), 401, "status token invalid", "status token invalid"),
        (unknown, status_token(GENERIC_SECRET, unknown), 404, "no such run", f"no flow run {unknown}"),
    ]
    for flow_run_id, token, status, error, reason in cases:
        caplog.clear()
        assert status_of(app, flow_run_id, token)[::2] == (status, {"error": error}), flow_run_id
        assert webhook_lines(caplog) == [f"run status from {CLIENT} answered {status}: {reason}"]
    assert Counting.lookups == 1  # only the well-formed id with its token was looked up
    caplog.clear()
    status, _, answer = status_of(app, run_id, started["status_token"])
    assert (status, answer["flow_run_id"]) == (200, run_id) and webhook_lines(caplog) == []


def test_status_without_a_run_lookup_is_404(caplog):
    app = create_app(WebhookConfig(rate_limit_per_second=0), starter=StartOnly(), secrets=SECRETS)
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    caplog.clear()
    run_id = "00000000-0000-4000-8000-000000000001"
    assert status_of(app, run_id, status_token(GENERIC_SECRET, run_id))[::2] == (404, {"error": "no such run"})
    assert webhook_lines(caplog) == [f"run status from {CLIENT} answered 404: no run lookup"]


def test_status_when_the_orchestrator_is_down_or_slow_is_503_with_retry_after(caplog):
    class Down(InMemoryStarter):
        async def run_status(self, flow_run_id):
            raise StarterUnavailable("Prefect API answered 502")

    class Slow(InMemoryStarter):
        async def run_status(self, flow_run_id):
            await asyncio.sleep(1)
            return await super().run_status(flow_run_id)

    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    for starter, reason in ((Down(), "Prefect API answered 502"), (Slow(), "Prefect API too slow")):
        app, _ = make(starter, start_timeout_seconds=0.05)
        started = post_generic(app).json()
        caplog.clear()
        status, headers, answer = status_of(app, started["flow_run_id"], started["status_token"])
        assert (status, headers["retry-after"]) == (503, "5")
        assert answer == {"error": "orchestrator unavailable, retry later"}
        assert webhook_lines(caplog) == [f"run status from {CLIENT} answered 503: {reason}"]


def test_status_polls_are_rate_limited_per_client_and_head_size_capped(caplog):
    app, _ = make(rate_limit_per_second=0.001, rate_limit_burst=1)
    started = post_generic(app).json()
    run_id, token = started["flow_run_id"], started["status_token"]
    assert status_of(app, run_id, token, client=("10.0.0.1", 1))[0] == 200
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    caplog.clear()
    status, headers, answer = status_of(app, run_id, token, client=("10.0.0.1", 1))
    assert (status, answer, headers["retry-after"]) == (429, {"error": "rate limit exceeded"}, "1000")
    assert webhook_lines(caplog) == ["run status from 10.0.0.1 answered 429: rate limited"]
    assert status_of(app, run_id, token, client=("10.0.0.2", 1))[0] == 200
    app, _ = make(max_header_bytes=1024)
    status, _, body = asgi_exchange(app, f"/hooks/runs/{run_id}", [(b"authorization", b"Bearer " + b"t" * 1100)], [],
                                    method="GET")
    assert status == 431 and json.loads(body) == {"error": "request head larger than 1024 bytes"}
    caplog.clear()
    status, _, body = asgi_exchange(app, f"/hooks/runs/{run_id}", [(b"authorization", b"Bearer x")], [],
                                    method="GET", client=None)
    assert status == 401
    assert webhook_lines(caplog) == ["run status from unknown answered 401: status token invalid"]


# --- Alertmanager and fleet routes: exact answers ---------------------------------------------------------

ON_RECORD = {"service": "checkout", "version": "v2", "environment": "production"}


def alert_app(releases=None, starter=None, **config):
    config.setdefault("rate_limit_per_second", 0)
    starter = starter if starter is not None else Orchestrator(
        deployments=("canary-rollback/manual",),
        releases={("checkout", "production"): dict(ON_RECORD)} if releases is None else releases)
    app = create_app(WebhookConfig(**config), starter=starter,
                     secrets=WebhookSecrets(alertmanager=SecretStr(ALERTMANAGER_TOKEN)))
    return app, starter


def post_alerts(app, payload):
    return run(send(app, "POST", "/hooks/alertmanager", content=body_of(payload), headers=bearer_headers()))


def test_a_rollback_answer_lists_each_run_and_a_resend_is_200(caplog):
    app, starter = alert_app()
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    caplog.clear()
    payload = alertmanager_payload(firing_alert(), firing_alert(status="resolved", fingerprint="0123456789abcdef"))
    first = post_alerts(app, payload)
    assert first.status_code == 202, first.text
    [started] = first.json()["runs"]
    run_id, key = started["flow_run_id"], "alertmanager:9f3b1c2d4e5f6a7b:2026-03-01T10:00:00.123456789Z"
    delivery = first.json()["delivery"]
    expected_run = {"flow_run_id": run_id, "flow_run_name": "rollback/checkout/production",
                    "ui_url": f"http://prefect.test/runs/{run_id}", "duplicate": False, "idempotency_key": key,
                    "alertname": "HighErrorRateProduction", "fingerprint": "9f3b1c2d4e5f6a7b", "service": "checkout",
                    "environment": "production"}
    ignored = [{"alertname": "HighErrorRateProduction", "fingerprint": "0123456789abcdef",
                "reason": first.json()["ignored"][0]["reason"]}]
    assert "resolved" in ignored[0]["reason"]
    assert_answer(first, 202, {"runs": [expected_run], "ignored": ignored, "deployment": "canary-rollback/manual",
                               "delivery": delivery})
    assert delivery == signed_key("alertmanager", body_of(payload)).partition(":")[2]
    again = post_alerts(app, payload)
    assert_answer(again, 200, {"runs": [{**expected_run, "duplicate": True}], "ignored": ignored,
                               "deployment": "canary-rollback/manual", "delivery": delivery})
    line = f"rollback run {run_id} for checkout (production) on HighErrorRateProduction"
    assert webhook_lines(caplog) == [
        f"alertmanager delivery {delivery}: started {line}", f"alertmanager delivery {delivery}: 1 alert(s) ignored",
        f"alertmanager delivery {delivery}: existing {line}", f"alertmanager delivery {delivery}: 1 alert(s) ignored"]
    [stored] = starter.runs.values()
    request = stored["request"]
    assert (request.deployment, request.idempotency_key, request.run_name) == (
        "canary-rollback/manual", key, "rollback/checkout/production")
    assert request.tags == ("webhook", "source:alertmanager", "alert:HighErrorRateProduction", "service:checkout",
                            "environment:production")
    assert list(request.parameters) == ["spec", "reason", "detail"] and is_plain_json(request.parameters)
    assert request.parameters["reason"] == "alert"
    assert request.parameters["detail"] == ("HighErrorRateProduction: Canary of checkout (production) has a 2.5% "
                                            "error rate")
    assert (request.parameters["spec"]["service"], request.parameters["spec"]["version"]) == ("checkout", "v2")


def test_an_alert_without_a_release_on_record_is_422_and_the_next_alert_still_rolls_back(caplog):
    app, starter = alert_app()
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    caplog.clear()
    payload = alertmanager_payload(firing_alert(service="cart", fingerprint="abcdef0123456789"),
                                   firing_alert(service="shop", fingerprint="bcdef0123456789a"), firing_alert())
    response = post_alerts(app, payload)
    answer = response.json()
    [started] = answer["runs"]
    unreleased = "cart (production), shop (production)"
    assert_answer(response, 422, {"error": f"no release on record for {unreleased}", "fields": ["labels.service"],
                                  "runs": [started], "ignored": [], "deployment": "canary-rollback/manual",
                                  "delivery": answer["delivery"]})
    assert started["service"] == "checkout" and len(starter.runs) == 1
    assert webhook_lines(caplog)[-1] == (f"alertmanager delivery {answer['delivery']}: no release on record for "
                                         f"{unreleased}")


def test_alertmanager_refusals_are_answered_exactly_and_logged(caplog):
    class Slow(InMemoryStarter):
        async def latest_release_spec(self, service, environment):
            await asyncio.sleep(1)
            return dict(ON_RECORD)

    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    two = alertmanager_payload(firing_alert(), firing_alert("HighLatencyProduction", fingerprint="0a1b2c3d4e5f6071"))
    unavailable = {"error": "orchestrator unavailable, retry later"}
    cases = [
        (alert_app(max_alerts=1), two, 422,
         {"error": "2 alerts in one notification, at most 1 are taken (set max_alerts in Alertmanager's "
                   "webhook_config)", "fields": ["alerts"]}, "unmappable Alertmanager payload"),
        (alert_app(starter=StartOnly()), two, 503, unavailable, "no release lookup configured"),
        (alert_app(starter=Slow(), start_timeout_seconds=0.05), two, 503, unavailable, "Prefect API too slow"),
        (alert_app(releases={("checkout", "production"): {"service": "checkout", "version": "v2",
                                                          "environment": "production", "steps": [150]}}),
         two, 422, {"error": "the release of 'checkout' (production) on record has no valid spec", "fields": ["spec"]},
         "invalid release spec on record for checkout"),
        (alert_app(rollback_deployment="canary-rollback/nope"), two, 422,
         {"error": "no rollback deployment 'canary-rollback/nope'", "fields": ["rollback_deployment"]},
         "deployment canary-rollback/nope not found"),
    ]
    for (app, starter), payload, status, expected, reason in cases:
        caplog.clear()
        assert_answer(post_alerts(app, payload), status, expected)
        assert webhook_lines(caplog, "WARNING") == [f"alertmanager webhook from {CLIENT} answered {status}: {reason}"]
        assert not getattr(starter, "runs", None) and not getattr(starter, "requests", None)


def test_a_release_lookup_that_fails_is_503_logged_with_its_reason(caplog):
    class Down(InMemoryStarter):
        async def latest_release_spec(self, service, environment):
            raise StarterUnavailable("Prefect API answered 500")

    app, _ = alert_app(starter=Down())
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    caplog.clear()
    assert_answer(post_alerts(app, alertmanager_payload(firing_alert())), 503,
                  {"error": "orchestrator unavailable, retry later"}, retry_after="5")
    assert webhook_lines(caplog) == [f"alertmanager webhook from {CLIENT} answered 503: Prefect API answered 500"]


FLEET_RELEASE = {"version": "v2", "environment": "production", "services": ["checkout", "payments"],
                 "waves": [1, "rest"]}


def fleet_receiver(starter=None, **config):
    starter = starter if starter is not None else Orchestrator(
        deployments=("canary-fleet/fleet", "canary-release/production"))
    return make(starter, secrets=WebhookSecrets(fleet=SecretStr(FLEET_SECRET)), **config)


def post_fleet_release(app, payload=FLEET_RELEASE, **header_kwargs):
    body = body_of(payload)
    return run(send(app, "POST", "/hooks/fleet", content=body, headers=fleet_headers(body, **header_kwargs)))


def test_a_fleet_answer_names_the_run_the_services_and_the_waves(caplog):
    app, starter = fleet_receiver()
    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    caplog.clear()
    ts = int(time.time())
    first = post_fleet_release(app, delivery="fl-1", timestamp=ts)
    run_id = first.json()["flow_run_id"]
    key = signed_key("fleet", generic_message(ts, body_of(FLEET_RELEASE)))
    expected = {"flow_run_id": run_id, "flow_run_name": "fleet/v2/production/2-services",
                "ui_url": f"http://prefect.test/runs/{run_id}", "duplicate": False, "delivery": "fl-1",
                "status_url": f"/hooks/runs/{run_id}", "status_token": status_token(FLEET_SECRET, run_id),
                "idempotency_key": key, "deployment": "canary-fleet/fleet",
                "release_deployment": "canary-release/production", "version": "v2", "environment": "production",
                "services": ["checkout", "payments"], "waves": [["checkout"], ["payments"]]}
    assert_answer(first, 202, expected)
    again = post_fleet_release(app, delivery="fl-2", timestamp=ts)
    assert_answer(again, 200, {**expected, "duplicate": True, "delivery": "fl-2"})
    line = f"flow run {run_id} (fleet/v2/production/2-services) for 2 services -> v2 production"
    assert webhook_lines(caplog) == [f"fleet delivery fl-1: started {line}", f"fleet delivery fl-2: existing {line}"]
    [stored] = starter.runs.values()
    assert is_plain_json(stored["request"].parameters) and list(stored["request"].parameters) == ["spec"]


def test_fleet_refusals_are_answered_exactly_and_logged(caplog):
    class SlowLookup(InMemoryStarter):
        async def has_deployment(self, name):
            await asyncio.sleep(1)
            return True

    class DownLookup(InMemoryStarter):
        async def has_deployment(self, name):
            raise StarterUnavailable("Prefect API answered 503")

    caplog.set_level(logging.INFO, logger="canaryflow.webhook")
    unavailable = {"error": "orchestrator unavailable, retry later"}
    cases = [
        (fleet_receiver(InMemoryStarter(deployments=("canary-fleet/fleet",))), FLEET_RELEASE, 422,
         {"error": "no deployment 'canary-release/production' for environment 'production'", "fields": ["environment"]},
         "deployment canary-release/production not found"),
        (fleet_receiver(InMemoryStarter(deployments=("canary-release/production",))), FLEET_RELEASE, 422,
         {"error": "no fleet deployment 'canary-fleet/fleet'", "fields": ["fleet_deployment"]},
         "deployment canary-fleet/fleet not found"),
        (fleet_receiver(SlowLookup(), start_timeout_seconds=0.05), FLEET_RELEASE, 503, unavailable,
         "Prefect API too slow"),
        (fleet_receiver(DownLookup()), FLEET_RELEASE, 503, unavailable, "Prefect API answered 503"),
        (fleet_receiver(), {"version": "v2"}, 422, None, "unmappable fleet payload (services)"),
        (fleet_receiver(), {"version": "v2", "services": ["checkout", 7, None]}, 422, None,
         "unmappable fleet payload (services.1, services.2)"),
    ]
    for (app, starter), payload, status, expected, reason in cases:
        caplog.clear()
        response = post_fleet_release(app, payload)
        if expected is None:
            expected = {"error": response.json()["error"], "fields": reason.partition("(")[2][:-1].split(", ")}
            assert all(field in expected["error"] for field in expected["fields"])
        assert_answer(response, status, expected)
        assert webhook_lines(caplog) == [f"fleet webhook from {CLIENT} answered {status}: {reason}"]
        assert starter.runs == {}
