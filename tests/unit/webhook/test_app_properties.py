"""Properties of the receiver for any body, headers and signature mutation, on all five routes.

A recording starter (the in-memory :class:`RunStarter`) stands in for Prefect: it keeps every
:class:`StartRequest`, one run per idempotency key, as the Prefect server does. For each generated
request the properties are:

- the answer is never 5xx, and is ASCII JSON;
- a request whose signature does not verify answers 401 and starts nothing;
- a request starts at most one run per alert it carries (one for a CI route), and every run it
  starts is named in its answer, which is then 2xx (or Alertmanager's 422 that lists the runs it
  did start) — nothing is created unless the answer says so;
- a 4xx answer starts nothing;
- a signed body, once accepted, never starts a second run, whatever the unsigned headers say
  (delivery id, event, signature spelling).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import hypothesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from canaryflow.webhook import WebhookSecrets
from canaryflow.webhook.signatures import sign_generic, sign_github
from canaryflow.webhook.starter import InMemoryStarter
from tests.unit.webhook.support import (
    ALERTMANAGER_TOKEN,
    FLEET_SECRET,
    GENERIC_SECRET,
    GITHUB_SECRET,
    GITLAB_TOKEN,
    alertmanager_payload,
    firing_alert,
    github_deployment,
    gitlab_pipeline,
)
from tests.unit.webhook.test_app import SECRETS, make, run, send

ALL_SECRETS = WebhookSecrets(github=SECRETS.github, gitlab=SECRETS.gitlab, generic=SECRETS.generic,
                             alertmanager=SecretStr(ALERTMANAGER_TOKEN), fleet=SecretStr(FLEET_SECRET))
RELEASED = {"service": "checkout", "version": "v2", "environment": "production"}
SHA = "0123456789abcdef0123456789abcdef01234567"



def _package(version: str) -> dict[str, Any]:
    return {"action": "published", "registry_package": {"name": "checkout", "package_version": {
        "version": "sha256:abcd", "package_url": f"ghcr.io/acme/checkout:{version}",
        "container_metadata": {"tag": {"name": version}}}}}


def _pipeline(version: str) -> dict[str, Any]:
    return {**gitlab_pipeline(), "object_attributes": {
        "status": "success", "ref": version, "tag": True, "sha": SHA,
        "variables": [{"key": "CANARYFLOW_IMAGE", "value": f"registry.example/acme/checkout:{version}"}]}}


#: (route, event, a valid payload for a version): mutations start from what the receiver accepts.
RELEASES: list[tuple[str, str | None, Callable[[str], dict[str, Any]]]] = [
    ("github", "deployment", lambda v: github_deployment(version=v, image=f"ghcr.io/acme/checkout:{v}")),
    ("github", "release", lambda v: {"action": "published", "repository": {"name": "checkout"},
                                     "release": {"tag_name": v}}),
    ("github", "registry_package", _package),
    ("github", "workflow_run", lambda v: {"action": "completed", "repository": {"name": "checkout"}, "workflow_run": {
        "name": "release", "conclusion": "success", "head_sha": v + SHA}}),
    ("gitlab", "Pipeline Hook", _pipeline),
    ("gitlab", "Deployment Hook", lambda v: {"project": {"name": "checkout"}, "status": "success",
                                             "environment": "staging", "short_sha": v}),
    ("generic", None, lambda v: {"service": "checkout", "version": v, "environment": "staging",
                                 "image": f"ghcr.io/acme/checkout:{v}",
                                 "spec": {"steps": [50, 100], "step_wait_seconds": 5}}),
    ("fleet", None, lambda v: {"version": v, "environment": "production", "services": ["checkout", "payments"],
                               "waves": [1, "rest"], "max_concurrency": 2, "stop_on_rollback": True,
                               "spec": {"steps": [50, 100], "step_wait_seconds": 5}}),
    ("alertmanager", None, lambda v: alertmanager_payload(
        firing_alert(starts_at=f"2026-03-01T10:00:00.{v[1:]}Z"),
        firing_alert("HighLatencyProduction", fingerprint="0a1b2c3d4e5f6071",
                     starts_at=f"2026-03-01T10:00:00.{v[1:]}Z"))),
]

HOSTILE_TEXT = st.sampled_from(["", " ", "\ud800", "\udfff", "\u0000", "caf\u00e9", "\u202e", "x" * 300,
                                "ghcr.io/acme/app:v1", "not an image", "production", "staging", "success",
                                "published", "NaN", "Infinity", "1e999", "../../etc/passwd", "<script>"])
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | HOSTILE_TEXT
           | st.sampled_from([2**53, -(2**53), 10**30, float("inf"), float("-inf"), float("nan"), 1e308]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6) | HOSTILE_TEXT, inner, max_size=3), max_leaves=8)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in a payload a mutation can replace (dict keys and list items, at any depth)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*prefix, index)))
    return found


def _replaced(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replaced(copy[head], rest, new)
    return copy


@st.composite
def bodies(draw, payload: dict[str, Any]) -> bytes:
    """The template as it is, with a few values replaced (or keys added), or bytes that are barely JSON."""
    shape = draw(st.sampled_from(["unchanged", "mutated", "mutated", "mutated", "added", "raw", "deep"]))
    if shape == "unchanged":
        return json.dumps(payload).encode()
    if shape == "raw":
        return draw(st.binary(max_size=64) | st.sampled_from([b"", b"{", b"[]", b"null", b'"x"', b"{}",
                                                               b"\xff\xfe{}", b'{"a": 1}{"b": 2}']))
    if shape == "deep":
        depth = draw(st.integers(20, 3000))
        return b'{"service": "checkout", "version": "v2", "spec": ' + b"[" * depth + b"]" * depth + b"}"
    mutated: Any = payload
    for _ in range(draw(st.integers(1, 3))):
        if shape == "added":
            sections = [p for p in _paths(mutated) if isinstance(_at(mutated, p), dict)]
            path = draw(st.sampled_from(sections))
            key = draw(st.text(max_size=8) | HOSTILE_TEXT)
            mutated = _replaced(mutated, path, {**_at(mutated, path), key: draw(VALUES)})
        else:
            mutated = _replaced(mutated, draw(st.sampled_from(_paths(mutated)[1:])), draw(VALUES))
    return json.dumps(mutated, allow_nan=True).encode()  # NaN/Infinity tokens and \ud800 escapes on purpose


def _at(value: Any, path: tuple) -> Any:
    for key in path:
        value = value[key]
    return value


SIGNATURE_MUTATIONS = ["valid", "valid", "valid", "outer whitespace", "upper-case hex", "missing", "wrong secret",
                       "whitespace inside", "truncated", "other body", "stale", "future"]
VERIFIES = {"valid", "outer whitespace", "upper-case hex"}


def signed_headers(route: str, event: str | None, body: bytes, mutation: str) -> dict[str, str | bytes]:
    """The route's authentication headers, signed over ``body`` and then mutated."""
    now = int(time.time())
    ts = now - 3600 if mutation == "stale" else now + 3600 if mutation == "future" else now
    secret_of = {"github": GITHUB_SECRET, "generic": GENERIC_SECRET, "gitlab": GITLAB_TOKEN,
                 "alertmanager": ALERTMANAGER_TOKEN, "fleet": FLEET_SECRET}
    secret = "guessed-" + secret_of[route] if mutation == "wrong secret" else secret_of[route]
    signed_body = body + b" " if mutation == "other body" else body
    headers: dict[str, str | bytes] = {"content-type": "application/json"}
    if route == "github":
        headers |= {"x-github-event": event or "", "x-hub-signature-256": sign_github(secret, signed_body)}
        name = "x-hub-signature-256"
    elif route in ("generic", "fleet"):
        headers |= {"x-canaryflow-timestamp": str(ts), "x-canaryflow-signature": sign_generic(secret, ts, signed_body)}
        name = "x-canaryflow-signature"
    elif route == "gitlab":
        headers |= {"x-gitlab-event": event or "", "x-gitlab-token": secret + (" " if mutation == "other body" else "")}
        name = "x-gitlab-token"
    else:
        headers |= {"authorization": f"Bearer {secret}" + ("x" if mutation == "other body" else "")}
        name = "authorization"
    if mutation == "missing":
        del headers[name]
    elif mutation in SPELLINGS:
        headers[name] = respelled(str(headers[name]), mutation)
    elif mutation == "truncated":
        headers[name] = str(headers[name])[:-2]
    return headers


SPELLINGS = ("outer whitespace", "upper-case hex", "whitespace inside")


def respelled(value: str, spelling: str) -> str | bytes:
    """The same signature or token written another way."""
    if spelling == "outer whitespace":
        return f" {value}\t"
    if spelling == "upper-case hex":
        return "sha256=" + value[7:].upper() if value.startswith("sha256=") else value
    cut = len("sha256=") if value.startswith("sha256=") else 3
    return (value[:cut] + "\xa0" + value[cut:]).encode("latin-1")


def _verifies(route: str, mutation: str) -> bool:
    if mutation in ("stale", "future"):  # only the generic scheme (generic, fleet) signs a timestamp
        return route not in ("generic", "fleet")
    return mutation in VERIFIES


DELIVERY_IDS = (st.sampled_from([None] * 6 + ["x" * 129, "../etc", "a b", "\u00e9t\u00e9", "-lead", ""])
                | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,40}", fullmatch=True))


def _new_runs(starter: InMemoryStarter, before: set[str]) -> list[dict[str, Any]]:
    return [run_ for key, run_ in starter.runs.items() if key not in before]


def _named_runs(answer: dict[str, Any]) -> set[str]:
    if "runs" in answer:
        return {r["flow_run_id"] for r in answer["runs"]}
    return {answer["flow_run_id"]} if "flow_run_id" in answer else set()


def _post(app, route: str, body: bytes, headers: dict[str, str | bytes]):
    return run(send(app, "POST", f"/hooks/{route}", content=body, headers=headers))


def _receiver():
    starter = InMemoryStarter(releases={("checkout", "production"): dict(RELEASED)})
    app, _ = make(starter, secrets=ALL_SECRETS)
    return app, starter


APP, STARTER = _receiver()  # one receiver for every example: runs accumulate as they would in service


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_any_request_is_answered_4xx_or_starts_runs_it_names_never_5xx(data):
    route, event, release = data.draw(st.sampled_from(RELEASES))
    body = data.draw(bodies(release("v2")))
    mutation = data.draw(st.sampled_from(SIGNATURE_MUTATIONS))
    headers = signed_headers(route, event, body, mutation)
    delivery = data.draw(DELIVERY_IDS)
    if delivery:
        header = {"github": "x-github-delivery", "gitlab": "x-gitlab-event-uuid"}.get(route, "x-canaryflow-delivery")
        headers[header] = delivery.encode("latin-1")
    before = set(STARTER.runs)

    response = _post(APP, route, body, headers)

    assert response.status_code < 500, response.text
    assert response.content.isascii()
    answer = response.json()
    new = _new_runs(STARTER, before)
    # shown by --hypothesis-show-statistics
    hypothesis.event(f"{route} answered {response.status_code}{' with a new run' if new else ''}")
    if not _verifies(route, mutation):
        assert response.status_code == 401 and not new
    if response.status_code >= 400 and not (route == "alertmanager" and response.status_code == 422):
        assert not new, response.text
    if route != "alertmanager":
        assert len(new) <= 1
    assert {r["id"] for r in new} <= _named_runs(answer)
    if new:
        assert response.status_code in (202, 422)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(release=st.sampled_from(RELEASES), data=st.data())
def test_a_signed_body_starts_one_run_whatever_the_unsigned_headers_say(release, data):
    route, event, payload = release
    app, starter = _receiver()
    body = json.dumps(payload(f"v{time.time_ns() % 10**9}")).encode()
    headers = signed_headers(route, event, body, "valid")
    assert _post(app, route, body, headers).status_code == 202
    runs = dict(starter.runs)

    for _ in range(data.draw(st.integers(1, 4))):
        replay = dict(headers)
        delivery = data.draw(st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=1, max_size=16))
        replay[{"github": "x-github-delivery",
                "gitlab": "idempotency-key"}.get(route, "x-canaryflow-delivery")] = delivery
        if route == "github":
            replay["x-github-event"] = data.draw(st.sampled_from(["deployment", "release", "registry_package",
                                                                  "workflow_run", "ping", "push"]))
        spelling = data.draw(st.sampled_from(("same", *SPELLINGS)))
        if spelling != "same":
            name = next(k for k in ("x-hub-signature-256", "x-canaryflow-signature", "x-gitlab-token", "authorization")
                        if k in replay)
            replay[name] = respelled(str(replay[name]), spelling)
        again = _post(app, route, body, replay)
        assert again.status_code < 500, again.text
        answer = again.json()
        assert "runs" in answer or "flow_run_id" not in answer or answer["duplicate"] is True
        assert all(r["duplicate"] for r in answer.get("runs", []))
        assert starter.runs == runs
