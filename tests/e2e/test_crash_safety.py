"""The orchestrator dies mid-canary: users must still end up back on stable.

The release flow runs in its own process, as a worker would run it; the test kills that process
while the canary takes 10 % of the traffic and watches the controller.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from canaryflow.pipeline_metrics import fetch_group
from tests.e2e.conftest import FAST_SPEC, controller_state, crash_releases_left_running

pytestmark = pytest.mark.e2e

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SPEC = {**FAST_SPEC, "version": "v2", "step_wait_seconds": 30, "traffic_lease_seconds": 3}


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout:.0f}s")
        time.sleep(interval)


@pytest.fixture
def release_process(stack, prefect_server, tmp_path) -> Iterator[Callable[[], subprocess.Popen]]:
    """Start ``canary_release(SPEC)`` in a subprocess of its own session; always reaped at teardown."""
    started: list[subprocess.Popen] = []
    log_path = tmp_path / "release.log"

    def start() -> subprocess.Popen:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p),
            "PREFECT_API_URL": prefect_server.api_url,
            **stack.settings_env(),
            "PYTHONUNBUFFERED": "1",
        }
        code = ("import json; from flows.release import canary_release; "
                f"canary_release(json.loads({json.dumps(SPEC)!r}))")
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=PROJECT_ROOT,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    # A killed release keeps its slot of the service lock until the lease runs out (60 s); the
    # next test on this server should not wait for that, so the limit goes (it is re-created).
    from prefect.client.orchestration import get_client

    from tasks.locks import lock_name

    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name(lock_name("checkout"))
    crash_releases_left_running("checkout")


def release_log(tmp_path: Path) -> str:
    path = tmp_path / "release.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


def wait_for_canary_at_ten_percent(stack, proc: subprocess.Popen, tmp_path: Path) -> dict[str, Any]:
    def at_ten() -> dict[str, Any] | None:
        if proc.poll() is not None:
            raise AssertionError(f"release exited early ({proc.returncode}):\n{release_log(tmp_path)}")
        state = controller_state(stack)
        return state if state["canary_weight"] == 10 else None

    return wait_for(at_ten, timeout=90, what="canary weight 10", interval=0.1)


def flow_run_state(prefect_server) -> tuple[str, str | None]:
    """Type and name of the latest canary-release run, read back from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:  # the server is shared by every test of this worker
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["release/checkout/v2/production"])),
            sort=FlowRunSort.START_TIME_DESC, limit=1)
    assert runs, "the flow run was never registered with the Prefect server"
    return runs[0].state.type.value, runs[0].state.name


def test_sigkill_mid_canary_lease_returns_traffic_to_stable(stack, release_process, tmp_path):
    proc = release_process()
    wait_for_canary_at_ten_percent(stack, proc, tmp_path)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)

    state = wait_for(lambda: (s := controller_state(stack))["canary_weight"] == 0 and s, timeout=10,
                     what="canary weight back to 0 after SIGKILL")
    assert state["history"][-1]["reason"] == "lease_expired"  # the lease did it: nobody was left to act
    assert 10 in [h["canary_weight"] for h in state["history"]]
    assert state["lease_expires_at"] is None
    # Nobody removed the canary: only the traffic went back, which is all the lease promises.
    assert state["canary"] is not None and state["canary"]["version"] == "v2"
    assert state["stable"]["version"] == "v1"

    # From now on user traffic (the load generator runs at 100 rps) goes to stable only.
    before = controller_state(stack)["routed"]
    after = wait_for(lambda: (r := controller_state(stack)["routed"])["stable"] >= before["stable"] + 50 and r,
                     timeout=30, what="50 more requests")
    assert after["canary"] == before["canary"]


def test_sigterm_mid_canary_rolls_back_at_once(stack, prefect_server, release_process, tmp_path):
    """SIGTERM (a worker or Kubernetes stopping the pod) rolls back at once, well before the lease.

    Prefect's flow engine turns SIGTERM into a ``TerminationSignal`` raised in the flow's thread.
    ``canary_release`` rolls back with reason ``interrupted``, then lets the signal through, so the
    run ends Crashed (the ``on_crashed`` hook rolls back once more, harmlessly).
    """
    proc = release_process()
    wait_for_canary_at_ten_percent(stack, proc, tmp_path)
    os.killpg(proc.pid, signal.SIGTERM)

    state = wait_for(lambda: (s := controller_state(stack))["canary"] is None and s, timeout=10,
                     what="canary removed after SIGTERM")
    # By an explicit rollback (the canary is gone), not by the 3 s lease running out.
    assert state["canary_weight"] == 0
    assert state["history"][-1]["reason"] == "rollback"
    assert "lease_expired" not in [h["reason"] for h in state["history"]]
    assert state["stable"]["version"] == "v1"

    assert proc.wait(timeout=30) != 0
    assert flow_run_state(prefect_server) == ("CRASHED", "Crashed")
    group = fetch_group(stack.pushgateway_url, {"service": "checkout", "environment": "production"})
    reasons = {m["labels"]["reason"]: float(m["value"]) for m in group["deployment_rollback_total"]["metrics"]}
    assert {reason: n for reason, n in reasons.items() if n} == {"interrupted": 1}  # the others are zeroed series
