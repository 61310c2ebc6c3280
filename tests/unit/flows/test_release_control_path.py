"""The runbook's control path (``flows.release``), every branch, in milliseconds.

``release(run, tasks)`` and ``finalise(run, outcome, tasks)`` are run as plain functions with the
runbook's table of tasks (``flows.release.PREFECT_TASKS``) replaced by recording fakes. Why that seam and not a
stub platform and metric source under the real tasks: the tasks need a Prefect run context (run
logger, artifacts, ``prefect.runtime``), which only a Prefect server provides, and each of them is
already tested against its client elsewhere. What these tests pin is the runbook itself: which
step follows which, what ends the release, what it rolls back for, whether it retries. So the
fakes record one shared journal, the analysis rounds are scripted, the real judge (``decide``)
turns them into decisions, and the module's clock is a fake one, so a hold costs no time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from prefect.states import State

import flows.release as release_flow
from canaryflow.control import OperatorCommand, Verb
from canaryflow.deliberate_endings import is_deliberate
from canaryflow.errors import PlatformError, PreflightError, RolloutStuck
from canaryflow.judge import Action, Measurement, Reason, Signal, Verdict
from canaryflow.outcome import Ending, Outcome
from canaryflow.pipeline_metrics import PipelineMetrics
from canaryflow.release import ReleaseRolledBack, ReleaseRun
from canaryflow.retries import plan_retry
from canaryflow.smoke import CheckResult, SmokeReport
from canaryflow.spec import SmokeCheck, validate_spec

#: One round per step when the canary is healthy: no wait, so the first all-PASS round decides.
SPEC = {"service": "checkout", "version": "v2", "steps": [10, 50, 100], "step_wait_seconds": 0,
        "analysis_interval_seconds": 30, "max_hold_seconds": 60, "max_consecutive_errors": 3}

PASS, FAIL, ERROR, INCONCLUSIVE = "pass", "fail", "error", "inconclusive"
NEEDS_BASELINE = "over the limit where no baseline served"
_VERDICTS = {PASS: Verdict.PASS, FAIL: Verdict.FAIL, ERROR: Verdict.ERROR, INCONCLUSIVE: Verdict.INCONCLUSIVE,
             NEEDS_BASELINE: Verdict.INCONCLUSIVE}


class Clock:
    """The flow module's ``time``: ``sleep`` moves the clock on instead of waiting."""

    def __init__(self) -> None:
        # A whole number of seconds: every move below is whole too, so sums and differences are exact
        # (from an arbitrary float, 30 s then 15 s could come back as 44.999999 s and hold one round more).
        self.now = float(int(time.monotonic()))

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Platform:
    """What the flow calls on the platform itself (the lease renewal while a step holds)."""

    after_failed_rollback = "users stay where they are (test platform)"

    def __init__(self, journal: list[tuple[Any, ...]]) -> None:
        self.journal = journal
        self.closed = False
        self.renewal_refused: PlatformError | None = None  # set_weight raises this
        self.problem: str | None = None  # what canary_problem answers

    def set_weight(self, weight: int, *, lease_seconds: float) -> None:
        self.journal.append(("renew lease", weight))
        if self.renewal_refused is not None:
            raise self.renewal_refused

    def canary_problem(self) -> str | None:
        self.journal.append(("canary problem",))
        return self.problem

    def close(self) -> None:
        self.closed = True


class Source:
    def close(self) -> None:
        pass


def _measurement(verdict: str) -> Measurement:
    return Measurement(metric="error_rate", verdict=_VERDICTS[verdict], value=0.0, threshold=0.01, unit="ratio",
                       requests=100, detail=f"error_rate {verdict}", reason=Reason.HIGH_ERROR_RATE,
                       needs_baseline=verdict == NEEDS_BASELINE)


@dataclass
class Runbook:
    """The fakes' script and journal. ``rounds`` holds one entry per analysis round, in order: a
    verdict, or a ``Signal`` (the canary stopped serving) beside passing metrics."""

    run: ReleaseRun
    clock: Clock
    journal: list[tuple[Any, ...]] = field(default_factory=list)
    rounds: list[str | Signal] = field(default_factory=list)
    smoke_failures: tuple[str, ...] = ()
    approval: tuple[bool, str] = (True, "approved by ops")
    raises: dict[str, BaseException] = field(default_factory=dict)
    commands: list[OperatorCommand | None] = field(default_factory=list)  # one per round; none left: None

    def names(self) -> list[str]:
        return [entry[0] for entry in self.journal]

    def entries(self, name: str) -> list[tuple[Any, ...]]:
        return [entry for entry in self.journal if entry[0] == name]

    def _record(self, name: str, *args: Any) -> None:
        self.journal.append((name, *args))
        if name in self.raises:
            raise self.raises[name]

    # -- the tasks, as flows.release imports them ------------------------------------------------

    def preflight(self, run: ReleaseRun) -> None:
        self._record("preflight")

    def deploy_canary(self, run: ReleaseRun) -> None:
        self._record("deploy")

    def wait_until_ready(self, run: ReleaseRun) -> None:
        self._record("wait until ready")

    def smoke_test(self, run: ReleaseRun) -> SmokeReport:
        self._record("smoke test")
        results = tuple(CheckResult(SmokeCheck(path="/api/health"), False, 500, 3.0, problem)
                        for problem in self.smoke_failures)
        return SmokeReport(results=results or (CheckResult(SmokeCheck(path="/api/health"), True, 200, 3.0, None),),
                           duration=0.1)

    def update_dashboard(self, run: ReleaseRun) -> None:
        self._record("update dashboard")

    def annotate_release(self, run: ReleaseRun, event: str, weight: int | None = None, reason: str | None = None,
                         explanation: str | None = None) -> None:
        self._record("annotate", event)

    def restore_dashboard(self, run: ReleaseRun) -> None:
        self._record("restore dashboard")

    def start_analysis(self, run: ReleaseRun) -> None:
        self._record("start analysis")

    def await_approval(self, run: ReleaseRun, weight: int) -> tuple[bool, str]:
        self._record("approval", weight)
        return self.approval

    def set_canary_weight(self, run: ReleaseRun, weight: int) -> None:
        self._record("weight", weight)

    def show_weight(self, run: ReleaseRun, weight: int) -> None:
        self._record("show", weight)

    def analyse_canary(self, run: ReleaseRun, step_index: int, weight: int, step_started: float):
        self._record("analyse", weight)
        script = self.rounds.pop(0)
        signal = script if isinstance(script, Signal) else None
        verdict = PASS if signal else script
        round_ = run.record_round(step_index, self.clock.now - step_started, (_measurement(verdict),))
        return round_, signal

    def read_operator_command(self) -> OperatorCommand | None:
        command = self.commands.pop(0) if self.commands else None
        if command is not None:
            self._record("operator", command.verb.value)
        return command

    def promote_canary(self, run: ReleaseRun) -> None:
        self._record("promote")

    def rollback_canary(self, run: ReleaseRun, reason: str) -> None:
        self._record("rollback", reason)

    def schedule_retry(self, run: ReleaseRun, reason: str) -> str | None:
        """The real retry decision (``plan_retry``), then the Prefect deployment call (which is what
        can fail: a version that is not retried asks nothing of the API)."""
        self.journal.append(("schedule retry", reason))
        plan = plan_retry(run.spec, reason=reason, attempt=run.attempt, origin="first-run")
        if plan is None:
            return None
        if "schedule retry" in self.raises:
            raise self.raises["schedule retry"]
        return f"attempt {plan.attempt}"

    def publish_report(self, run: ReleaseRun, summary: dict[str, Any]) -> None:
        self._record("report", summary["status"], summary["reason"])


TASKS = ("preflight", "deploy_canary", "wait_until_ready", "smoke_test", "update_dashboard", "annotate_release",
         "restore_dashboard", "start_analysis", "await_approval", "set_canary_weight", "show_weight",
         "analyse_canary", "read_operator_command", "promote_canary", "rollback_canary", "schedule_retry",
         "publish_report")


def _runbook(monkeypatch: pytest.MonkeyPatch, **spec: Any) -> Runbook:
    journal: list[tuple[Any, ...]] = []
    run = ReleaseRun(spec=validate_spec({**SPEC, **spec}), platform=Platform(journal), source=Source(),
                     metrics=PipelineMetrics(service="checkout", environment="staging"))
    book = Runbook(run=run, clock=Clock(), journal=journal)
    monkeypatch.setattr(release_flow, "PREFECT_TASKS", SimpleNamespace(**{name: getattr(book, name) for name in TASKS}))
    monkeypatch.setattr(release_flow, "time", book.clock)
    monkeypatch.setattr(release_flow, "get_run_logger", lambda: logging.getLogger("canary-release-test"))
    return book


@pytest.fixture
def book(monkeypatch: pytest.MonkeyPatch) -> Runbook:
    return _runbook(monkeypatch)


def _conduct(book: Runbook) -> tuple[Outcome, dict[str, Any]]:
    """What the flow does inside its lock: the runbook, then the one finaliser."""
    outcome = release_flow.release(book.run)
    return outcome, release_flow.finalise(book.run, outcome)


def _promoted(book: Runbook) -> dict[str, Any]:
    outcome, summary = _conduct(book)
    assert outcome.ending is Ending.PROMOTED, outcome
    return release_flow.final_state(outcome, summary)


def _rolled_back(book: Runbook) -> ReleaseRolledBack:
    outcome, summary = _conduct(book)
    assert outcome.ending is Ending.ROLLED_BACK, outcome
    state = release_flow.final_state(outcome, summary)
    assert state.is_failed() and state.message.startswith(f"rolled back ({outcome.reason.value})")
    assert is_deliberate(state.data)  # a worker's engine logs no traceback for a rollback
    rolled_back = state.data
    rolled_back.__cause__ = outcome.cause
    return rolled_back


def _assert_rolled_back_once(book: Runbook, reason: Reason) -> None:
    """One rollback, first of the aftermath, and nothing moves traffic or promotes after it."""
    assert book.entries("rollback") == [("rollback", reason.value)]
    after = book.names()[book.names().index("rollback"):]
    assert after == ["rollback", "annotate", "restore dashboard", "show", "schedule retry", "report"]
    assert "promote" not in book.names()
    assert book.entries("show")[-1] == ("show", 0)
    assert book.journal[-1] == ("report", "rolled_back", reason.value)


def _sample(book: Runbook, name: str, **labels: str) -> float | None:
    return book.run.metrics.registry.get_sample_value(name, {"environment": "staging", **labels})


def _weights(book: Runbook) -> list[int]:
    return [weight for _, weight in book.entries("weight")]


# -- promote ---------------------------------------------------------------------------------------


def test_a_healthy_canary_goes_through_every_step_then_is_promoted(book):
    book.rounds = [PASS, PASS, PASS]
    summary = _promoted(book)
    assert summary["status"] == "promoted" and summary["reason"] == Reason.ANALYSIS_PASSED.value
    step = ["weight", "show", "annotate", "analyse"]
    assert book.names() == ["preflight", "deploy", "wait until ready", "smoke test", "update dashboard", "annotate",
                            "start analysis", *step * 3, "promote", "show", "annotate", "report"]
    assert _weights(book) == [10, 50, 100]
    assert book.entries("annotate") == [("annotate", "started"), ("annotate", "step"), ("annotate", "step"),
                                        ("annotate", "step"), ("annotate", "promoted")]
    assert "rollback" not in book.names() and "schedule retry" not in book.names()
    assert book.journal[-1] == ("report", "promoted", "analysis_passed")


def test_a_step_that_holds_keeps_measuring_and_renews_the_lease_until_a_pass(book):
    book.rounds = [INCONCLUSIVE, INCONCLUSIVE, PASS, PASS, PASS]
    _promoted(book)
    first_step = book.names()[book.names().index("weight"):book.names().index("weight") + 10]
    assert first_step == ["weight", "show", "annotate", "analyse", "renew lease", "analyse", "renew lease",
                          "analyse", "weight", "show"]
    assert book.entries("renew lease") == [("renew lease", 10), ("renew lease", 10)]
    assert [r.elapsed for r in book.run.rounds[:3]] == [0, 30, 60]  # one round per analysis interval


def test_promotion_comes_only_after_every_step_passed(book):
    book.rounds = [PASS, INCONCLUSIVE, PASS, INCONCLUSIVE, INCONCLUSIVE, PASS]
    _promoted(book)
    names = book.names()
    assert names.index("promote") > max(i for i, name in enumerate(names) if name == "analyse")
    assert [r.measurements[0].verdict for r in book.run.rounds] == [Verdict.PASS, Verdict.INCONCLUSIVE,
                                                                    Verdict.PASS, Verdict.INCONCLUSIVE,
                                                                    Verdict.INCONCLUSIVE, Verdict.PASS]
    assert book.entries("analyse") == [("analyse", 10), ("analyse", 50), ("analyse", 50), ("analyse", 100),
                                       ("analyse", 100), ("analyse", 100)]


def test_a_breach_where_no_baseline_serves_steps_back_then_goes_up_again_without_a_second_approval(monkeypatch):
    book = _runbook(monkeypatch, approval={"environments": ["staging"]})
    book.rounds = [PASS, PASS, NEEDS_BASELINE, PASS, PASS]
    summary = _promoted(book)
    assert _weights(book) == [10, 50, 100, 50, 100]
    assert book.entries("approval") == [("approval", 50)]  # the person said yes to full traffic once
    assert [r.step_index for r in book.run.rounds] == [0, 1, 2, 1, 2]
    assert summary["status"] == "promoted" and "rollback" not in book.names()


def test_a_second_breach_where_no_baseline_serves_rolls_back_for_the_metric(book):
    book.rounds = [PASS, PASS, NEEDS_BASELINE, PASS, NEEDS_BASELINE]
    rolled_back = _rolled_back(book)
    assert rolled_back.reason == Reason.HIGH_ERROR_RATE.value and "no step back left" in rolled_back.explanation
    assert _weights(book) == [10, 50, 100, 50, 100]
    _assert_rolled_back_once(book, Reason.HIGH_ERROR_RATE)


# -- each rollback cause ----------------------------------------------------------------------------


def test_a_fail_rolls_back_at_once_and_the_bad_version_is_not_retried(book):
    book.rounds = [PASS, FAIL]
    rolled_back = _rolled_back(book)
    assert rolled_back.reason == Reason.HIGH_ERROR_RATE.value
    assert "error_rate fail at 50% canary" in rolled_back.explanation
    _assert_rolled_back_once(book, Reason.HIGH_ERROR_RATE)
    assert _weights(book) == [10, 50]
    assert rolled_back.summary["retry"] is None


def test_a_fail_after_a_hold_still_rolls_back(book):
    book.rounds = [INCONCLUSIVE, FAIL]
    assert _rolled_back(book).reason == Reason.HIGH_ERROR_RATE.value
    assert _weights(book) == [10]
    _assert_rolled_back_once(book, Reason.HIGH_ERROR_RATE)


def test_a_canary_that_stops_serving_rolls_back_even_with_passing_metrics(book):
    book.rounds = [PASS, Signal(Reason.ROLLOUT_STUCK, "canary process exited")]
    rolled_back = _rolled_back(book)
    assert rolled_back.reason == Reason.ROLLOUT_STUCK.value
    assert "canary process exited" in rolled_back.explanation
    _assert_rolled_back_once(book, Reason.ROLLOUT_STUCK)
    assert _weights(book) == [10, 50]


def test_a_canary_that_dies_between_a_round_and_the_lease_renewal_is_stuck_not_a_platform_error(book):
    """The platform refuses to renew the weight of a dead canary; that refusal is the canary's failure."""
    book.rounds = [INCONCLUSIVE, Signal(Reason.ROLLOUT_STUCK, "canary v2 exited with code 3")]
    book.run.platform.renewal_refused = PlatformError("HTTP 409: canary 'v2' is not ready", operation="set_weight")
    book.run.platform.problem = "canary v2 exited with code 3"
    rolled_back = _rolled_back(book)
    assert rolled_back.reason == Reason.ROLLOUT_STUCK.value
    _assert_rolled_back_once(book, Reason.ROLLOUT_STUCK)
    first_step = book.names()[book.names().index("analyse"):book.names().index("rollback")]
    assert first_step == ["analyse", "renew lease", "canary problem", "analyse"]  # no pause before the next round
    assert book.clock.now - book.run.started < 1


def test_a_lease_renewal_refused_with_a_healthy_canary_is_a_platform_error(book):
    book.rounds = [INCONCLUSIVE]
    book.run.platform.renewal_refused = PlatformError("HTTP 503", operation="set_weight")
    rolled_back = _rolled_back(book)
    assert rolled_back.reason == Reason.PLATFORM_ERROR.value
    assert "HTTP 503" in rolled_back.explanation


def test_a_rollout_that_never_gets_ready_rolls_back_before_any_test_or_traffic(book):
    book.raises["wait until ready"] = RolloutStuck("deadline of 300s passed with 0/1 ready")
    rolled_back = _rolled_back(book)
    assert rolled_back.reason == Reason.ROLLOUT_STUCK.value and "0/1 ready" in rolled_back.explanation
    _assert_rolled_back_once(book, Reason.ROLLOUT_STUCK)
    assert "smoke test" not in book.names() and _weights(book) == []


def test_a_failed_smoke_test_rolls_back_before_the_canary_gets_any_traffic(book):
    book.smoke_failures = ("HTTP 500", "timed out")
    rolled_back = _rolled_back(book)
    assert rolled_back.reason == Reason.SMOKE_TEST_FAILED.value
    assert "HTTP 500" in rolled_back.explanation and "timed out" in rolled_back.explanation
    _assert_rolled_back_once(book, Reason.SMOKE_TEST_FAILED)
    assert "start analysis" not in book.names() and _weights(book) == []


def test_metrics_unavailable_for_max_consecutive_errors_rounds_rolls_back_and_is_retried(book):
    book.rounds = [ERROR, ERROR, ERROR]
    rolled_back = _rolled_back(book)
    assert rolled_back.reason == Reason.METRICS_UNAVAILABLE.value
    _assert_rolled_back_once(book, Reason.METRICS_UNAVAILABLE)
    assert book.entries("analyse") == [("analyse", 10)] * 3
    assert rolled_back.summary["retry"] == "attempt 2"


def test_one_error_round_short_of_the_limit_holds_and_a_pass_goes_on(book):
    book.rounds = [ERROR, ERROR, PASS, PASS, PASS]
    assert _promoted(book)["status"] == "promoted"
    assert "rollback" not in book.names()


def test_no_pass_within_wait_plus_hold_rolls_back_for_insufficient_data_not_retried_by_default(book):
    book.rounds = [INCONCLUSIVE] * 3  # at 0 s, 30 s and 60 s = wait (0) + max_hold (60)
    rolled_back = _rolled_back(book)
    assert rolled_back.reason == Reason.INSUFFICIENT_DATA.value
    _assert_rolled_back_once(book, Reason.INSUFFICIENT_DATA)
    assert [r.elapsed for r in book.run.rounds] == [0, 30, 60]
    assert rolled_back.summary["retry"] is None


def test_a_platform_failure_mid_release_rolls_back_and_is_retried(book):
    failure = PlatformError("HTTP 503 from the controller", operation="set_weight", transient=True)
    book.rounds = [PASS]
    book.raises["weight"] = failure
    rolled_back = _rolled_back(book)
    assert rolled_back.reason == Reason.PLATFORM_ERROR.value
    assert rolled_back.explanation == "PlatformError: set_weight: HTTP 503 from the controller"
    assert rolled_back.__cause__ is failure
    _assert_rolled_back_once(book, Reason.PLATFORM_ERROR)
    assert rolled_back.summary["retry"] == "attempt 2"


def test_a_failing_deploy_rolls_back_too(book):
    book.raises["deploy"] = PlatformError("image pull failed", operation="deploy")
    assert _rolled_back(book).reason == Reason.PLATFORM_ERROR.value
    _assert_rolled_back_once(book, Reason.PLATFORM_ERROR)
    assert "wait until ready" not in book.names()


@pytest.mark.parametrize("signal", [KeyboardInterrupt(), SystemExit(143)])
def test_an_interruption_rolls_back_and_schedules_nothing(book, signal):
    book.rounds = [PASS]
    book.raises["analyse"] = signal
    outcome, summary = _conduct(book)
    assert outcome.ending is Ending.ROLLED_BACK and outcome.reason is Reason.INTERRUPTED
    assert outcome.cause is signal and outcome.interrupted
    assert book.entries("rollback") == [("rollback", "interrupted")]
    assert "schedule retry" not in book.names()  # a dying orchestrator schedules nothing
    assert book.journal[-1] == ("report", "rolled_back", "interrupted")
    assert "retry" not in summary
    with pytest.raises(type(signal)):  # reported; now the signal ends the run (Crashed)
        release_flow.final_state(outcome, summary)


def test_a_failed_rollback_still_reports_and_ends_the_release(book):
    book.rounds = [FAIL]
    book.raises["rollback"] = PlatformError("controller unreachable", operation="rollback", transient=True)
    rolled_back = _rolled_back(book)
    assert rolled_back.reason == Reason.HIGH_ERROR_RATE.value
    assert book.entries("rollback") == [("rollback", "high_error_rate")]  # the lease does the rest
    record = book.run.steps[-1]
    assert (record.stage, record.outcome) == ("rollback", "rollback_failed")
    assert "controller unreachable" in record.detail
    assert book.journal[-1] == ("report", "rolled_back", "high_error_rate")


def test_a_failed_preflight_changes_nothing_and_rolls_nothing_back(book):
    refusal = PreflightError("Prometheus is not ready", reason="metrics_unavailable")
    book.raises["preflight"] = refusal
    outcome, summary = _conduct(book)
    assert (outcome.ending, outcome.reason, outcome.cause) == (Ending.REFUSED, Reason.METRICS_UNAVAILABLE, refusal)
    assert book.names() == ["preflight", "schedule retry"]  # Prometheus may be back later; nothing to undo
    state = release_flow.final_state(outcome, summary)
    assert state.is_failed() and state.data is refusal and "Prometheus is not ready" in state.message
    assert state.name == "Refused"  # the UI tells a refusal from a rollback
    assert _sample(book, "deployment_total", status="failed") == 1
    assert _sample(book, "deployment_total", status="rolled_back") is None


# -- approval -------------------------------------------------------------------------------------


def test_approval_is_asked_once_before_the_last_step_with_the_weight_already_reached(monkeypatch):
    book = _runbook(monkeypatch, approval={"environments": ["staging"]})
    book.rounds = [PASS, PASS, PASS]
    assert _promoted(book)["status"] == "promoted"
    asked = book.names().index("approval")
    assert book.entries("approval") == [("approval", 50)]
    assert book.journal[asked - 1:asked + 2] == [("analyse", 50), ("approval", 50), ("weight", 100)]


def test_a_rejected_approval_rolls_back_before_full_traffic(monkeypatch):
    book = _runbook(monkeypatch, approval={"environments": ["staging"]})
    book.rounds = [PASS, PASS]
    book.approval = (False, "rejected by ops: wrong build")
    rolled_back = _rolled_back(book)
    assert rolled_back.reason == Reason.MANUAL.value and rolled_back.explanation == "rejected by ops: wrong build"
    _assert_rolled_back_once(book, Reason.MANUAL)
    assert _weights(book) == [10, 50]
    assert rolled_back.summary["retry"] is None


def test_no_approval_outside_the_listed_environments(book):
    book.rounds = [PASS, PASS, PASS]
    _promoted(book)
    assert "approval" not in book.names()


# -- the retry decision, per reason ---------------------------------------------------------------


@pytest.mark.parametrize("rounds,reason,retried", [
    ([FAIL], Reason.HIGH_ERROR_RATE, False),
    ([Signal(Reason.ROLLOUT_STUCK, "exited")], Reason.ROLLOUT_STUCK, False),
    ([ERROR, ERROR, ERROR], Reason.METRICS_UNAVAILABLE, True),
    ([INCONCLUSIVE] * 3, Reason.INSUFFICIENT_DATA, True),  # opted in below
])
def test_the_retry_follows_the_reason_and_the_spec(monkeypatch, rounds, reason, retried):
    book = _runbook(monkeypatch, retry={"on_reasons": ["metrics_unavailable", "insufficient_data"]})
    book.rounds = list(rounds)
    rolled_back = _rolled_back(book)
    assert book.entries("schedule retry") == [("schedule retry", reason.value)]
    assert (rolled_back.summary["retry"] == "attempt 2") is retried


def test_the_last_attempt_schedules_no_other(book):
    book.run.attempt = book.run.spec.retry.max_attempts
    book.rounds = [ERROR, ERROR, ERROR]
    assert _rolled_back(book).summary["retry"] is None


# -- the flow around the runbook ------------------------------------------------------------------


@contextmanager
def _no_lock(service: str, *, timeout: float) -> Iterator[None]:
    yield


def _flow(monkeypatch: pytest.MonkeyPatch, book: Runbook) -> Platform:
    monkeypatch.setattr(release_flow, "one_release_per_service", _no_lock)
    monkeypatch.setattr(release_flow, "open_release", lambda spec, settings, **kw: book.run)
    return book.run.platform


def test_a_rollback_ends_the_flow_failed_with_the_reason(monkeypatch, book):
    platform = _flow(monkeypatch, book)
    book.rounds = [FAIL]
    state = release_flow.canary_release.fn(book.run.spec)
    assert isinstance(state, State) and state.is_failed()
    assert "rolled back (high_error_rate)" in state.message
    assert platform.closed


def test_an_interrupted_release_rolls_back_then_lets_the_signal_end_the_flow(monkeypatch, book):
    platform = _flow(monkeypatch, book)
    book.rounds = [PASS]
    book.raises["analyse"] = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        release_flow.canary_release.fn(book.run.spec)
    assert book.entries("rollback") == [("rollback", "interrupted")] and platform.closed


@pytest.mark.parametrize("reason,scheduled", [("metrics_unavailable", True), (None, False)])
def test_a_refused_preflight_is_retried_only_for_a_passing_reason(monkeypatch, book, reason, scheduled):
    _flow(monkeypatch, book)
    book.raises["preflight"] = PreflightError("refused", reason=reason)
    state = release_flow.canary_release.fn(book.run.spec)
    assert state.is_failed() and isinstance(state.data, PreflightError)
    assert book.entries("schedule retry") == ([("schedule retry", reason)] if scheduled else [])
    assert "deploy" not in book.names()


# -- one exit: reporting failures after the outcome -------------------------------------------------


class ArtifactApiDown(Exception):
    """What the Prefect client raises when the artifact or deployment API answers 503."""


def _failing_pusher(journal: list[tuple[Any, ...]]):
    def push(url: str, **options: Any) -> None:
        journal.append(("push",))
        raise OSError("HTTP Error 503: Service Unavailable")

    return push


def _with_failing_push(book: Runbook) -> None:
    book.run.metrics.attach_pushgateway("http://127.0.0.1:9", seed=False)
    book.run.metrics.pusher = _failing_pusher(book.journal)


def _failed_operations(book: Runbook) -> dict[tuple[str, str], float]:
    return {(s.labels["system"], s.labels["operation"]): s.value
            for family in book.run.metrics.registry.collect() if family.name == "canaryflow_monitoring_operations"
            for s in family.samples if s.labels["result"] == "failed" and s.value}


@pytest.mark.parametrize("failing", ["report", "schedule retry", "push", "annotate", "restore dashboard", "show"])
@pytest.mark.parametrize("cause,reason,retried", [
    ("smoke", Reason.SMOKE_TEST_FAILED, False),
    ("metrics", Reason.METRICS_UNAVAILABLE, True),
])
def test_a_503_from_reporting_after_a_rollback_changes_nothing(book, failing, cause, reason, retried):
    """The issue's reproduction: a failed smoke test plus a 503 from the artifact call gave two
    rollbacks, two release_finished and a retry as platform_error. Now: one of each, the right reason."""
    if cause == "smoke":
        book.smoke_failures = ("HTTP 500",)
    else:
        book.rounds = [ERROR, ERROR, ERROR]
    if failing == "push":
        _with_failing_push(book)
    else:
        book.raises[failing] = ArtifactApiDown("HTTP 503 Service Unavailable")
    outcome, summary = _conduct(book)
    assert (outcome.ending, outcome.reason) == (Ending.ROLLED_BACK, reason)
    assert book.entries("rollback") == [("rollback", reason.value)]
    assert book.entries("schedule retry") == [("schedule retry", reason.value)]  # never as platform_error
    assert _sample(book, "deployment_total", status="rolled_back") == 1
    assert _sample(book, "deployment_rollback_total", reason=reason.value) == 1
    assert _sample(book, "deployment_rollback_total", reason="platform_error") == 0
    if failing == "schedule retry":
        assert summary["retry"] == ("not scheduled: the Prefect API refused the retry run" if retried else None)
    else:
        assert (summary["retry"] == "attempt 2") is retried
    operation = {"report": "publish_report", "schedule retry": "schedule_retry", "push": "push",
                 "annotate": "annotate", "restore dashboard": "restore_dashboard", "show": "show_weight"}[failing]
    if failing == "schedule retry" and not retried:
        assert _failed_operations(book) == {}  # no retry was due, so nothing was asked of the API
    else:
        assert list(_failed_operations(book)) == [(_system(operation), operation)]
    state = release_flow.final_state(outcome, summary)
    assert state.is_failed() and state.message.startswith(f"rolled back ({reason.value})")


def _system(operation: str) -> str:
    return {"push": "pushgateway", "annotate": "grafana", "restore_dashboard": "grafana"}.get(operation, "prefect")


@pytest.mark.parametrize("failing", ["report", "push", "annotate", "show"])
def test_a_reporting_failure_after_a_promotion_neither_rolls_back_nor_fails_the_run(book, failing):
    book.rounds = [PASS, PASS, PASS]
    if failing == "push":
        _with_failing_push(book)
    else:
        book.raises[failing] = ArtifactApiDown("HTTP 503")
    outcome, summary = _conduct(book)
    assert outcome.ending is Ending.PROMOTED
    assert [d.action for d in outcome.evidence] == [Action.ADVANCE, Action.ADVANCE, Action.PROMOTE]
    assert "rollback" not in book.names() and "schedule retry" not in book.names()
    assert _sample(book, "deployment_total", status="success") == 1
    assert _sample(book, "deployment_total", status="rolled_back") == 0
    assert release_flow.final_state(outcome, summary)["status"] == "promoted"


def test_a_failed_rollback_says_what_the_platform_does_then(book, caplog):
    book.rounds = [FAIL]
    book.raises["rollback"] = PlatformError("controller unreachable", operation="rollback", transient=True)
    with caplog.at_level(logging.ERROR, logger="canary-release-test"):
        outcome, summary = _conduct(book)
    assert outcome.rollback_error and "controller unreachable" in outcome.rollback_error
    assert summary["rollback_error"] == outcome.rollback_error
    assert "users stay where they are (test platform)" in caplog.text
    assert "traffic lease" not in caplog.text
    assert "the rollback itself failed" in release_flow.final_state(outcome, summary).message


def test_a_rollback_task_that_cannot_reach_the_prefect_api_asks_the_platform_directly(book):
    book.rounds = [FAIL]
    book.raises["rollback"] = ArtifactApiDown("task run state could not be set: HTTP 503")
    rolled = []
    book.run.platform.rollback = lambda: rolled.append("direct")
    outcome, _ = _conduct(book)
    assert outcome.rollback_error is None and rolled == ["direct"]
    assert book.run.steps[-1].outcome == "rolled_back"


def test_an_interruption_after_the_promotion_does_not_roll_back(monkeypatch, book):
    """Interrupted while reporting a promotion: the release settled; the crash hook must leave it."""
    book.rounds = [PASS, PASS, PASS]
    monkeypatch.setattr(release_flow, "_this_run", lambda: "run-1")
    monkeypatch.setattr(release_flow, "SETTLED", set())
    book.raises["report"] = KeyboardInterrupt()
    outcome = release_flow.release(book.run)
    with pytest.raises(KeyboardInterrupt):
        release_flow.finalise(book.run, outcome)
    assert outcome.ending is Ending.PROMOTED and "rollback" not in book.names()
    assert "run-1" in release_flow.SETTLED  # so _restore_stable returns without touching the platform

    class FlowRun:
        id = "run-1"
        parameters = {"spec": dict(SPEC)}

    release_flow._restore_stable(None, FlowRun(), None)  # would fail: no platform can be created here


# -- a person's command ------------------------------------------------------------------------------


def test_a_persons_promote_skips_the_remaining_steps_and_says_who_and_why(book):
    book.rounds = [PASS, INCONCLUSIVE]
    book.commands = [None, OperatorCommand(Verb.PROMOTE, "bob@ci", "hotfix")]
    summary = _promoted(book)
    assert _weights(book) == [10, 50]
    assert book.names()[-1] == "report" and "promote" in book.names()
    assert (summary["status"], summary["reason"]) == ("promoted", "manual")
    assert summary["explanation"].startswith("promoted by bob@ci: hotfix at 50% canary")


def test_a_persons_abort_rolls_back_manual_with_who_and_why(book):
    book.rounds = [PASS, INCONCLUSIVE]
    book.commands = [None, OperatorCommand(Verb.ABORT, "alice@laptop", "tickets")]
    rolled_back = _rolled_back(book)
    assert (rolled_back.reason, rolled_back.explanation) == ("manual", "aborted by alice@laptop: tickets at 50% canary")
    assert book.entries("rollback") == [("rollback", "manual")]
    assert "promote" not in book.names()


def test_a_pause_holds_the_weight_and_renews_the_lease_until_resume(book):
    pause = OperatorCommand(Verb.PAUSE, "carol@ops", "looking")
    book.rounds = [PASS, PASS, PASS, PASS, PASS]
    book.commands = [pause, pause, None]  # the third round reads resume (the task answers None)
    summary = _promoted(book)
    assert summary["status"] == "promoted"
    assert [w for _, w in book.entries("analyse")] == [10, 10, 10, 50, 100]
    assert book.entries("renew lease") == [("renew lease", 10), ("renew lease", 10)]
