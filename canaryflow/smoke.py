"""Smoke tests: a few requests sent straight to the canary before it gets any user traffic."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from canaryflow.spec import SmokeCheck


@dataclass(frozen=True)
class CheckResult:
    check: SmokeCheck
    passed: bool
    status: int | None
    latency_ms: float | None
    problem: str | None

    def describe(self) -> str:
        head = f"{self.check.method} {self.check.path}"
        if self.passed:
            return f"{head}: {self.status} in {self.latency_ms:.0f} ms"
        return f"{head}: {self.problem}"


@dataclass(frozen=True)
class SmokeReport:
    results: tuple[CheckResult, ...]
    duration: float

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def failures(self) -> list[str]:
        return [r.describe() for r in self.results if not r.passed]


def run_check(client: httpx.Client, check: SmokeCheck) -> CheckResult:
    started = time.monotonic()
    try:
        response = client.request(check.method, check.path)
    except httpx.HTTPError as exc:
        return CheckResult(check, False, None, None, f"request failed ({type(exc).__name__})")
    latency = (time.monotonic() - started) * 1000
    problems = []
    if response.status_code != check.expect_status:
        problems.append(f"status {response.status_code}, expected {check.expect_status}")
    if latency > check.max_latency_ms:
        problems.append(f"took {latency:.0f} ms > {check.max_latency_ms:.0f} ms")
    if check.body_contains is not None and check.body_contains not in response.text:
        problems.append(f"body lacks {check.body_contains!r}")
    return CheckResult(check, not problems, response.status_code, latency, "; ".join(problems) or None)


def run_smoke(
    base_url: str, checks: Sequence[SmokeCheck], *, timeout: float = 10.0,
    transport: httpx.BaseTransport | None = None,
) -> SmokeReport:
    started = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=timeout, transport=transport) as client:
        results = tuple(run_check(client, check) for check in checks)
    return SmokeReport(results, time.monotonic() - started)
