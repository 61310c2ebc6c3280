"""``canaryflow status``'s screen, from a snapshot: what an SRE reads off it, as text."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from rich.console import Console

from canaryflow.status import MetricVerdict, ReleaseStatus, Snapshot, latest_verdicts, parse_measurement, render

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
ERRORS = ("canary 0.10% (1/980) vs baseline 0.12% (9/7,412) — evidence 0.41 < 200; canary <= 0.93% "
          "(99.5% bound), limit 0.10%")

RUNNING = ReleaseStatus(
    service="checkout", version="v2", environment="production", platform="local",
    run_id="2aad5d60-d5ba-4231-8120-9d1a11eefb71", run_name="release/checkout/v2/production",
    state_type="RUNNING", state_name="Running",
    ui_url="http://127.0.0.1:4200/runs/flow-run/2aad5d60-d5ba-4231-8120-9d1a11eefb71",
    steps=(10, 50, 100), started=NOW - timedelta(seconds=42), stable_version="v1", weight=50, run_weight=50,
    verdicts=(MetricVerdict("error_rate", "PASS", 50, f"error_rate: {ERRORS}", NOW - timedelta(seconds=1)),
              MetricVerdict("p95_latency", "INCONCLUSIVE", 50, "p95_latency: too few canary requests at this "
                            "step: 61 < 120", NOW - timedelta(seconds=1))),
    last_log="canary weight -> 50%",
)


def screen(snapshot: Snapshot, width: int = 140) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(render(snapshot, now=NOW))
    return " ".join(console.export_text().split())  # the words, whatever the wrapping


def test_a_running_release_shows_versions_step_weight_and_every_verdict_with_its_numbers():
    text = screen(Snapshot((RUNNING,), taken=NOW))
    assert "checkout v1 → v2 (production) Running" in text
    assert "stable v1 canary v2" in text
    assert "step 2/3 weight 50% 10% → [50%] → 100%" in text
    assert "error_rate PASS 50% 1s ago canary 0.10% (1/980) vs baseline 0.12% (9/7,412) — evidence 0.41 < 200" in text
    assert "p95_latency INCONCLUSIVE 50% 1s ago too few canary requests at this step: 61 < 120" in text
    assert "release/checkout/v2/production Running started 42s ago" in text
    assert RUNNING.ui_url in text


def test_a_weight_the_platform_does_not_apply_is_shown_beside_the_one_the_run_set():
    text = screen(Snapshot((replace(RUNNING, weight=0),), taken=NOW))
    assert "weight 0% (the run set 50%)" in text
    assert "step 2/3" in text  # the step is the run's


def test_a_pause_and_a_dead_canary_are_said():
    text = screen(Snapshot((replace(RUNNING, operator="paused by carol@ops: looking",
                                    canary_problem="canary v2 exited with code 1"),), taken=NOW))
    assert "operator paused by carol@ops: looking" in text
    assert "canary v2 canary v2 exited with code 1" in text


def test_a_platform_the_shell_cannot_reach_leaves_the_run_s_own_weight():
    status = replace(RUNNING, weight=None, stable_version=None,
                     platform_error="PlatformError: local controller at http://127.0.0.1:8080 unreachable")
    text = screen(Snapshot((status,), taken=NOW))
    assert "weight 50% (as the run set it)" in text
    assert "local platform cannot be read: PlatformError: local controller" in text
    assert "stable ? canary v2" in text


def test_before_any_traffic_moved_the_screen_says_what_the_run_does():
    status = replace(RUNNING, weight=0, run_weight=None, verdicts=(), last_log="deployed v2 as canary beside v1")
    text = screen(Snapshot((status,), taken=NOW))
    assert "step 0/3 weight 0%" in text and "no analysis round yet" in text
    assert "last log deployed v2 as canary beside v1" in text


def test_a_rolled_back_release_shows_its_outcome_and_the_step_it_was_caught_at():
    message = "rolled back (high_error_rate): error_rate: canary 4.92% (9/183) vs baseline 0.05% (1/1,862)"
    status = replace(RUNNING, state_type="FAILED", state_name="RolledBack", state_message=message,
                     ended=NOW - timedelta(seconds=5), weight=0, run_weight=0,
                     verdicts=(MetricVerdict("error_rate", "FAIL", 10, "error_rate: canary 4.92% (9/183)",
                                             NOW - timedelta(seconds=6)),))
    text = screen(Snapshot((status,), taken=NOW))
    assert "checkout v2 (production) RolledBack" in text and "v1 → v2" not in text
    assert "stable now v1" in text and "all traffic on stable" in text
    assert "step 1/3" in text and "[10%] → 50% → 100%" in text
    assert f"outcome {message}" in text
    assert "error_rate FAIL 10% 6s ago canary 4.92% (9/183)" in text
    assert "ended 5s ago" in text and "last log" not in text


def test_no_release_and_an_unreadable_server_are_said_in_a_line():
    assert "no release of checkout on record" in screen(Snapshot(note="no release of checkout on record", taken=NOW))
    text = screen(Snapshot(error="cannot read the Prefect API: ConnectError: refused", taken=NOW))
    assert "cannot read the Prefect API: ConnectError: refused" in text


def test_a_watch_stops_only_once_every_release_shown_has_ended():
    ended = replace(RUNNING, state_type="COMPLETED", state_name="Completed")
    assert not Snapshot((RUNNING, ended)).settled
    assert Snapshot((ended,)).settled
    assert not Snapshot().settled  # nothing shown yet: a release may be about to start


def test_the_analysis_line_of_each_verdict_is_read_back():
    line = f"[10%] error_rate FAIL: error_rate: {ERRORS}"
    assert parse_measurement(line, NOW) == MetricVerdict("error_rate", "FAIL", 10, f"error_rate: {ERRORS}", NOW)
    for verdict in ("PASS", "INCONCLUSIVE", "ERROR"):
        assert parse_measurement(f"[100%] traffic_split {verdict}: x").verdict == verdict
    for other in ("canary weight -> 10%", "[10%] error_rate MAYBE: x", "operator: paused by bob", ""):
        assert parse_measurement(other) is None


def test_the_newest_verdict_of_each_metric_in_the_order_a_round_logs_them():
    at = [NOW - timedelta(seconds=s) for s in range(6)]
    newest_first = [("[50%] traffic_split PASS: c", at[0]), ("[50%] p95_latency PASS: b", at[0]),
                    ("[50%] error_rate PASS: a", at[0]), ("canary weight -> 50%", at[1]),
                    ("[10%] traffic_split PASS: old", at[2]), ("[10%] p95_latency FAIL: old", at[2]),
                    ("[10%] error_rate INCONCLUSIVE: old", at[2])]
    verdicts = latest_verdicts(newest_first)
    assert [(v.metric, v.verdict, v.weight, v.detail) for v in verdicts] == [
        ("error_rate", "PASS", 50, "a"), ("p95_latency", "PASS", 50, "b"), ("traffic_split", "PASS", 50, "c")]
    assert latest_verdicts([("release of checkout v2 promoted", at[0])]) == ()
