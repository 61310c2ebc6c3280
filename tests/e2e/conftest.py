"""End-to-end fixtures: a fresh local platform (real processes, real Prometheus and Pushgateway)
per test, wired to the release flow through the environment as a deployment would be."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from canaryflow.local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]

#: Short waits so a release takes seconds; production thresholds. The judge compares the canary
#: with the stable version serving at the same time, so a step needs enough canary requests for
#: the evidence to mean something: 120 (about 12 s at 10 % of the stack's 100 requests/s) lets a
#: 5 %-error canary be caught in the first step, while a healthy one passes every step.
FAST_SPEC: dict[str, Any] = {
    "service": "checkout", "environment": "production", "steps": [10, 50, 100],
    "step_wait_seconds": 4, "analysis_interval_seconds": 1, "analysis_window": "10s",
    "min_canary_requests": 120, "max_consecutive_errors": 3, "max_hold_seconds": 60,
    "ready_timeout_seconds": 30,  # a loaded machine starts a process slowly; a stuck one is tested apart
    # The default checks with a 5 s latency budget: four busy test workers on two cores can stall a
    # healthy answer past the default 1 s (the latency check itself is unit-tested, test_smoke.py).
    "smoke": [{"path": "/api/health", "max_latency_ms": 5000}, {"path": "/api/orders", "max_latency_ms": 5000}],
}


E2E_SEED = 20261201


@pytest.fixture
def stack(tmp_path, monkeypatch) -> Iterator[LocalStack]:
    # Errors, latencies and routing are drawn at random; one seed makes a failure replayable (the
    # canary's first draws, its smoke checks, are then the same on every run).
    with LocalStack(service="checkout", stable="v1", rps=100, workdir=tmp_path / "stack", seed=E2E_SEED) as s:
        for name, value in s.settings_env().items():
            monkeypatch.setenv(name, value)
        yield s


def controller_state(stack: LocalStack) -> dict[str, Any]:
    return httpx.get(f"{stack.controller_url}/-/state", timeout=5).json()


def weights_seen(state: dict[str, Any]) -> list[int]:
    """Canary weights in the order the proxy applied them, lease renewals folded."""
    seen: list[int] = []
    for entry in state["history"]:
        if not seen or seen[-1] != entry["canary_weight"]:
            seen.append(entry["canary_weight"])
    return seen


def prom_value(stack: LocalStack, promql: str, *, timeout: float = 15,
               until: Callable[[float], bool] = lambda v: True) -> float:
    """Poll the real Prometheus until ``promql`` has a value satisfying ``until``.

    Read with prometheus-api-client, not canaryflow's own ``PrometheusSource``: what the pipeline
    wrote is checked by an independent reader."""
    from prometheus_api_client import PrometheusConnect

    prometheus = PrometheusConnect(url=stack.prometheus_url, timeout=5)
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        result = prometheus.custom_query(promql)
        if result:
            last = float(result[0]["value"][1])
            if until(last):
                return last
        time.sleep(0.5)
    raise AssertionError(f"{promql} never satisfied the condition (last value {last})")


def prefect_cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    prefect = Path(sys.executable).with_name("prefect")
    return subprocess.run([str(prefect), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def cli_env(prefect_server: Any, **extra: str) -> dict[str, str]:
    """The environment a worker gives a flow run: this checkout, the test server, the local stack
    variables the test set with monkeypatch (they are in os.environ)."""
    return {**os.environ, "PREFECT_API_URL": prefect_server.api_url, "CANARYFLOW_CHECKOUT": str(ROOT),
            "PYTHONPATH": str(ROOT), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # A test's worker asks for scheduled runs every 2 s, not 10: the test is waiting on it.
            "PREFECT_WORKER_QUERY_SECONDS": "2", **extra}


def crash_releases_left_running(service: str = "checkout") -> list[str]:
    """Mark Crashed the release runs of ``service`` still Running after a test killed their process.

    A SIGKILLed release stays Running in Prefect until the reconcile deployment's ``--stale-after``
    passes; the next test on this worker's server would find it, and a verb or a rollback would
    wait for it to answer. Ids of the runs ended."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterName,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(like_=f"release/{service}/"),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))))
        for run in runs:
            client.set_flow_run_state(run.id, Crashed(message="its process was killed by the test"), force=True)
    return [str(run.id) for run in runs]


#: API URLs of the servers prefect.yaml's deployments are registered on (once per server).
_DEPLOYED_ON: set[str] = set()


@pytest.fixture(scope="module")
def deployments(prefect_server: Any) -> dict[str, str]:
    """prefect.yaml's deployments registered on the module's server (SQLite or PostgreSQL), as users do it."""
    env = cli_env(prefect_server)
    if prefect_server.api_url not in _DEPLOYED_ON:
        for args in (("work-pool", "create", "canaryflow", "--type", "process", "--overwrite"),
                     ("--no-prompt", "deploy", "--all")):
            done = prefect_cli(*args, env=env)
            assert done.returncode == 0, done.stdout + done.stderr
        _DEPLOYED_ON.add(prefect_server.api_url)
    return env
