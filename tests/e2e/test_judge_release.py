"""The judge end to end on the local platform, with errors drawn at random on every version.

v1 (stable) and v2 fail 0.1 % of requests at random; the canary is compared with the stable
version serving at the same moment. Each test asserts the outcome *and* the evidence it names.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from prefect.client.orchestration import get_client

from canaryflow.release import ReleaseRolledBack
from flows.release import canary_release
from tests.e2e.conftest import FAST_SPEC, controller_state, prom_value, weights_seen

pytestmark = pytest.mark.e2e


def release(version: str, **changes):
    state = canary_release({**FAST_SPEC, "version": version, **changes}, return_state=True)
    return state, state.result(raise_on_failure=False)


def on_weight(stack, weight: int, action) -> threading.Thread:
    """Run ``action`` once the proxy applies ``weight`` (bounded: gives up after 90 s)."""
    def wait_then_act() -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if controller_state(stack)["canary_weight"] == weight:
                action()
                return
            time.sleep(0.2)

    thread = threading.Thread(target=wait_then_act, daemon=True)
    thread.start()
    return thread


def test_a_noisy_healthy_canary_is_promoted_with_what_its_evidence_was_worth(stack, prefect_server):
    state, summary = release("v2")
    assert state.is_completed(), state.message
    assert summary["status"] == "promoted"
    worth = summary["evidence_worth"]
    assert any(s.startswith("error_rate: would have caught >=") or "too few to catch" in s for s in worth), worth
    passes = [m for m in summary["measurements"] if m["metric"] == "error_rate" and m["verdict"] == "PASS"]
    assert passes and all("vs baseline" in m["detail"] and "evidence" in m["detail"] for m in passes)
    prom_value(stack, 'canary_analysis_evidence{service="checkout",metric="error_rate"}', until=lambda v: v >= 0)


def test_two_percent_errors_roll_back_with_the_evidence(stack, prefect_server):
    state, outcome = release("v3-errors-2pct", step_wait_seconds=20)
    assert state.is_failed()
    assert isinstance(outcome, ReleaseRolledBack) and outcome.reason == "high_error_rate"
    assert "vs baseline" in outcome.explanation or "credibly above" in outcome.explanation
    failed = [m for m in outcome.summary["measurements"] if m["verdict"] == "FAIL"]
    assert failed and failed[0]["value"] > failed[0]["baseline"]
    assert controller_state(stack)["canary_weight"] == 0
    prom_value(stack, 'deployment_rollback_total{service="checkout",reason="high_error_rate"}', until=lambda v: v >= 1)


def wait_for_baseline_history(stack, *, requests: int = 500) -> None:
    """Until Prometheus holds this much of the stable version's traffic: the judge places its latency
    boundaries around the baseline's quantiles from its history, as it would in production (with
    too little, it compares at the limit alone and a regression inside the SLO goes unseen)."""
    prom_value(stack, 'sum(http_requests_total{service="checkout",version="v1"})', timeout=60,
               until=lambda v: v >= requests)


def test_a_latency_regression_inside_the_slo_is_rolled_back_against_the_baseline(stack, prefect_server):
    # 30 % slower at every quantile, p95 ~59 ms against a 200 ms limit: a threshold never fires.
    wait_for_baseline_history(stack)
    state, outcome = release("v3-latency-regression", steps=[50, 100], step_wait_seconds=40, max_hold_seconds=20)
    assert state.is_failed(), state.message
    assert isinstance(outcome, ReleaseRolledBack) and outcome.reason == "high_latency"
    assert "evidence" in outcome.explanation and "baseline" in outcome.explanation
    failed = next(m for m in outcome.summary["measurements"] if m["verdict"] == "FAIL")
    assert failed["value"] < 200  # inside the SLO: only the comparison saw it
    assert outcome.summary["boundaries_ms"]["p95_latency"] != [200.0]  # placed from the baseline's quantiles


def start_incident(stack, *, duration_s: float = 6, error_rate: float = 0.05):
    """An action for ``on_weight``: every running version fails ``error_rate`` of requests for a while."""
    def incident() -> None:
        httpx.post(f"{stack.controller_url}/-/incident", json={"duration_s": duration_s, "error_rate": error_rate},
                   timeout=5).raise_for_status()
    return incident


def test_an_incident_on_every_version_does_not_roll_the_canary_back(stack, prefect_server):
    thread = on_weight(stack, 10, start_incident(stack))
    state, summary = release("v2", step_wait_seconds=15)
    thread.join(timeout=5)
    assert state.is_completed(), state.message
    measured = [m for m in summary["measurements"] if m["metric"] == "error_rate" and m["step"] == 0]
    assert max(m["baseline"] or 0 for m in measured) > 0.005  # the incident was seen on the baseline too
    assert weights_seen(controller_state(stack))[:3] == [10, 50, 100]


def test_an_incident_at_full_weight_steps_back_to_compare_and_then_promotes(stack, prefect_server):
    """At 100 % no baseline serves, so an incident looks like the canary's fault: the release steps
    back to 50 %, finds the baseline as bad, and goes up again once it passed there."""
    thread = on_weight(stack, 100, start_incident(stack))
    state, summary = release("v2", step_wait_seconds=8)
    thread.join(timeout=5)
    assert state.is_completed(), state.message
    assert weights_seen(controller_state(stack))[:5] == [10, 50, 100, 50, 100]
    steps = [m["step"] for m in summary["measurements"] if m["metric"] == "error_rate"]
    assert steps.index(1, steps.index(2)) > steps.index(2)  # step 2 (50 %) measured again after step 3
    unattributed = [m for m in summary["measurements"] if m["metric"] == "error_rate" and m["step"] == 2
                    and m["verdict"] == "INCONCLUSIVE" and "where no baseline served" in m["detail"]]
    assert unattributed, "the breach at 100 % was not reported as needing a baseline"
    with get_client(sync_client=True) as client:  # the run says which release it is, however started
        tags = set(client.read_flow_run(state.state_details.flow_run_id).tags)
    assert {"canaryflow", "service:checkout", "version:v2", "environment:production"} <= tags


def test_a_canary_far_below_its_weight_rolls_back_traffic_mismatch(stack, prefect_server):
    httpx.post(f"{stack.controller_url}/-/routing", json={"canary_share_factor": 0.2}, timeout=5).raise_for_status()
    state, outcome = release("v2", step_wait_seconds=20)
    assert state.is_failed()
    assert isinstance(outcome, ReleaseRolledBack) and outcome.reason == "traffic_mismatch"
    assert "where the router sends 10.00%" in outcome.explanation
    assert controller_state(stack)["canary_weight"] == 0
