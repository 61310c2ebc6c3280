"""Hostile deliveries against the receiver served over real HTTP, starting runs on a real Prefect server.

The kinds of issue 10 — replays through whitespace, simultaneous copies, replays after a restart or
on another replica, signed input that once raised (deep JSON, wrong JSON types, lone surrogates,
NaN/Infinity, bad images, non-finite spec numbers), slow clients — and others: every field the
mapping uses replaced by a value of the wrong kind, forged and stale signatures, oversized bodies.
The Prefect API is the judge: the deployments' run counts, read after the barrage.
Every loop is bounded; the deployments belong to this module alone.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from canaryflow.webhook import WebhookConfig, WebhookSecrets, create_app
from tests.integration.served import ServedApp, connect, raw_request, read_answer
from tests.integration.test_webhook import count_runs, read_run
from tests.integration.test_webhook_alertmanager import record_release
from tests.unit.webhook.support import (
    ALERTMANAGER_TOKEN,
    GENERIC_SECRET,
    GITHUB_SECRET,
    GITLAB_TOKEN,
    alertmanager_payload,
    bearer_headers,
    body_of,
    firing_alert,
    generic_headers,
    github_headers,
    gitlab_headers,
)
from tests.unit.webhook.test_app import HOSTILE_SIGNED, WHITESPACE_INSIDE

pytestmark = pytest.mark.timeout(240)

TEMPLATE = "canary-release/webhook-hostile-{environment}"
ROLLBACK = "canary-rollback/webhook-hostile"
SECRETS = WebhookSecrets(github=SecretStr(GITHUB_SECRET), gitlab=SecretStr(GITLAB_TOKEN),
                         generic=SecretStr(GENERIC_SECRET), alertmanager=SecretStr(ALERTMANAGER_TOKEN))
CONFIG = WebhookConfig(deployment_template=TEMPLATE, rollback_deployment=ROLLBACK, rate_limit_per_second=0,
                       body_timeout_seconds=1, header_timeout_seconds=1)


@pytest.fixture(scope="module")
def deployments(prefect_server) -> list[str]:
    from flows.release import canary_release
    from flows.rollback import canary_rollback

    ids = [str(canary_release.to_deployment(name=f"webhook-hostile-{env}").apply())
           for env in ("staging", "production")]
    return [*ids, str(canary_rollback.to_deployment(name="webhook-hostile").apply())]


def all_runs(deployments: list[str]) -> int:
    return sum(count_runs(deployment) for deployment in deployments)


def serve() -> ServedApp:
    """A receiver with state of its own (a restart, or another replica) on the same Prefect server."""
    return ServedApp(create_app(CONFIG, secrets=SECRETS), config=CONFIG)


@pytest.fixture
def receiver(deployments) -> Iterator[ServedApp]:
    with serve() as served:
        yield served


def post(served: ServedApp, route: str, body: Any, headers: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{served.url}/hooks/{route}", content=body, headers=headers, timeout=30)


# --- what a legitimate sender sends -----------------------------------------------------------------

def deployment_event(service: str, sha: str) -> dict[str, Any]:
    """A GitHub deployment in which every field is one the mapping uses (so any change is seen)."""
    return {"repository": {"name": service},
            "deployment": {"environment": "staging", "sha": sha, "payload": {"image": f"ghcr.io/acme/{service}:v1"}}}


def pipeline_event(service: str, sha: str) -> dict[str, Any]:
    return {"project": {"name": service}, "object_attributes": {
        "status": "success", "sha": sha,
        "variables": [{"key": "CANARYFLOW_IMAGE", "value": f"reg.example/{service}:1"}]}}


def generic_release(service: str, version: str) -> dict[str, Any]:
    return {"service": service, "version": version, "image": f"ghcr.io/acme/{service}:{version}",
            "spec": {"step_wait_seconds": 5}}


def legit(service: str) -> dict[str, tuple[bytes, dict[str, Any]]]:
    """One signed delivery per route, each meaning one new run."""
    sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    gh = body_of(deployment_event(service, sha))
    gl = body_of(pipeline_event(service, sha))
    gen = body_of(generic_release(service, f"v{sha[:8]}"))
    am = body_of(alertmanager_payload(firing_alert(service=service, fingerprint=sha[:16])))
    return {"github": (gh, github_headers(gh)), "gitlab": (gl, gitlab_headers()),
            "generic": (gen, generic_headers(gen)), "alertmanager": (am, bearer_headers())}


# --- hostile variations ----------------------------------------------------------------------------

E999 = "@@1e999@@"  # stands for the bare token 1e999, which json.dumps cannot write
WRONG_KIND = [float("nan"), float("inf"), E999, "\ud800", 2**60, 7, True, [], {}]
NOT_A_NUMBER = [float("nan"), float("-inf"), E999, "Infinity", "\ud800", 2**60, [], {}]
#: Per template: the fields the mapping uses and the replacements none of which can make a release.
#: (An empty list where a list is optional, or null where a field is optional, would be a valid
#: release; so would {} as generic spec overrides: those are left out.)
USED_FIELDS: dict[str, list[tuple[tuple, list[Any]]]] = {
    "github": [(("repository",), WRONG_KIND), (("repository", "name"), WRONG_KIND), (("deployment",), WRONG_KIND),
               (("deployment", "environment"), WRONG_KIND), (("deployment", "sha"), WRONG_KIND),
               (("deployment", "payload", "image"), WRONG_KIND)],
    "gitlab": [(("project",), WRONG_KIND), (("project", "name"), WRONG_KIND), (("object_attributes",), WRONG_KIND),
               (("object_attributes", "sha"), WRONG_KIND),
               (("object_attributes", "variables"), [v for v in WRONG_KIND if v != []]),
               (("object_attributes", "variables", 0), WRONG_KIND),
               (("object_attributes", "variables", 0, "key"), WRONG_KIND),
               (("object_attributes", "variables", 0, "value"), WRONG_KIND)],
    "generic": [(("service",), WRONG_KIND), (("version",), WRONG_KIND), (("image",), WRONG_KIND),
                (("spec",), [v for v in WRONG_KIND if v != {}]), (("spec", "step_wait_seconds"), NOT_A_NUMBER)],
    "alertmanager": [(("alerts",), [v for v in WRONG_KIND if v != []]), (("alerts", 0), WRONG_KIND),
                     (("alerts", 0, "status"), WRONG_KIND), (("alerts", 0, "startsAt"), WRONG_KIND),
                     (("alerts", 0, "fingerprint"), WRONG_KIND), (("alerts", 0, "labels"), WRONG_KIND),
                     (("alerts", 0, "labels", "alertname"), WRONG_KIND),
                     (("alerts", 0, "labels", "service"), WRONG_KIND),
                     (("alerts", 0, "labels", "environment"), WRONG_KIND),
                     (("alerts", 0, "annotations"), WRONG_KIND)],  # changes nothing that matters: a resend
}


def replaced(document: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    copy = dict(document) if isinstance(document, dict) else list(document)
    copy[path[0]] = replaced(copy[path[0]], path[1:], value)
    return copy


def encoded(document: Any) -> bytes:
    return json.dumps(document, allow_nan=True).replace(f'"{E999}"', "1e999").encode()


def signed(route: str, body: bytes, event: str | None = None) -> dict[str, Any]:
    if route == "github":
        return github_headers(body, event=event or "deployment")
    if route == "gitlab":
        return gitlab_headers(event=event or "Pipeline Hook")
    if route == "alertmanager":
        return bearer_headers()
    return generic_headers(body)


Attempt = Callable[[], int]  # sends one hostile request, returns the status (0: closed without an answer)


def hostile(served: ServedApp, accepted: dict[str, tuple[bytes, dict[str, Any]]]) -> list[tuple[str, Attempt]]:
    def http(route: str, body: Any, headers: dict[str, Any]) -> Attempt:
        return lambda: post(served, route, body, headers).status_code

    attempts: list[tuple[str, Attempt]] = []
    gh_body, gh_headers = accepted["github"]
    gen_body, gen_headers = accepted["generic"]
    # Replays of accepted deliveries with new delivery ids (one simultaneous volley of 8 each below).
    for n in range(3):
        attempts += [
            ("github replay", http("github", gh_body, {**gh_headers, "x-github-delivery": str(uuid.uuid4())})),
            ("gitlab replay", http("gitlab", accepted["gitlab"][0], gitlab_headers())),
            ("gitlab replay, forged Idempotency-Key", http("gitlab", accepted["gitlab"][0],
                                                          {**gitlab_headers(), "idempotency-key": f"forged-{n}"})),
            ("generic replay", http("generic", gen_body, {**gen_headers, "x-canaryflow-delivery": f"forged-{n}"})),
            ("alertmanager resend", http("alertmanager", *accepted["alertmanager"])),
        ]
    # The same body under another GitHub event: the body decides, so at most the same run.
    for event in ("release", "registry_package", "workflow_run", "ping", "push"):
        attempts.append((f"github body as {event}", http("github", gh_body, {**gh_headers, "x-github-event": event})))
    # Whitespace after "sha256=", sent byte for byte (obs-fold too), with new delivery ids.
    for inside in WHITESPACE_INSIDE:
        for route, body, headers, name in (("github", gh_body, gh_headers, "x-hub-signature-256"),
                                           ("generic", gen_body, gen_headers, "x-canaryflow-signature")):
            raw = [(k, v.encode()) for k, v in headers.items() if k not in (name, "x-github-delivery",
                                                                           "x-canaryflow-delivery")]
            raw.append((name, headers[name].replace("sha256=", "sha256=" + inside).encode("latin-1")))
            raw.append(("x-github-delivery" if route == "github" else "x-canaryflow-delivery",
                        uuid.uuid4().hex.encode()))
            attempts.append((f"{route} whitespace {inside!r}",
                             lambda route=route, raw=raw, body=body:
                             raw_request(served, f"/hooks/{route}", raw, body)[0]))
    # Signed input that once raised: deep JSON, wrong types, lone surrogates, NaN/Infinity, images, 1e999.
    for route, event, body, _ in HOSTILE_SIGNED:
        attempts.append((f"{route} signed hostile", lambda r=route, e=event, b=body: post(served, r, b, signed(r, b, e))
                         .status_code))
    # Every field the mapping uses, replaced by a value of the wrong kind.
    for route, fields in USED_FIELDS.items():
        template = json.loads(accepted[route][0])
        for path, values in fields:
            for value in values:
                body = encoded(replaced(template, path, value))
                attempts.append((f"{route} {'.'.join(map(str, path))}={value!r}",
                                 lambda r=route, b=body: post(served, r, b, signed(r, b)).status_code))
    many = body_of(alertmanager_payload(*(firing_alert(fingerprint=f"{n:016x}") for n in range(CONFIG.max_alerts + 1))))
    attempts.append(("alertmanager too many alerts", http("alertmanager", many, bearer_headers())))
    # Forged, stale, future, missing; sizes; routes.
    big = b'{"service": "x", "pad": "' + b"p" * CONFIG.max_body_bytes + b'"}'
    attempts += [
        ("github forged", http("github", gh_body, github_headers(gh_body, secret="guess"))),
        ("github tampered", http("github", gh_body.replace(b"staging", b"production"), gh_headers)),
        ("generic stale", lambda: post(served, "generic", gen_body, generic_headers(
            gen_body, timestamp=int(time.time()) - CONFIG.timestamp_tolerance_seconds - 60)).status_code),
        ("generic future", lambda: post(served, "generic", gen_body, generic_headers(  # signed when sent
            gen_body, timestamp=int(time.time()) + CONFIG.timestamp_tolerance_seconds + 60)).status_code),
        ("gitlab wrong token", http("gitlab", accepted["gitlab"][0], gitlab_headers(token=GITLAB_TOKEN[:-1]))),
        ("alertmanager wrong token", http("alertmanager", accepted["alertmanager"][0], bearer_headers("nope"))),
        ("unsigned", http("generic", gen_body, {"content-type": "application/json"})),
        ("oversized", http("generic", big, generic_headers(big))),
        ("oversized, chunked", http("generic", (big[i:i + 65536] for i in range(0, len(big), 65536)),
                                    generic_headers(big))),
        ("unknown route", http("bitbucket", gen_body, gen_headers)),
    ]
    return attempts


def slow_clients(served: ServedApp) -> list[int]:
    """A body that stops halfway, one never sent, a head that never ends: 408, 408, closed (0)."""
    gen = body_of(generic_release("slow", "v1"))
    head = b"POST /hooks/generic HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % len(gen)
    head += b"".join(f"{k}: {v}\r\n".encode() for k, v in generic_headers(gen).items()) + b"\r\n"
    statuses = []
    for sent in (head + gen[:10], head, head[:40]):
        with connect(served) as sock:
            sock.sendall(sent)
            answer = read_answer(sock)
        statuses.append(int(answer.split()[1]) if answer else 0)
    return statuses


def test_hostile_deliveries_start_no_run_and_are_never_answered_5xx(receiver, deployments, record_property):
    service = f"hostile-{uuid.uuid4().hex[:6]}"
    record_release(service, "production")
    before = all_runs(deployments)
    accepted = legit(service)
    first = {route: post(receiver, route, body, headers) for route, (body, headers) in accepted.items()}
    assert {route: answer.status_code for route, answer in first.items()} == dict.fromkeys(accepted, 202)
    assert all_runs(deployments) == before + 4  # valid deliveries start exactly one run each
    started = all_runs(deployments)

    tally: Counter[int] = Counter()
    failures = []
    for name, attempt in hostile(receiver, accepted):
        status = attempt()
        tally[status] += 1
        if status >= 500:
            failures.append((name, status))
    for route in ("github", "generic"):  # 8 simultaneous copies, 8 delivery ids
        body, headers = accepted[route]
        copies = [{**headers, "x-github-delivery": str(uuid.uuid4()), "x-canaryflow-delivery": uuid.uuid4().hex}
                  for _ in range(8)]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda h, route=route, body=body: post(receiver, route, body, h), copies))
        assert {a.status_code for a in answers} == {200} and {a.json()["flow_run_id"] for a in answers} == {
            first[route].json()["flow_run_id"]}
        tally.update(a.status_code for a in answers)
    slow = slow_clients(receiver)
    assert slow == [408, 408, 0]
    tally.update(slow)

    created, five_xx = all_runs(deployments) - started, sum(n for status, n in tally.items() if status >= 500)
    record_property("hostile_requests", sum(tally.values()))
    record_property("runs_created", created)
    record_property("answers_5xx", five_xx)
    print(f"\nhostile requests {sum(tally.values())}: runs created {created}, 5xx answers {five_xx}, "
          f"statuses {dict(sorted(tally.items()))}")
    assert failures == []
    assert created == 0
    assert len(receiver.server.config.loaded_app.state.receiver.reservations) == 0  # nothing left in flight


def _volley(targets: list[ServedApp], route: str, body: bytes, headers: dict[str, Any]) -> list[httpx.Response]:
    """8 copies with 8 delivery ids, released together, spread over the receivers."""
    barrier = threading.Barrier(8)

    def send(n: int) -> httpx.Response:
        copy = {**headers, "x-github-delivery": str(uuid.uuid4()), "x-canaryflow-delivery": uuid.uuid4().hex}
        barrier.wait(timeout=30)
        return post(targets[n % len(targets)], route, body, copy)

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(send, range(8)))


@pytest.mark.parametrize("route", ["github", "generic"])
def test_simultaneous_copies_on_two_replicas_start_one_run(deployments, route):
    service = f"race-{uuid.uuid4().hex[:6]}"
    body, headers = legit(service)[route]
    before = all_runs(deployments)
    with serve() as one, serve() as two:
        answers = _volley([one, two], route, body, headers)
    assert all(a.status_code in (200, 202) for a in answers), [a.text for a in answers]
    assert len({a.json()["flow_run_id"] for a in answers}) == 1
    assert all_runs(deployments) == before + 1


def test_a_captured_delivery_replayed_after_a_restart_starts_nothing(deployments):
    service = f"restart-{uuid.uuid4().hex[:6]}"
    accepted = {route: legit(service)[route] for route in ("github", "gitlab", "generic")}
    with serve() as before_restart:
        first = {route: post(before_restart, route, *delivery) for route, delivery in accepted.items()}
    assert {route: a.status_code for route, a in first.items()} == dict.fromkeys(accepted, 202)
    runs = all_runs(deployments)

    with serve() as after_restart:  # nothing of the first receiver's memory survives
        gh_body, gh_headers = accepted["github"]
        gen_body, gen_headers = accepted["generic"]
        replays = {
            "github": post(after_restart, "github", gh_body, {**gh_headers, "x-github-delivery": str(uuid.uuid4()),
                                                             "x-hub-signature-256": gh_headers["x-hub-signature-256"]
                                                             .upper().replace("SHA256=", "sha256=")}),
            "gitlab": post(after_restart, "gitlab", accepted["gitlab"][0],
                           {**gitlab_headers(), "idempotency-key": "forged"}),
            "generic": post(after_restart, "generic", gen_body, {**gen_headers, "x-canaryflow-delivery": "forged"}),
        }
    for route, answer in replays.items():
        assert answer.status_code == 200, (route, answer.text)
        assert answer.json()["duplicate"] is True
        assert answer.json()["flow_run_id"] == first[route].json()["flow_run_id"]
        assert read_run(answer.json()["flow_run_id"]).idempotency_key == answer.json()["idempotency_key"]
    assert all_runs(deployments) == runs
