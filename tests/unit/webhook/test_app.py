"""The receiver over ASGI with an in-memory starter: every status code and what it guarantees.

No request that fails a gate reaches the starter (``starter.runs`` stays empty)."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx
from pydantic import SecretStr

from canaryflow.webhook import WebhookConfig, WebhookSecrets, create_app
from canaryflow.webhook.replay import signed_key
from canaryflow.webhook.signatures import generic_message, sign_generic
from canaryflow.webhook.starter import InMemoryStarter, StarterUnavailable
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
        await asyncio.sleep(3600)

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
