"""A fleet release on the real Prefect server: three services of one local platform, each
service's release a child run of the canary-release deployment run by a real process worker. The
second service's v2 is bad, so it rolls back and the third wave is never attempted."""

from __future__ import annotations

import sys
import time

import httpx
import pytest

from canaryflow.local import procs
from canaryflow.local.services import ServicePlan
from canaryflow.local.stack import LocalStack
from flows.fleet import canary_fleet
from tests.e2e.conftest import E2E_SEED, FAST_SPEC, cli_env

pytestmark = pytest.mark.e2e

BAD_V2 = "service: beta\nversions:\n  v1: {error_rate: 0.001, latency_ms: {p50: 20, p95: 45}}\n" \
         "  v2: {error_rate: 0.05, latency_ms: {p50: 20, p95: 45}}\n"


@pytest.fixture
def fleet_stack(tmp_path, monkeypatch):
    (tmp_path / "beta.yaml").write_text(BAD_V2)
    services = {"alpha": ServicePlan(stable="v1", rps=60),
                "beta": ServicePlan(stable="v1", rps=60, catalog=tmp_path / "beta.yaml"),
                "gamma": ServicePlan(stable="v1", rps=20)}
    with LocalStack(services=services, workdir=tmp_path / "stack", seed=E2E_SEED) as stack:
        for name, value in stack.settings_env().items():
            monkeypatch.setenv(name, value)
        yield stack


@pytest.fixture
def worker(prefect_server, deployments, fleet_stack, tmp_path):
    proc = procs.spawn([sys.executable, "-m", "prefect", "worker", "start", "--pool", "canaryflow", "--limit", "2"],
                       log_path=tmp_path / "worker.log", env=cli_env(prefect_server, PREFECT_LOGGING_LEVEL="INFO"))
    yield proc
    procs.stop(proc, timeout=20)


@pytest.mark.timeout(600)  # three releases and a worker's start on two shared cores
def test_a_rolled_back_service_stops_the_later_waves(fleet_stack, worker, prefect_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    shared = {k: v for k, v in FAST_SPEC.items() if k not in ("service", "version", "environment")}
    spec = {"version": "v2", "environment": "production", "services": ["alpha", "beta", "gamma"],
            "max_concurrency": 2, "spec": {**shared, "steps": [50, 100], "min_canary_requests": 200,
                                           "max_hold_seconds": 90}}
    state = canary_fleet(spec, return_state=True)
    assert state.is_failed(), state.message
    assert "rolled_back; not attempted: gamma" in state.message
    assert state.name == "RolledBack"  # what `canaryflow fleet --wait` and `canaryflow wait` exit 1 on
    fleet_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:  # the server is shared: only this fleet run's children
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[fleet_run_id])))
        parent = client.read_flow_run(fleet_run_id)
    releases = {r.name: r for r in children if r.name.startswith("release/")}
    assert set(releases) == {"release/alpha/v2/production", "release/beta/v2/production"}
    assert releases["release/alpha/v2/production"].state.is_completed()
    assert releases["release/beta/v2/production"].state.is_failed()
    assert "rolled back (high_error_rate)" in releases["release/beta/v2/production"].state.message
    assert all(r.parent_task_run_id is not None for r in releases.values())  # child runs of the fleet run
    assert parent.name == "fleet/v2/production/3-services"
    overview = httpx.get(f"{fleet_stack.controller_url}/-/services", timeout=5).json()["services"]
    assert {name: s["stable"] for name, s in overview.items()} == {"alpha": "v2", "beta": "v1", "gamma": "v1"}
    assert all(s["canary"] is None for s in overview.values())
    # A rollback is an expected ending: the worker that ran it says so in one line, and no traceback
    # carries its exception. (The flow-run process's last lines reach the worker's log a little after
    # the API says the run ended; the pool's scheduled reconcile may crash on its own, unconfigured.)
    log_file, deadline = tmp_path / "worker.log", time.monotonic() + 60
    while "Finished in state RolledBack" not in log_file.read_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    worker_log = log_file.read_text()
    assert "Finished in state RolledBack" in worker_log, worker_log[-3000:]
    assert "ReleaseRolledBack" not in worker_log, worker_log[-3000:]
