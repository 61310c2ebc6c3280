"""Operating releases on a real Prefect server: scheduled retries of an aborted canary, one
release per service at a time, and the approval gate answered from the CLI or the API."""

from __future__ import annotations

import contextvars
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from canaryflow.local.procs import free_port
from canaryflow.release import ReleaseRolledBack
from canaryflow.retries import RETRY_TAG
from flows.release import canary_release
from tests.e2e.conftest import FAST_SPEC, ROOT, cli_env, controller_state, prefect_cli, weights_seen

# The first test of a session also waits for the PostgreSQL-backed server: initdb and Prefect's
# migrations on PostgreSQL take 1-3 min on a busy 2-core machine, inside that test's timeout.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]


def client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def runs_of(deployment_name: str) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with client() as c:
        deployment = c.read_deployment_by_name(deployment_name)
        return c.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))


def start_and_execute(deployment_name: str, spec: dict[str, Any], env: dict[str, str]) -> Any:
    """Create a run of the deployment and execute it as a worker would (``prefect flow-run execute``)."""
    from prefect.deployments import run_deployment

    flow_run = run_deployment(deployment_name, parameters={"spec": spec}, timeout=0)
    done = prefect_cli("flow-run", "execute", str(flow_run.id), env=env, timeout=180)
    with client() as c:
        finished = c.read_flow_run(flow_run.id)
    assert finished.state.is_final(), done.stdout[-2000:] + done.stderr[-2000:]
    return finished


def retries_of(origin: str) -> list[Any]:
    return [r for r in runs_of("canary-release/production")
            if RETRY_TAG in r.tags and r.parameters.get("retry_of") == origin]


def test_a_transient_abort_schedules_a_retry_with_the_right_time_and_parameters(prefect_server, deployments):
    spec = {**FAST_SPEC, "version": "v7", "retry": {"backoff_seconds": 120, "max_attempts": 3}}
    dead_prometheus = f"http://127.0.0.1:{free_port()}"
    before = datetime.now(UTC)
    original = start_and_execute("canary-release/production", spec,
                                 cli_env(prefect_server, CANARYFLOW_PROMETHEUS_URL=dead_prometheus))
    after = datetime.now(UTC)
    assert original.state.is_failed() and "not ready" in original.state.message
    assert original.state.name == "Refused"  # in the UI, not a rollback

    [retry] = retries_of(str(original.id))
    assert retry.state.is_scheduled()
    assert before + timedelta(seconds=119) <= retry.expected_start_time <= after + timedelta(seconds=121)
    assert retry.parameters["attempt"] == 2
    assert retry.parameters["spec"]["version"] == "v7" and retry.parameters["spec"]["retry"]["backoff_seconds"] == 120
    assert {"attempt:2", RETRY_TAG, "environment:production", "service:checkout", "version:v7"} <= set(retry.tags)

    # By hand, for a chosen time: `canaryflow retry <id> --at`.
    at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    cli = subprocess.run([sys.executable, "-m", "canaryflow", "retry", str(original.id), "--at", at.isoformat()],
                         cwd=ROOT, env=cli_env(prefect_server), capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    manual = [r for r in retries_of(str(original.id)) if "manual-retry" in r.tags]
    assert len(manual) == 1 and manual[0].expected_start_time == at and manual[0].state.is_scheduled()


def test_the_production_deployment_refuses_a_staging_spec(prefect_server, deployments):
    run = start_and_execute("canary-release/production", {**FAST_SPEC, "version": "v2", "environment": "staging"},
                            cli_env(prefect_server))
    assert run.state.is_failed()
    assert "deployment 'production' cannot release to staging" in run.state.message


def test_a_bad_version_schedules_no_retry(prefect_server, deployments, stack):
    original = start_and_execute("canary-release/production", {**FAST_SPEC, "version": "v3-errors"},
                                 cli_env(prefect_server))
    assert original.state.is_failed() and "high_error_rate" in original.state.message
    assert retries_of(str(original.id)) == []
    assert controller_state(stack)["stable"]["version"] == "v1"


def test_a_second_release_of_a_service_waits_for_the_first_and_changes_nothing(prefect_server, stack):
    from prefect.concurrency.sync import concurrency

    from tasks.locks import ensure_limit, lock_name

    ensure_limit(lock_name("checkout"))
    with concurrency(lock_name("checkout"), strict=True):  # a release of checkout is in progress
        state = canary_release({**FAST_SPEC, "version": "v2", "queue_timeout_seconds": 1}, return_state=True)
    assert state.is_failed()
    assert "another release of checkout is in progress" in state.message
    proxy = controller_state(stack)
    assert proxy["canary"] is None and proxy["history"] == []  # the platform was never touched


#: A short lease, so the gate's renewals are what keeps the canary's weight while paused; 6 s leaves
#: renewals (every lease/3) room for a stalled second on a saturated machine.
GATED = {**FAST_SPEC, "version": "v2", "step_wait_seconds": 2, "traffic_lease_seconds": 6, "min_canary_requests": 40,
         "approval": {"environments": ["production"], "timeout_seconds": 90, "poll_seconds": 1}}


def paused_run_id(timeout: float = 120) -> str:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with client() as c:
            paused = c.read_flow_runs(flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
        if paused:
            return str(paused[0].id)
        time.sleep(0.5)
    raise AssertionError("the release never paused for approval")


def release_answered_by(answer: Callable[[str], None], spec: dict[str, Any]) -> tuple[Any, Any]:
    """Run the gated release here (flows belong in the main thread); a person answers from another."""
    errors: list[BaseException] = []

    def person() -> None:
        try:
            answer(paused_run_id())
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    # The Prefect settings of the test session live in a context variable: carry them into the thread.
    thread = threading.Thread(target=contextvars.copy_context().run, args=(person,), daemon=True)
    thread.start()
    state = canary_release(spec, return_state=True)
    thread.join(timeout=30)
    assert not errors, errors
    return state, state.result(raise_on_failure=False)


def test_approved_from_the_cli_goes_on_to_full_traffic(prefect_server, stack, caplog):
    weights_while_paused: list[int] = []
    paused: list[str] = []

    def approve_from_cli(run_id: str) -> None:
        paused.append(run_id)
        time.sleep(13)  # more than two leases: the gate must keep renewing the canary's weight
        weights_while_paused.append(controller_state(stack)["canary_weight"])
        cli = subprocess.run([sys.executable, "-m", "canaryflow", "approve", run_id, "--reason",
                              "dashboards look fine", "--by", "sre-on-call"], cwd=ROOT, env=cli_env(prefect_server),
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stdout + cli.stderr

    state, summary = release_answered_by(approve_from_cli, GATED)
    assert state.is_completed(), state.message
    assert weights_while_paused == [50]
    assert weights_seen(controller_state(stack)) == [10, 50, 100, 0]
    gate = next(s for s in summary["steps"] if s["stage"] == "approval")
    assert gate["outcome"] == "approved" and gate["detail"] == "approved by sre-on-call: dashboards look fine"
    # The log says the very commands to answer with, this run's id in them.
    assert f"canaryflow approve {paused[0]} / canaryflow reject {paused[0]}" in caplog.text


def test_rejected_rolls_back_with_reason_manual(prefect_server, stack):
    from canaryflow.operate import answer_approval

    state, outcome = release_answered_by(
        lambda run_id: answer_approval(run_id, approved=False, reason="error budget spent", by="lead"), GATED)
    assert isinstance(outcome, ReleaseRolledBack) and outcome.reason == "manual"
    assert "rejected by lead: error budget spent" in outcome.explanation
    proxy = controller_state(stack)
    assert max(weights_seen(proxy)) == 50 and proxy["canary"] is None and proxy["stable"]["version"] == "v1"


def test_no_answer_in_time_rolls_back_with_reason_manual(prefect_server, stack):
    state = canary_release({**GATED, "approval": {**GATED["approval"], "timeout_seconds": 3}}, return_state=True)
    outcome = state.result(raise_on_failure=False)
    assert isinstance(outcome, ReleaseRolledBack) and outcome.reason == "manual"
    assert outcome.explanation == "no approval within 3 s"
    assert controller_state(stack)["canary"] is None


def test_manual_rollback_from_the_cli_puts_all_traffic_on_stable(prefect_server, stack, tmp_path):
    from canaryflow.pipeline_metrics import fetch_group
    from canaryflow.platforms.local import LocalPlatform

    canary = LocalPlatform(stack.controller_url, service="checkout")  # a canary left at 50 %
    try:
        canary.deploy("v2")
        canary.wait_ready(timeout=15)
        canary.set_weight(50, lease_seconds=None)
    finally:
        canary.close()
    assert controller_state(stack)["canary_weight"] == 50

    spec = tmp_path / "spec.yaml"
    spec.write_text("service: checkout\nversion: v2\nenvironment: production\n")
    cli = subprocess.run([sys.executable, "-m", "canaryflow", "rollback", "--spec", str(spec), "--detail", "pager"],
                         cwd=ROOT, env=cli_env(prefect_server), capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "stable is v1" in cli.stdout
    proxy = controller_state(stack)
    assert proxy["canary_weight"] == 0 and proxy["canary"] is None and proxy["stable"]["version"] == "v1"
    # Users first: the weight went to 0 on its own, before the canary was removed (and before the
    # rollback waited on any release that might be holding it).
    assert [(h["canary_weight"], h["reason"]) for h in proxy["history"][-2:]] == [(0, "set"), (0, "rollback")]
    group = fetch_group(stack.pushgateway_url, {"service": "checkout", "environment": "production"})
    reasons = {m["labels"]["reason"]: float(m["value"]) for m in group["deployment_rollback_total"]["metrics"]}
    assert reasons["manual"] == 1
