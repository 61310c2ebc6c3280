"""What the runbook tells people while and after it runs: the events automations match on, the
run log's lines, the pipeline metrics, the step-by-step summary, and what each task is handed.

Same seam as test_release_control_path.py (read its docstring): ``release`` and ``finalise`` run as
plain functions over the recording tasks and the fake clock. On top of it, ``emit_release_event``
is replaced by a recorder (the real one sends to a Prefect server, and is tested in
tests/unit/test_events.py), and every task call is recorded with its arguments, so a task handed
the wrong release, weight or reason shows here. The clock starts where the release starts, so
every duration below is exactly the time the fake clock was moved on.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

import flows.release as release_flow
from canaryflow import events
from canaryflow.deliberate_endings import is_deliberate
from canaryflow.errors import PlatformError, PreflightError
from canaryflow.events import latest_evidence
from canaryflow.judge import Action, Reason
from canaryflow.kube.lease import LeaseLost
from canaryflow.outcome import Ending, Outcome
from tests.unit.flows.test_release_control_path import (
    FAIL,
    INCONCLUSIVE,
    NEEDS_BASELINE,
    PASS,
    ArtifactApiDown,
    Runbook,
    _conduct,
    _runbook,
    _sample,
)

LOGGER = "canary-release-test"  # the run logger of the control-path fakes


class Recorded:
    """The event recorder and the task-call recorder of one release."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any, dict[str, Any]]] = []
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.event_failure: Exception | None = None

    def emit(self, event: str, spec: Any, **payload: Any) -> None:
        self.events.append((event, spec, payload))
        if self.event_failure is not None:
            raise self.event_failure

    def names(self) -> list[str]:
        return [event for event, _, _ in self.events]

    def payloads(self, event: str) -> list[dict[str, Any]]:
        return [payload for name, _, payload in self.events if name == event]

    def args(self, task: str) -> list[tuple[Any, ...]]:
        """The arguments after the release, per call of ``task``, keywords as (name, value) pairs."""
        return [(*args[1:], *sorted(kwargs.items())) for name, args, kwargs in self.calls if name == task]


def _recording(monkeypatch: pytest.MonkeyPatch, book: Runbook) -> Recorded:
    recorded = Recorded()
    monkeypatch.setattr(release_flow, "emit_release_event", recorded.emit)
    inner = release_flow.PREFECT_TASKS

    def wrap(name: str, task: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            recorded.calls.append((name, args, kwargs))
            return task(*args, **kwargs)
        return call

    monkeypatch.setattr(release_flow, "PREFECT_TASKS",
                        SimpleNamespace(**{name: wrap(name, task) for name, task in vars(inner).items()}))
    book.run.started = book.clock.now  # durations below are exactly the fake clock's moves
    return recorded


@pytest.fixture
def book(monkeypatch: pytest.MonkeyPatch) -> Runbook:
    return _runbook(monkeypatch)


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch, book: Runbook) -> Recorded:
    return _recording(monkeypatch, book)


def _failed(book: Runbook, system: str, operation: str) -> float | None:
    return _sample(book, "canaryflow_monitoring_operations_total", system=system, operation=operation,
                   result="failed")


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


# -- every task is handed this release ------------------------------------------------------------


def _assert_every_task_got_this_release(book: Runbook, seen: Recorded) -> None:
    assert seen.calls
    for name, args, _ in seen.calls:
        if name != "read_operator_command":  # the only task that takes no release
            assert args and args[0] is book.run, name


def test_every_task_of_a_promotion_is_handed_this_release_with_its_weight(monkeypatch):
    book = _runbook(monkeypatch, approval={"environments": ["staging"]})
    seen = _recording(monkeypatch, book)
    book.rounds = [PASS, PASS, PASS]
    outcome, _ = _conduct(book)
    assert outcome.ending is Ending.PROMOTED
    _assert_every_task_got_this_release(book, seen)
    assert {name for name, _, _ in seen.calls} >= {
        "preflight", "deploy_canary", "wait_until_ready", "smoke_test", "update_dashboard", "annotate_release",
        "start_analysis", "await_approval", "set_canary_weight", "show_weight", "analyse_canary",
        "read_operator_command", "promote_canary", "publish_report"}
    assert seen.args("set_canary_weight") == [(10,), (50,), (100,)]
    assert seen.args("show_weight") == [(10,), (50,), (100,), (100,)]  # the last: promoted, all on v2
    assert seen.args("annotate_release") == [("started",), ("step", 10), ("step", 50), ("step", 100),
                                             ("promoted",)]
    assert seen.args("await_approval") == [(50,)]


def test_every_task_of_a_rollback_is_handed_this_release_and_the_reason(book, seen):
    book.rounds = [PASS, FAIL]
    outcome, summary = _conduct(book)
    assert outcome.reason is Reason.HIGH_ERROR_RATE
    _assert_every_task_got_this_release(book, seen)
    assert seen.args("rollback_canary") == [("high_error_rate",)]
    assert seen.args("restore_dashboard") == [()]
    assert seen.args("annotate_release")[-1] == ("rolled_back", ("explanation", outcome.explanation),
                                                 ("reason", "high_error_rate"))
    assert seen.args("show_weight")[-1] == (0,)  # the UI's weight: back to stable
    assert seen.args("schedule_retry") == [("high_error_rate",)]
    assert seen.args("publish_report") == [(summary,)]


# -- the events automations match on ---------------------------------------------------------------


def test_a_promotion_emits_started_each_step_and_promoted_with_its_facts(book, seen):
    book.run.attempt, book.run.previous_version = 2, "v1"
    book.rounds = [PASS, PASS, PASS]
    outcome, summary = _conduct(book)
    assert outcome.ending is Ending.PROMOTED
    assert all(spec is book.run.spec for _, spec, _ in seen.events)
    assert seen.names() == [events.STARTED, events.STEP_ADVANCED, events.STEP_ADVANCED, events.STEP_ADVANCED,
                            events.PROMOTED]
    assert seen.payloads(events.STARTED) == [{"attempt": 2, "previous_version": "v1"}]
    assert seen.payloads(events.STEP_ADVANCED) == [{"weight": 10, "step": 1, "steps": 3},
                                                   {"weight": 50, "step": 2, "steps": 3},
                                                   {"weight": 100, "step": 3, "steps": 3}]
    assert seen.payloads(events.PROMOTED) == [{"previous_version": "v1", "reason": "analysis_passed",
                                               "duration_s": summary["duration_s"]}]


def test_a_step_back_is_its_own_event_then_the_release_goes_up_again(monkeypatch):
    book = _runbook(monkeypatch, steps=[5, 10, 50, 100])
    seen = _recording(monkeypatch, book)
    book.rounds = [PASS, PASS, PASS, NEEDS_BASELINE, PASS, PASS]
    outcome, _ = _conduct(book)
    assert outcome.ending is Ending.PROMOTED
    assert seen.args("set_canary_weight") == [(5,), (10,), (50,), (100,), (50,), (100,)]  # back one step only
    steps = [(name, payload["weight"], payload["step"]) for name, _, payload in seen.events
             if name in (events.STEP_ADVANCED, events.STEPPED_BACK)]
    assert steps == [(events.STEP_ADVANCED, 5, 1), (events.STEP_ADVANCED, 10, 2), (events.STEP_ADVANCED, 50, 3),
                     (events.STEP_ADVANCED, 100, 4), (events.STEPPED_BACK, 50, 3), (events.STEP_ADVANCED, 100, 4)]
    assert {payload["steps"] for payload in seen.payloads(events.STEP_ADVANCED)} == {4}


def test_a_rollback_emits_rolled_back_with_the_deciding_rounds_numbers(book, seen):
    book.rounds = [PASS, FAIL]
    outcome, summary = _conduct(book)
    assert seen.names()[-1] == events.ROLLED_BACK
    payload = seen.payloads(events.ROLLED_BACK)[0]
    assert payload == {"reason": "high_error_rate", "explanation": outcome.explanation,
                       "evidence": latest_evidence(summary)}
    assert [(m["metric"], m["verdict"], m["weight"]) for m in payload["evidence"]] == [("error_rate", "FAIL", 50)]


@pytest.mark.parametrize("reason,said", [("metrics_unavailable", "metrics_unavailable"),
                                          (None, "preflight_failed")])
def test_a_refusal_emits_refused_with_its_reason_or_preflight_failed(book, seen, reason, said):
    book.raises["preflight"] = PreflightError("Prometheus is not ready", reason=reason)
    _conduct(book)
    assert seen.names() == [events.REFUSED]  # never started
    assert seen.payloads(events.REFUSED) == [{"reason": said, "explanation": "Prometheus is not ready"}]


def test_an_event_the_server_refuses_is_counted_and_logged_and_the_release_goes_on(book, seen, caplog):
    seen.event_failure = ArtifactApiDown("HTTP 503")
    book.rounds = [PASS, PASS, PASS]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        outcome, summary = _conduct(book)
    assert outcome.ending is Ending.PROMOTED and "promote" in book.names()
    assert len(seen.events) == 5
    assert _failed(book, "prefect", "event") == 5  # started, three steps, promoted
    assert _messages(caplog, logging.WARNING) == [
        "prefect event failed (ArtifactApiDown: HTTP 503); the release's outcome stands"] * 5
    assert release_flow.final_state(outcome, summary)["status"] == "promoted"


@pytest.mark.parametrize("failing,system,operation,times", [
    ("update dashboard", "grafana", "update_dashboard", 1),
    ("annotate", "grafana", "annotate", 5),  # started, three steps, promoted
    ("show", "prefect", "show_weight", 4),  # three steps, promoted
])
def test_a_monitoring_call_that_fails_is_counted_under_its_system_and_operation(book, seen, caplog, failing, system,
                                                                               operation, times):
    book.raises[failing] = ArtifactApiDown("")  # an error with no message is named by its type
    book.rounds = [PASS, PASS, PASS]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        outcome, _ = _conduct(book)
    assert outcome.ending is Ending.PROMOTED
    assert _failed(book, system, operation) == times
    assert _messages(caplog, logging.WARNING) == [
        f"{system} {operation} failed (ArtifactApiDown); the release's outcome stands"] * times


# -- the run log -----------------------------------------------------------------------------------


def test_a_promotion_is_logged_with_the_service_and_version(book, seen, caplog):
    book.rounds = [PASS, PASS, PASS]
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _conduct(book)
    assert _messages(caplog, logging.INFO) == ["release of checkout v2 promoted"]
    assert _messages(caplog, logging.ERROR) == []


def test_a_rollback_is_logged_with_its_reason_and_explanation(book, seen, caplog):
    book.rounds = [FAIL]
    with caplog.at_level(logging.INFO, logger=LOGGER):
        outcome, _ = _conduct(book)
    assert _messages(caplog, logging.ERROR) == [
        f"release of checkout v2 rolled back: high_error_rate — {outcome.explanation}"]


def test_a_refusal_is_logged_with_its_explanation(book, seen, caplog):
    book.raises["preflight"] = PreflightError("Prometheus is not ready", reason="metrics_unavailable")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _conduct(book)
    assert _messages(caplog, logging.ERROR) == ["release of checkout v2 refused: Prometheus is not ready"]


class _DeafLogger(logging.LoggerAdapter):
    """A run logger whose info and error calls fail (the log API is down); warnings still arrive."""

    def info(self, *args: Any, **kwargs: Any) -> None:
        raise ArtifactApiDown("log API down")

    error = info


@pytest.mark.parametrize("script", ["promoted", "rolled_back", "refused"])
def test_a_run_log_that_fails_is_counted_as_the_pipelines_log(monkeypatch, book, seen, script):
    if script == "promoted":
        book.rounds = [PASS, PASS, PASS]
    elif script == "rolled_back":
        book.rounds = [FAIL]
    else:
        book.raises["preflight"] = PreflightError("no", reason="metrics_unavailable")
    monkeypatch.setattr(release_flow, "get_run_logger", lambda: _DeafLogger(logging.getLogger(LOGGER), {}))
    outcome, _ = _conduct(book)
    assert outcome.ending.value == script
    assert _failed(book, "pipeline", "log") == 1


# -- the order of reporting, by system and operation -------------------------------------------------


@pytest.mark.parametrize("outcome,expected", [
    (Outcome.promoted(()), [("prefect", "show_weight"), ("grafana", "annotate"), ("pipeline", "release_finished"),
                            ("pipeline", "log"), ("prefect", "event"), ("pushgateway", "push"),
                            ("prefect", "publish_report")]),
    (Outcome.rolled_back(Reason.METRICS_UNAVAILABLE, "no data"),
     [("grafana", "annotate"), ("grafana", "restore_dashboard"), ("pipeline", "release_finished"),
      ("pipeline", "log"), ("prefect", "show_weight"), ("prefect", "event"), ("pushgateway", "push"),
      ("prefect", "schedule_retry"), ("prefect", "publish_report")]),
    (Outcome.refused(Reason.METRICS_UNAVAILABLE, "Prometheus is down"),
     [("pipeline", "release_finished"), ("pipeline", "log"), ("prefect", "event"), ("pushgateway", "push"),
      ("prefect", "schedule_retry")]),
    (Outcome.refused(None, "already released"),
     [("pipeline", "release_finished"), ("pipeline", "log"), ("prefect", "event"), ("pushgateway", "push")]),
])
def test_the_reporting_steps_name_the_system_and_operation_a_failure_is_counted_under(book, outcome, expected):
    steps = release_flow.reporting_steps(book.run, outcome, release_flow.PREFECT_TASKS, {})
    assert [(system, operation) for system, operation, _ in steps] == expected


# -- the pipeline metrics --------------------------------------------------------------------------


def test_a_promotion_records_how_long_it_took_and_the_lead_time_from_the_commit(monkeypatch):
    committed = datetime.now(UTC) - timedelta(hours=1)
    book = _runbook(monkeypatch, step_wait_seconds=60, commit_timestamp=committed.isoformat())
    _recording(monkeypatch, book)
    book.rounds = [INCONCLUSIVE, INCONCLUSIVE, PASS] * 3  # at 0 s, 30 s and 60 s of each step
    outcome, _ = _conduct(book)
    assert outcome.ending is Ending.PROMOTED
    assert _sample(book, "deployment_duration_seconds_sum") == 180
    lead = _sample(book, "deployment_lead_time_seconds_sum")
    assert 3590 < lead < 3700  # from the commit, not from the release start (180 s)


def test_a_rollback_records_how_long_it_took(book, seen):
    book.rounds = [INCONCLUSIVE, INCONCLUSIVE, FAIL]
    _conduct(book)
    assert _sample(book, "deployment_duration_seconds_sum") == 60
    assert _sample(book, "deployment_total", status="rolled_back") == 1


def test_a_refusal_records_its_duration_as_failed(book, seen):
    book.raises["preflight"] = PreflightError("no", reason="metrics_unavailable")
    book.clock.sleep(7)  # a slow preflight
    _conduct(book)
    assert _sample(book, "deployment_total", status="failed") == 1
    assert _sample(book, "deployment_duration_seconds_sum") == 7


# -- the step-by-step summary ----------------------------------------------------------------------


def test_the_summary_has_one_line_per_step_with_its_decision_then_the_rollback(book, seen):
    book.rounds = [INCONCLUSIVE, PASS, FAIL]
    outcome, summary = _conduct(book)
    lines = [(s["stage"], s["weight"], s["outcome"]) for s in summary["steps"]]
    assert lines == [("step 1/3", 10, "advance"), ("step 2/3", 50, "rollback"), ("rollback", 0, "rolled_back")]
    first, second, rollback = summary["steps"]
    assert isinstance(first["detail"], str) and "10%" in first["detail"]  # the judge's words
    assert second["detail"] == outcome.explanation
    assert rollback["detail"] == outcome.explanation
    assert summary["step_starts"] == [[0, 10], [30, 50]]  # seconds since the release started
    assert outcome.rollback_error is None and "rollback_error" not in summary


def test_a_promotions_summary_lines_say_advance_then_promote(book, seen):
    book.rounds = [PASS, PASS, PASS]
    outcome, summary = _conduct(book)
    assert [(s["stage"], s["outcome"]) for s in summary["steps"]] == [
        ("step 1/3", "advance"), ("step 2/3", "advance"), ("step 3/3", "promote")]
    assert [s["detail"] for s in summary["steps"]] == [d.explanation for d in outcome.evidence]
    assert all(s["detail"] for s in summary["steps"])


def test_the_rollback_decision_is_the_outcomes_evidence(book, seen):
    book.rounds = [PASS, FAIL]
    outcome, _ = _conduct(book)
    assert [(d.action, d.reason) for d in outcome.evidence] == [(Action.ROLLBACK, Reason.HIGH_ERROR_RATE)]
    assert outcome.evidence[0].explanation == outcome.explanation


def test_the_pause_between_rounds_lands_one_round_exactly_at_the_end_of_the_wait(monkeypatch):
    book = _runbook(monkeypatch, step_wait_seconds=45)
    _recording(monkeypatch, book)
    book.rounds = [INCONCLUSIVE, INCONCLUSIVE, PASS] * 3
    outcome, _ = _conduct(book)
    assert outcome.ending is Ending.PROMOTED
    assert [r.elapsed for r in book.run.rounds[:3]] == [0, 30, 45]  # 30 s, then the 15 s left of the wait


def test_failed_smoke_checks_are_listed_one_after_the_other(book, seen):
    book.smoke_failures = ("HTTP 500", "timed out")
    outcome, _ = _conduct(book)
    assert outcome.explanation == "GET /api/health: HTTP 500; GET /api/health: timed out"


# -- how the runbook ends when the platform cannot be asked ------------------------------------------


@pytest.mark.parametrize("failure,said", [(OSError("connection refused"), "OSError: connection refused"),
                                          (TimeoutError(), "TimeoutError")])
def test_a_preflight_that_cannot_reach_the_platform_is_refused_as_a_platform_error(book, seen, failure, said):
    book.raises["preflight"] = failure
    outcome, summary = _conduct(book)
    assert (outcome.ending, outcome.reason, outcome.explanation) == (Ending.REFUSED, Reason.PLATFORM_ERROR, said)
    assert outcome.cause is failure
    state = release_flow.final_state(outcome, summary)
    assert state.name == "Refused" and state.data is failure
    assert is_deliberate(failure)  # a worker's engine logs no traceback for it
    assert book.names() == ["preflight", "schedule retry"]


def test_a_refusal_without_a_cause_ends_failed_with_a_preflight_error_naming_it():
    state = release_flow.final_state(Outcome.refused(None, "v2 already runs"), {})
    assert state.is_failed() and state.name == "Refused"
    assert isinstance(state.data, PreflightError) and str(state.data) == "v2 already runs"
    assert is_deliberate(state.data)


def test_a_rolled_back_run_is_named_apart_from_a_crash(book, seen):
    book.rounds = [FAIL]
    state = release_flow.final_state(*_conduct(book))
    assert state.is_failed() and state.name == "RolledBack"


def test_a_lost_lease_while_a_step_holds_rolls_back_even_if_the_canary_is_unwell(book, seen):
    """Another holder took the traffic lease: never split traffic again, whatever the canary says."""
    book.rounds = [INCONCLUSIVE, PASS, PASS, PASS]
    book.run.platform.renewal_refused = LeaseLost("held by run-2", operation="set_weight")
    book.run.platform.problem = "canary v2 is not ready"
    outcome, _ = _conduct(book)
    assert (outcome.ending, outcome.reason) == (Ending.ROLLED_BACK, Reason.PLATFORM_ERROR)
    assert outcome.explanation == "LeaseLost: set_weight: held by run-2"
    assert seen.args("analyse_canary") == [(0, 10, book.run.started)]  # no second round after the refusal


def test_a_rollback_the_platform_also_refuses_directly_says_why_and_what_happens_then(book, seen, caplog):
    book.rounds = [FAIL]
    book.raises["rollback"] = ArtifactApiDown("task run state could not be set: HTTP 503")

    def refuse() -> None:
        raise PlatformError("controller unreachable", operation="rollback")

    book.run.platform.rollback = refuse
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        outcome, summary = _conduct(book)
    assert outcome.rollback_error == "PlatformError: rollback: controller unreachable"
    assert summary["rollback_error"] == outcome.rollback_error
    record = summary["steps"][-1]
    assert (record["stage"], record["weight"], record["outcome"]) == ("rollback", 0, "rollback_failed")
    assert record["detail"] == outcome.rollback_error
    assert _messages(caplog, logging.ERROR)[0] == (
        "rollback failed (PlatformError: rollback: controller unreachable); users stay where they are (test platform)")
