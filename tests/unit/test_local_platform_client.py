"""LocalPlatform, the release flow's client of the local controller, against an emulated admin API."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from prefect.states import Completed, Failed

from canaryflow.errors import PlatformError, RolloutStuck
from canaryflow.platforms.local import LocalPlatform
from tasks.common import only_transient

BASE = "http://controller.test"


class FakeController:
    """Just enough of ``canaryflow.local.controller``'s admin API, recording every request."""

    def __init__(self, *, service: str = "checkout") -> None:
        self.service = service
        self.stable: dict[str, Any] | None = {"version": "v1", "url": "http://127.0.0.1:9001", "pid": 1,
                                               "ready": True, "exit_code": None}
        self.canary: dict[str, Any] | None = None
        self.weight = 0
        self.requests: list[tuple[str, str, Any]] = []
        self.polls_until_ready: int | None = 0  # None: never ready
        self.fail_with: tuple[int, Any] | None = None
        self.versions = ["v1", "v2", "v3-errors"]
        self.answers_any_service = False  # a controller that ignores the service in the path

    def state(self) -> dict[str, Any]:
        return {"service": self.service, "stable": self.stable, "canary": self.canary,
                "canary_weight": self.weight, "lease_expires_at": None, "routed": {"stable": 0, "canary": 0},
                "history": [], "versions": self.versions}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        # Recorded as the operation's path: every call names the service (checked below).
        self.requests.append((request.method, request.url.path.replace(f"/-/services/{self.service}/", "/-/"), body))
        if self.fail_with is not None:
            status, content = self.fail_with
            if isinstance(content, dict):
                return httpx.Response(status, json=content)
            return httpx.Response(status, text=content)
        prefix, _, operation = request.url.path.rpartition("/")
        if prefix != f"/-/services/{self.service}" and not self.answers_any_service:
            asked = prefix.rpartition("/")[2]
            return httpx.Response(404, json={"error": f"no service {asked!r}; this platform runs: {self.service}"})
        route = (request.method, "/-/" + operation)
        if route == ("GET", "/-/state"):
            if self.canary is not None and not self.canary["ready"] and self.canary["exit_code"] is None:
                if self.polls_until_ready is not None:
                    if self.polls_until_ready <= 0:
                        self.canary["ready"] = True
                    self.polls_until_ready -= 1
            return httpx.Response(200, json=self.state())
        if route == ("POST", "/-/canary"):
            self.canary = {"version": body["version"], "url": "http://127.0.0.1:9002", "pid": 2,
                           "ready": False, "exit_code": None}
            return httpx.Response(201, json=self.canary)
        if route == ("PUT", "/-/weights"):
            if body["canary_weight"] > 0 and self.canary is None:
                return httpx.Response(409, json={"error": "no canary deployed"})
            self.weight = body["canary_weight"]
            return httpx.Response(200, json=self.state())
        if route == ("POST", "/-/promote"):
            self.stable, self.canary, self.weight = {**self.canary, "ready": True}, None, 0
            return httpx.Response(200, json=self.state())
        if route == ("POST", "/-/rollback"):
            self.canary, self.weight = None, 0
            return httpx.Response(200, json=self.state())
        return httpx.Response(404, json={"error": f"no admin endpoint {request.url.path}"})


@pytest.fixture
def controller() -> FakeController:
    return FakeController()


@pytest.fixture
def platform(controller):
    p = LocalPlatform(BASE + "/", service="checkout", transport=httpx.MockTransport(controller), poll_interval=0.01)
    yield p
    p.close()


# -- the happy path ----------------------------------------------------------------------------------

def test_release_calls_hit_the_admin_api(platform, controller):
    assert platform.stable_version() == "v1"
    platform.deploy("v2")
    platform.wait_ready(timeout=1)
    assert platform.canary_url() == "http://127.0.0.1:9002"
    platform.set_weight(10, lease_seconds=30)
    assert platform.get_weight() == 10
    platform.promote()
    assert platform.stable_version() == "v2"
    writes = [(m, p, b) for m, p, b in controller.requests if m != "GET"]
    assert writes == [
        ("POST", "/-/canary", {"version": "v2"}),
        ("PUT", "/-/weights", {"canary_weight": 10, "lease_seconds": 30}),
        ("POST", "/-/promote", None),
    ]


def test_set_weight_without_lease_sends_null(platform, controller):
    platform.deploy("v2")
    platform.set_weight(0)
    assert controller.requests[-1] == ("PUT", "/-/weights", {"canary_weight": 0, "lease_seconds": None})


def test_rollback(platform, controller):
    platform.deploy("v2")
    platform.set_weight(50)
    platform.rollback()
    assert controller.canary is None and platform.get_weight() == 0
    with pytest.raises(PlatformError, match="no canary is deployed") as info:
        platform.canary_url()
    assert info.value.operation == "canary_url"


# -- checks that change nothing ----------------------------------------------------------------------

def test_check_version_knows_the_catalogue(platform, controller):
    platform.check_version("v3-errors")
    with pytest.raises(PlatformError, match="unknown version 'v9'; the catalogue has: v1, v2, v3-errors") as info:
        platform.check_version("v9")
    assert info.value.operation == "check_version" and not info.value.transient
    assert all(method == "GET" for method, _, _ in controller.requests)


def test_canary_problem_is_a_dead_or_missing_canary_not_a_missed_probe(platform, controller):
    assert platform.canary_problem() == "the canary is gone"
    platform.deploy("v2")
    platform.wait_ready(timeout=1)
    assert platform.canary_problem() is None
    controller.canary["ready"] = False  # a slow probe on a busy machine: still serving
    assert platform.canary_problem() is None
    controller.canary["exit_code"] = 3
    assert platform.canary_problem() == "canary v2 exited with code 3"


# -- wait_ready -----------------------------------------------------------------------------------------

def test_wait_ready_returns_once_the_canary_is_ready(platform, controller):
    controller.polls_until_ready = 3
    platform.deploy("v2")
    platform.wait_ready(timeout=5)
    assert controller.canary["ready"] is True
    polls = [r for r in controller.requests if r[:2] == ("GET", "/-/state")]
    assert len(polls) == 4


def test_wait_ready_raises_at_once_when_the_canary_exited(platform, controller):
    controller.polls_until_ready = None
    platform.deploy("v3-crash")
    controller.canary["exit_code"] = 3
    with pytest.raises(RolloutStuck, match="v3-crash exited with code 3") as info:
        platform.wait_ready(timeout=1)
    assert info.value.transient is False and info.value.operation == "wait_ready"
    assert len([r for r in controller.requests if r[0] == "GET"]) == 1


def test_wait_ready_raises_after_the_timeout_when_never_ready(platform, controller):
    controller.polls_until_ready = None
    platform.deploy("v3-never-ready")
    started = time.monotonic()
    with pytest.raises(RolloutStuck, match="not ready after"):
        platform.wait_ready(timeout=0.1)
    elapsed = time.monotonic() - started
    assert elapsed >= 0.1  # it waited the whole timeout before giving up
    assert len([r for r in controller.requests if r[0] == "GET"]) >= 3  # it polled, at poll_interval


def test_wait_ready_without_a_canary_is_stuck(platform):
    with pytest.raises(RolloutStuck, match="no canary is deployed"):
        platform.wait_ready(timeout=1)


# -- errors -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(platform, controller, status):
    controller.fail_with = (status, {"error": "controller overloaded"})
    with pytest.raises(PlatformError) as info:
        platform.deploy("v2")
    assert info.value.transient is True
    assert info.value.operation == "deploy"
    assert f"HTTP {status}: controller overloaded" in str(info.value)


@pytest.mark.parametrize("status, message", [
    (400, "unknown version 'v9'"),
    (409, "canary 'v2' is not ready (exit_code=None)"),
])
def test_client_errors_are_permanent_and_carry_the_server_message(platform, controller, status, message):
    controller.fail_with = (status, {"error": message})
    with pytest.raises(PlatformError) as info:
        platform.set_weight(10, lease_seconds=30)
    assert info.value.transient is False
    assert info.value.operation == "set_weight"
    assert str(info.value) == f"set_weight: HTTP {status}: {message}"


def test_an_error_without_json_keeps_the_body_text(platform, controller):
    controller.fail_with = (502, "Bad Gateway from a proxy")
    with pytest.raises(PlatformError, match="HTTP 502: Bad Gateway from a proxy") as info:
        platform.promote()
    assert info.value.transient is True


def test_real_controller_conflict_is_permanent(platform):
    with pytest.raises(PlatformError, match="HTTP 409: no canary deployed") as info:
        platform.set_weight(10)
    assert info.value.transient is False


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
def test_connection_errors_are_transient(error):
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    platform = LocalPlatform(BASE, service="checkout", transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(PlatformError) as info:
            platform.rollback()
    finally:
        platform.close()
    assert info.value.transient is True
    assert info.value.operation == "rollback"
    assert f"local controller at {BASE} unreachable ({type(error).__name__})" in str(info.value)


def test_a_platform_without_the_service_is_refused_naming_what_it_runs(controller):
    controller.service = "payments"
    platform = LocalPlatform(BASE, service="checkout", transport=httpx.MockTransport(controller))
    try:
        with pytest.raises(PlatformError,
                           match="HTTP 404: no service 'checkout'; this platform runs: payments") as info:
            platform.deploy("v2")
    finally:
        platform.close()
    assert info.value.transient is False
    assert controller.requests == [("POST", "/-/services/checkout/canary", {"version": "v2"})]


def test_a_controller_for_another_service_is_refused(controller):
    controller.service = "payments"
    controller.answers_any_service = True
    platform = LocalPlatform(BASE, service="checkout", transport=httpx.MockTransport(controller))
    try:
        with pytest.raises(PlatformError, match="controller serves 'payments', not 'checkout'") as info:
            platform.stable_version()
        with pytest.raises(PlatformError, match="controller serves 'payments'"):
            platform.wait_ready(timeout=1)
    finally:
        platform.close()
    assert info.value.transient is False
    assert info.value.operation == "get_state"


# -- what the client sends, and what it makes of the answers --------------------------------------------

def test_every_request_carries_a_ten_second_timeout(controller):
    seen: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions.get("timeout"))
        return controller(request)

    p = LocalPlatform(BASE, service="checkout", transport=httpx.MockTransport(handler))
    try:
        p.stable_version()
        p.deploy("v2")
    finally:
        p.close()
    assert seen == [{"connect": 10, "read": 10, "write": 10, "pool": 10}] * 2


def test_a_controller_behind_a_path_prefix_keeps_it_and_drops_only_trailing_slashes():
    urls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return httpx.Response(200, json={"service": "checkout", "stable": None, "canary": None})

    p = LocalPlatform("http://gateway.test/tenants/X//", service="checkout", transport=httpx.MockTransport(handler))
    try:
        assert p.stable_version() is None
    finally:
        p.close()
    assert p.controller_url == "http://gateway.test/tenants/X"
    assert urls == ["http://gateway.test/tenants/X/-/services/checkout/state"]


def test_wait_ready_polls_every_fifth_of_a_second_by_default(controller):
    controller.polls_until_ready = 1
    p = LocalPlatform(BASE, service="checkout", transport=httpx.MockTransport(controller))
    try:
        p.deploy("v2")
        started = time.monotonic()
        p.wait_ready(timeout=5)
        elapsed = time.monotonic() - started
    finally:
        p.close()
    assert len([r for r in controller.requests if r[0] == "GET"]) == 2
    assert 0.15 <= elapsed < 0.8


def test_stable_version_is_none_before_any_release(platform, controller):
    controller.stable = None
    assert platform.stable_version() is None


def test_an_empty_success_answer_is_accepted():
    requests: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append((request.method, request.url.path))
        return httpx.Response(204)

    p = LocalPlatform(BASE, service="checkout", transport=httpx.MockTransport(handler))
    try:
        assert p.rollback() is None
        assert p.promote() is None
    finally:
        p.close()
    assert requests == [("POST", "/-/services/checkout/rollback"), ("POST", "/-/services/checkout/promote")]


def test_a_json_error_without_an_error_field_keeps_the_whole_body(platform, controller):
    controller.fail_with = (500, {"detail": "disk full"})
    with pytest.raises(PlatformError) as info:
        platform.deploy("v2")
    assert str(info.value) == 'deploy: HTTP 500: {"detail":"disk full"}'
    assert info.value.transient is True


@pytest.mark.parametrize("call, operation", [
    (lambda p: p.stable_version(), "get_state"),
    (lambda p: p.check_version("v2"), "get_state"),
    (lambda p: p.canary_problem(), "get_state"),
    (lambda p: p.canary_url(), "get_state"),
    (lambda p: p.get_weight(), "get_state"),
    (lambda p: p.wait_ready(timeout=1), "get_state"),
    (lambda p: p.deploy("v2"), "deploy"),
    (lambda p: p.set_weight(5, lease_seconds=30), "set_weight"),
    (lambda p: p.promote(), "promote"),
    (lambda p: p.rollback(), "rollback"),
])
def test_a_refused_call_names_its_operation(platform, controller, call, operation):
    controller.fail_with = (503, {"error": "busy"})
    with pytest.raises(PlatformError) as info:
        call(platform)
    assert info.value.operation == operation
    assert str(info.value) == f"{operation}: HTTP 503: busy"
    assert info.value.transient is True


def test_messages_without_a_canary_are_exact(platform):
    with pytest.raises(RolloutStuck) as stuck:
        platform.wait_ready(timeout=1)
    assert str(stuck.value) == "wait_ready: no canary is deployed"
    with pytest.raises(PlatformError) as no_url:
        platform.canary_url()
    assert str(no_url.value) == "canary_url: no canary is deployed"


def test_an_exited_canary_fails_wait_ready_at_once_with_the_full_message(platform, controller):
    controller.polls_until_ready = None
    platform.deploy("v3-crash")
    controller.canary["exit_code"] = 3
    started = time.monotonic()
    with pytest.raises(RolloutStuck) as info:
        platform.wait_ready(timeout=0.5)
    assert time.monotonic() - started < 0.4
    assert str(info.value) == "wait_ready: canary v3-crash exited with code 3 before becoming ready"


def test_an_unreachable_controller_error_names_the_exception_type_not_its_text():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused, Authorization: Bearer s3cr3t")

    p = LocalPlatform(BASE, service="checkout", transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(PlatformError) as info:
            p.deploy("v2")
    finally:
        p.close()
    assert str(info.value) == f"deploy: local controller at {BASE} unreachable (ConnectError)"
    assert info.value.__cause__ is None and info.value.__suppress_context__



@pytest.mark.parametrize("body, detail", [
    (b'["bad gateway"]', '["bad gateway"]'),   # JSON, but not the controller's {"error": ...}
    (b'"bad gateway"', '"bad gateway"'),
    (b"<html>bad gateway</html>", "<html>bad gateway</html>"),
])
def test_an_error_answer_from_a_proxy_is_a_transient_platform_error_whatever_its_body(body, detail):
    proxy = httpx.MockTransport(lambda r: httpx.Response(502, content=body))
    p = LocalPlatform(BASE, service="checkout", transport=proxy)
    with pytest.raises(PlatformError) as info:
        p.set_weight(10, lease_seconds=30)
    assert str(info.value) == f"set_weight: HTTP 502: {detail}" and info.value.transient


def test_a_success_answer_that_is_not_json_is_a_transient_platform_error():
    html = httpx.MockTransport(lambda r: httpx.Response(200, content=b"<html>login</html>"))
    with pytest.raises(PlatformError) as info:
        LocalPlatform(BASE, service="checkout", transport=html).stable_version()
    assert str(info.value) == "get_state: HTTP 200 without a JSON body (not the local controller?)"
    assert info.value.transient and info.value.__cause__ is None


def test_credentials_in_the_controller_url_are_sent_and_never_shown():
    seen: list[str] = []

    def refused(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        raise httpx.ConnectError("refused", request=request)

    p = LocalPlatform("http://ops:s3cret@controller.test/", service="checkout", transport=httpx.MockTransport(refused))
    with pytest.raises(PlatformError) as info:
        p.deploy("v2")
    assert str(info.value) == "deploy: local controller at http://controller.test unreachable (ConnectError)"
    assert seen and seen[0].startswith("Basic ")

# -- tasks.common.only_transient ------------------------------------------------------------------------

def _failed_with(exc: BaseException):
    return Failed(data=exc)


@pytest.mark.parametrize("exc, retry", [
    (PlatformError("HTTP 503: busy", operation="deploy", transient=True), True),
    (PlatformError("HTTP 400: bad", operation="deploy", transient=False), False),
    (RolloutStuck("canary v2 not ready after 3s"), False),
    (ValueError("a bug"), False),
    (TimeoutError("slow"), False),
])
def test_only_transient_retries_transient_platform_errors_only(exc, retry):
    task, task_run = SimpleNamespace(name="deploy-canary"), SimpleNamespace(name="deploy-canary-0")
    assert only_transient(task, task_run, _failed_with(exc)) is retry


def test_only_transient_does_not_retry_a_non_exception_result():
    assert only_transient(None, None, Completed(data=42)) is False
