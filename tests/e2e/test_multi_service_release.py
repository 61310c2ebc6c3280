"""Two services of one local platform released at the same time, each on its own traffic: one
promoted, the other rolled back, neither touching the other's weight, processes or metrics."""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from canaryflow.local.services import ServicePlan
from canaryflow.local.stack import LocalStack
from canaryflow.release import ReleaseRolledBack
from flows.release import canary_release
from tests.e2e.conftest import E2E_SEED, FAST_SPEC, prom_value, weights_seen

pytestmark = pytest.mark.e2e


@pytest.fixture
def two_services(tmp_path, monkeypatch):
    services = {"checkout": ServicePlan(stable="v1", rps=100), "payments": ServicePlan(stable="v1", rps=100)}
    with LocalStack(services=services, workdir=tmp_path / "stack", seed=E2E_SEED) as stack:
        for name, value in stack.settings_env().items():
            monkeypatch.setenv(name, value)
        yield stack


def service_state(stack: LocalStack, service: str) -> dict:
    return httpx.get(f"{stack.controller_url}/-/services/{service}/state", timeout=5).json()


def release(spec: dict):
    state = canary_release(spec, return_state=True)
    return state, state.result(raise_on_failure=False)


def test_two_services_release_concurrently_one_promoted_one_rolled_back(two_services, prefect_server):
    stack = two_services
    # Two services share the two cores here: the healthy one needs only enough traffic to pass.
    good = {**FAST_SPEC, "service": "checkout", "version": "v2", "min_canary_requests": 60, "max_hold_seconds": 90}
    # As in the one-service test of a 5 % canary: 300 requests let the evidence cross its bar.
    bad = {**FAST_SPEC, "service": "payments", "version": "v3-errors", "min_canary_requests": 300,
           "max_hold_seconds": 90}
    with ThreadPoolExecutor(2) as pool:  # each thread gets the test's Prefect settings (a context)
        runs = [pool.submit(contextvars.copy_context().run, release, spec) for spec in (good, bad)]
        promoted, rolled_back = (run.result(timeout=300) for run in runs)

    state, summary = promoted
    assert state.is_completed(), state.message
    assert summary["status"] == "promoted"
    state, outcome = rolled_back
    assert state.is_failed() and isinstance(outcome, ReleaseRolledBack), outcome
    assert outcome.reason == "high_error_rate"

    checkout, payments = service_state(stack, "checkout"), service_state(stack, "payments")
    assert checkout["stable"]["version"] == "v2" and checkout["canary"] is None
    assert payments["stable"]["version"] == "v1" and payments["canary"] is None
    assert weights_seen(checkout) == [10, 50, 100, 0]
    assert max(weights_seen(payments)) == 10 and payments["history"][-1]["reason"] == "rollback"
    # Each canary served its own service's users only; each stable kept serving its own.
    assert checkout["routed"]["canary"] > 0 and payments["routed"]["canary"] > 0
    # The rolled-back canary is gone and its series stale: read what each version served over the run.
    served = 'sum(max_over_time(http_requests_total{{service="{}",version="{}"}}[15m])) or vector(0)'
    prom_value(stack, served.format("checkout", "v2"), until=lambda v: v > 0)
    prom_value(stack, served.format("payments", "v3-errors"), until=lambda v: v > 0)
    assert prom_value(stack, served.format("checkout", "v3-errors")) == 0
    assert prom_value(stack, served.format("payments", "v2")) == 0
    # The pipeline's own metrics carry the service too.
    prom_value(stack, 'deployment_total{service="checkout",status="success"}', until=lambda v: v >= 1)
    prom_value(stack, 'deployment_total{service="payments",status="rolled_back"}', until=lambda v: v >= 1)
    assert prom_value(stack, 'sum(deployment_total{service="payments",status="success"}) or vector(0)') == 0
