"""The real release flow against the real local platform, Prometheus and Pushgateway."""

from __future__ import annotations

import threading
import time

import pytest

from canaryflow.release import ReleaseRolledBack
from flows.release import canary_release
from tests.e2e.conftest import FAST_SPEC, controller_state, prom_value, weights_seen

pytestmark = pytest.mark.e2e


def release(version: str, **changes):
    state = canary_release({**FAST_SPEC, "version": version, **changes}, return_state=True)
    return state, state.result(raise_on_failure=False)


def assert_rolled_back_to_stable(stack, outcome, reason: str) -> None:
    assert isinstance(outcome, ReleaseRolledBack), outcome
    assert outcome.reason == reason
    state = controller_state(stack)
    assert state["canary_weight"] == 0
    assert state["canary"] is None
    assert state["stable"]["version"] == "v1"
    assert state["history"][-1]["reason"] == "rollback"
    prom_value(stack, f'deployment_rollback_total{{service="checkout",reason="{reason}"}}', until=lambda v: v >= 1)
    prom_value(stack, 'deployment_total{service="checkout",status="rolled_back"}', until=lambda v: v >= 1)


def test_healthy_version_is_promoted_through_every_step(stack, prefect_server):
    state, summary = release("v2")
    assert state.is_completed(), state.message
    assert summary["status"] == "promoted"
    proxy = controller_state(stack)
    assert weights_seen(proxy) == [10, 50, 100, 0]
    assert proxy["history"][-1]["reason"] == "promote"
    assert proxy["stable"]["version"] == "v2" and proxy["canary"] is None
    passed = [m for m in summary["measurements"] if m["verdict"] == "PASS"]
    assert {m["weight"] for m in passed} == {10, 50, 100}
    prom_value(stack, 'deployment_total{service="checkout",status="success"}', until=lambda v: v >= 1)
    prom_value(stack, 'smoke_test_total{service="checkout",result="passed"}', until=lambda v: v >= 1)
    prom_value(stack, 'canary_analysis_threshold{service="checkout",metric="error_rate"}',
               until=lambda v: v == pytest.approx(0.001))
    prom_value(stack, 'canaryflow_task_runs_total{task="promote",outcome="success"}', until=lambda v: v >= 1)


def test_five_percent_errors_roll_back_in_the_first_step(stack, prefect_server):
    # 300 canary requests before the first step may pass: with 5 % random errors against 0.1 % the
    # evidence crosses its bar before then in all but about 1 in 1,000 draws (150 would miss 7 %).
    state, outcome = release("v3-errors", min_canary_requests=300, max_hold_seconds=90)
    assert state.is_failed()
    assert_rolled_back_to_stable(stack, outcome, "high_error_rate")
    assert max(weights_seen(controller_state(stack))) == 10
    assert outcome.explanation.startswith("error_rate: canary ") and "at 10% canary" in outcome.explanation
    assert "baseline" in outcome.explanation  # the numbers it was judged by, both versions
    failed = [m for m in outcome.summary["measurements"] if m["verdict"] == "FAIL"]
    assert failed and all(m["metric"] == "error_rate" and m["value"] > 0.001 for m in failed)
    assert all(m["baseline"] is not None and m["baseline"] < m["value"] for m in failed)


def test_slow_version_rolls_back_for_latency(stack, prefect_server):
    state, outcome = release("v3-slow")
    assert state.is_failed()
    assert_rolled_back_to_stable(stack, outcome, "high_latency")
    assert outcome.explanation.startswith("p95_latency: ") and "baseline" in outcome.explanation


def test_smoke_failure_rolls_back_before_any_user_traffic(stack, prefect_server):
    state, outcome = release("v3-smoke-broken")
    assert state.is_failed()
    assert_rolled_back_to_stable(stack, outcome, "smoke_test_failed")
    assert "/api/health: status 503" in outcome.explanation
    proxy = controller_state(stack)
    assert proxy["routed"]["canary"] == 0
    assert max(weights_seen(proxy)) == 0
    prom_value(stack, 'smoke_test_total{service="checkout",result="failed"}', until=lambda v: v >= 1)


@pytest.mark.parametrize("version", ["v3-crash", "v3-never-ready"])
def test_a_canary_that_never_gets_ready_is_rollout_stuck(stack, prefect_server, version):
    state, outcome = release(version, ready_timeout_seconds=3)
    assert state.is_failed()
    assert_rolled_back_to_stable(stack, outcome, "rollout_stuck")
    assert controller_state(stack)["routed"]["canary"] == 0


def test_a_canary_that_dies_mid_step_rolls_back_at_once(stack, prefect_server):
    """v3-crash-later passes its smoke test, then its process exits 10 s after start: its own
    metrics stop, so only the platform can tell; the next round must roll back, not wait."""
    state, outcome = release("v3-crash-later", step_wait_seconds=60)
    assert state.is_failed()
    assert_rolled_back_to_stable(stack, outcome, "rollout_stuck")
    assert "canary v3-crash-later exited with code 3 at 10% canary" in outcome.explanation
    assert max(weights_seen(controller_state(stack))) == 10
    step = next(s for s in outcome.summary["steps"] if s["stage"].startswith("step 1"))
    assert step["outcome"] == "rollback" and step["duration_s"] < 60  # the signal ended the step, not its wait


def test_prometheus_lost_mid_canary_never_promotes(stack, prefect_server):
    def stop_prometheus_at_first_step() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and controller_state(stack)["canary_weight"] != 10:
            time.sleep(0.2)
        stack.stop_prometheus()

    killer = threading.Thread(target=stop_prometheus_at_first_step, daemon=True)
    killer.start()
    state, outcome = release("v2", step_wait_seconds=8)
    killer.join()
    assert state.is_failed()
    assert isinstance(outcome, ReleaseRolledBack) and outcome.reason == "metrics_unavailable"
    assert "cannot reach" in outcome.explanation
    proxy = controller_state(stack)
    assert max(weights_seen(proxy)) == 10 and proxy["canary_weight"] == 0
    assert proxy["stable"]["version"] == "v1"
    stack.start_prometheus()  # the Pushgateway kept the pipeline metrics meanwhile
    prom_value(stack, 'deployment_rollback_total{service="checkout",reason="metrics_unavailable"}',
               until=lambda v: v >= 1, timeout=20)
    prom_value(stack, 'prometheus_query_total{service="checkout",result="failed"}', until=lambda v: v >= 3,
               timeout=20)


def test_counters_accumulate_across_releases(stack, prefect_server):
    reasons = [release(version)[1].reason for version in ("v3-errors", "v3-smoke-broken", "v3-errors")]
    # A 5 %-error version fails one of its two smoke checks about one time in ten: either is its answer.
    assert reasons[1] == "smoke_test_failed" and {reasons[0], reasons[2]} <= {"high_error_rate", "smoke_test_failed"}
    prom_value(stack, 'deployment_total{service="checkout",status="rolled_back"}', until=lambda v: v == 3)
    for reason in set(reasons):
        expected = reasons.count(reason)
        prom_value(stack, f'deployment_rollback_total{{service="checkout",reason="{reason}"}}',
                   until=lambda v, n=expected: v == n)


def test_unreachable_prometheus_at_preflight_changes_nothing(stack, prefect_server, monkeypatch):
    from canaryflow.errors import PreflightError

    monkeypatch.setenv("CANARYFLOW_PROMETHEUS_URL", "http://127.0.0.1:9")  # nothing listens there
    state, outcome = release("v2")
    assert state.is_failed()
    assert isinstance(outcome, PreflightError) and "not ready" in str(outcome)
    proxy = controller_state(stack)
    assert proxy["canary"] is None and proxy["history"] == []
    prom_value(stack, 'deployment_total{service="checkout",status="failed"}', until=lambda v: v == 1)
    prom_value(stack, 'canaryflow_task_runs_total{task="preflight",outcome="failed"}', until=lambda v: v == 1)


def test_putting_back_the_previous_version_judges_only_the_new_canary(stack, prefect_server):
    """v1 served all traffic until seconds ago; its old series must not count as the new canary's."""
    long_window = {"analysis_window": "60s"}
    state, _ = release("v2", **long_window)
    assert state.is_completed(), state.message
    state, summary = release("v1", **long_window)
    assert state.is_completed(), state.message
    first_step = [m for m in summary["measurements"] if m["step"] == 0 and m["requests"] is not None]
    assert first_step
    # 10% of 100 rps for some seconds; the old v1 process served thousands before it was replaced.
    assert max(m["requests"] for m in first_step) < 1000, first_step
