from __future__ import annotations

import httpx

from canaryflow.smoke import run_smoke
from canaryflow.spec import SmokeCheck


def handler(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/api/health":
        return httpx.Response(200, json={"status": "ok", "version": "v2"})
    if request.url.path == "/broken":
        return httpx.Response(503, text="unavailable")
    raise httpx.ConnectError("refused", request=request)


def smoke(*checks: SmokeCheck):
    return run_smoke("http://canary", checks, transport=httpx.MockTransport(handler))


def test_all_checks_pass():
    report = smoke(SmokeCheck(path="/api/health", body_contains='"ok"'))
    assert report.passed and report.failures() == []


def test_each_kind_of_failure_is_described():
    report = smoke(
        SmokeCheck(path="/broken"),
        SmokeCheck(path="/api/health", body_contains="v3"),
        SmokeCheck(path="/api/health", max_latency_ms=0.000001),
        SmokeCheck(path="/gone"),
    )
    assert not report.passed
    failures = report.failures()
    assert "status 503, expected 200" in failures[0]
    assert "body lacks 'v3'" in failures[1]
    assert "ms >" in failures[2]
    assert "request failed (ConnectError)" in failures[3]


def test_expected_non_200_status_passes():
    assert smoke(SmokeCheck(path="/broken", expect_status=503)).passed
