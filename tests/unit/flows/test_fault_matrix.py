"""The fault matrix: every stage of a release × every fault, and the invariants in every case.

The runbook and the finaliser (``flows.release``) run as they do in a flow, over the control-path
test's recording tasks (see test_release_control_path.py for why that seam), with the platform
calls going to a platform that keeps a traffic lease like the local controller. Faults are
injected by wrapping (``canaryflow.faults.Faulty``) the platform, the Pushgateway pusher and the
reporting tasks; Prometheus faults arrive as the verdicts the metric source gives for them
(empty or NaN: no data; down or garbage: an error), which tests/unit/test_prometheus.py pins.
SIGTERM is Prefect's ``TerminationSignal`` raised at the stage; SIGKILL stops every later call of
the process (``Killed``), then the lease runs out. Real-process SIGTERM/SIGKILL: tests/e2e/test_crash_safety.py.

Invariants, every case: never promoted without the judge's passing evidence of every step; at
most one rollback and one ``release_finished``; traffic ends all on stable or all on the promoted
version; the retry decision follows the reason; the final state names the cause.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from prefect.exceptions import TerminationSignal

import flows.release as release_flow
from canaryflow.errors import PreflightError
from canaryflow.faults import Fault, Faulty, Killed, failure
from canaryflow.judge import Action, Verdict
from canaryflow.outcome import Ending
from canaryflow.retries import plan_retry
from canaryflow.smoke import CheckResult, SmokeReport
from canaryflow.spec import SmokeCheck
from tests.unit.flows.test_release_control_path import ERROR, INCONCLUSIVE, PASS, TASKS, Runbook, _runbook

STAGES = ("preflight", "deploy", "wait_ready", "smoke", "dashboard", "set_weight_10", "set_weight_50",
          "set_weight_100", "analysis", "approval", "promote", "rollback", "report", "retry", "push")
CALL_FAULTS = ("raise", "timeout", "garbage", "conflict", "5xx", "sigterm", "sigkill")
PROMETHEUS_FAULTS = ("prometheus_empty", "prometheus_nan", "prometheus_down")
CASES = [*itertools.product(STAGES, CALL_FAULTS), *itertools.product(("preflight", "analysis"), PROMETHEUS_FAULTS)]
PLATFORM_STAGES = {"deploy": "deploy", "wait_ready": "wait_ready", "set_weight_10": "set_weight",
                   "set_weight_50": "set_weight", "set_weight_100": "set_weight", "promote": "promote",
                   "rollback": "rollback"}
TASK_STAGES = {"preflight": "preflight", "smoke": "smoke test", "dashboard": "update dashboard",
               "analysis": "analyse", "approval": "approval", "report": "report", "retry": "schedule retry"}


class LeasePlatform:
    """Traffic as the local controller keeps it: a weight that reverts to 0 when its lease lapses."""

    after_failed_rollback = "the traffic lease returns users to stable when it expires"

    def __init__(self) -> None:
        self.weight, self.canary, self.promoted, self.dead = 0, False, False, False
        self.rollbacks = 0
        self.leased = False

    def _alive(self) -> bool:
        return not self.dead  # a killed orchestrator's calls never arrive

    def deploy(self, version: str) -> None:
        if self._alive():
            self.canary = True

    def wait_ready(self, *, timeout: float) -> None:
        pass

    def set_weight(self, weight: int, *, lease_seconds: float | None = None) -> None:
        if self._alive():
            self.weight, self.leased = weight, lease_seconds is not None

    def canary_problem(self) -> str | None:
        return None

    def promote(self) -> None:
        if self._alive():
            self.promoted, self.canary, self.weight = True, False, 0

    def rollback(self) -> None:
        if self._alive():
            self.rollbacks += 1
            self.weight, self.canary = 0, False

    def expire_lease(self) -> None:
        """Time passes with nobody renewing: the controller returns users to stable."""
        if self.leased:
            self.weight = 0

    def close(self) -> None:
        pass


class MatrixBook(Runbook):
    """The recording tasks, with the platform's operations sent to the (wrapped) platform."""

    def _record(self, name: str, *args: Any) -> None:
        self.journal.append((name, *args))
        fault = self.raises.get(name)
        if isinstance(fault, Killed):
            self.lease_platform.dead = True
        if fault is not None:
            raise fault

    def deploy_canary(self, run):
        self._record("deploy")
        run.platform.deploy(run.spec.version)

    def wait_until_ready(self, run):
        self._record("wait until ready")
        run.platform.wait_ready(timeout=run.spec.ready_timeout_seconds)

    def set_canary_weight(self, run, weight):
        self._record("weight", weight)
        run.platform.set_weight(weight, lease_seconds=run.lease_seconds)

    def promote_canary(self, run):
        self._record("promote")
        run.platform.promote()

    def rollback_canary(self, run, reason):
        self._record("rollback", reason)
        run.platform.rollback()

    def smoke_test(self, run):
        report = super().smoke_test(run)
        if self.garbage_smoke:  # an answer nobody can read is not a pass
            return SmokeReport(results=(CheckResult(SmokeCheck(path="/api/health"), False, 200, 3.0,
                                                    "unreadable answer"),), duration=0.1)
        return report


def _exception(fault: str, stage: str, platform: LeasePlatform) -> BaseException:
    if fault == "sigterm":
        return TerminationSignal(15)
    if fault == "sigkill":
        return Killed()
    if stage == "preflight" and fault == "garbage":
        return PreflightError("Prometheus answered a sample query with garbage", reason="metrics_unavailable")
    if fault == "garbage":  # what a client raises when it cannot parse the answer
        return ValueError("unparseable answer: <html>garbage")
    return failure(Fault(fault), stage)


def _build(monkeypatch: pytest.MonkeyPatch, stage: str, fault: str) -> tuple[MatrixBook, LeasePlatform]:
    spec: dict[str, Any] = {"approval": {"environments": ["staging"]}} if stage == "approval" else {}
    base = _runbook(monkeypatch, **spec)
    book = MatrixBook(run=base.run, clock=base.clock, journal=base.journal)
    book.garbage_smoke = stage == "smoke" and fault == "garbage"
    book.lease_platform = platform = LeasePlatform()
    # A rollback is needed to exercise the rollback and retry stages: metrics unavailable (retryable).
    book.rounds = [ERROR] * 3 if stage in ("rollback", "retry") else [PASS] * 3
    target: Any = platform
    if stage in PLATFORM_STAGES and not (stage == "smoke" and fault == "garbage"):
        method = PLATFORM_STAGES[stage]
        exc = _exception(fault, stage, platform)

        def kill(*args: Any, **kwargs: Any) -> None:
            platform.dead = True
            raise exc

        injected: Any = Fault.GARBAGE if fault == "garbage" else kill if fault == "sigkill" else exc
        weight = int(stage.rsplit("_", 1)[1]) if stage.startswith("set_weight") else None
        target = Faulty(platform, {method: injected}, garbage=None,
                        when=(lambda w, **k: w == weight) if weight is not None else (lambda *a, **k: True))
    elif stage in TASK_STAGES and fault.startswith("prometheus"):
        if stage == "preflight":
            book.raises["preflight"] = PreflightError(f"Prometheus: {fault}", reason="metrics_unavailable")
        else:  # the source's verdicts for these answers, every round
            verdict = INCONCLUSIVE if fault in ("prometheus_empty", "prometheus_nan") else ERROR
            book.rounds = [verdict] * 20
    elif stage in TASK_STAGES and not book.garbage_smoke:
        if stage == "analysis" and fault == "garbage":
            book.rounds = [ERROR] * 20  # a malformed answer is an error verdict, never a pass
        elif stage == "approval" and fault == "garbage":
            book.approval = (False, "unreadable approval answer")
        else:
            book.raises[TASK_STAGES[stage]] = _exception(fault, stage, platform)
    elif stage == "push":
        exc = _exception(fault, stage, platform) if fault != "garbage" else ValueError("garbage answer")

        def pusher(url: str, **options: Any) -> None:
            if isinstance(exc, Killed):
                platform.dead = True
            raise exc

        book.run.metrics.attach_pushgateway("http://127.0.0.1:9", seed=False)
        book.run.metrics.pusher = pusher
    book.run.platform = target
    monkeypatch.setattr(release_flow, "PREFECT_TASKS",
                        type(release_flow.PREFECT_TASKS)(**{n: getattr(book, n) for n in TASKS}))
    return book, platform


def _conduct(book: MatrixBook) -> tuple[Any, Any, str]:
    """(outcome, final state or None, how the process ended: done | crashed | killed)."""
    outcome = None
    try:
        outcome = release_flow.release(book.run)
        summary = release_flow.finalise(book.run, outcome)
        return outcome, release_flow.final_state(outcome, summary), "done"
    except Killed:
        return outcome, None, "killed"
    except TerminationSignal:
        return outcome, None, "crashed"


def _passing_evidence(outcome: Any, steps: int) -> bool:
    return (len(outcome.evidence) == steps
            and all(d.action in (Action.ADVANCE, Action.PROMOTE) for d in outcome.evidence)
            and all(m.verdict is Verdict.PASS for d in outcome.evidence for m in d.evidence))


RESULTS: dict[str, int] = {"cases": 0, "unverified promotions": 0, "double rollbacks": 0, "split": 0}


@pytest.mark.parametrize("stage,fault", CASES, ids=[f"{s}-{f}" for s, f in CASES])
def test_every_fault_at_every_stage_keeps_the_invariants(monkeypatch, stage, fault):
    book, platform = _build(monkeypatch, stage, fault)
    outcome, state, ending = _conduct(book)
    platform.expire_lease()
    RESULTS["cases"] += 1
    steps = len(book.run.spec.steps)

    if platform.promoted:  # never promoted without the judge's passing evidence
        RESULTS["unverified promotions"] += not (outcome is not None and _passing_evidence(outcome, steps))
        assert outcome is not None and _passing_evidence(outcome, steps), outcome
    RESULTS["double rollbacks"] += platform.rollbacks > 1
    assert platform.rollbacks <= 1 and len(book.entries("rollback")) <= 1
    finished = sum(book.run.metrics.registry.get_sample_value("deployment_total", {"environment": "staging",
                                                                                   "status": s}) or 0
                   for s in ("success", "rolled_back", "failed"))
    assert finished <= 1
    RESULTS["split"] += platform.weight not in (0,)
    assert platform.weight == 0  # all on stable, or all on the promoted version (its weight is 0 again)

    if outcome is None:  # killed or interrupted before anything changed
        assert ending in ("killed", "crashed") and not platform.promoted
        return
    if ending == "done":
        retried = [e[1] for e in book.entries("schedule retry")]
        assert retried == ([outcome.retry_reason] if outcome.retry_reason else [])
        if outcome.ending is not Ending.PROMOTED:
            assert outcome.reason is None or outcome.reason.value in state.message
            assert state.is_failed()
            if outcome.reason is not None and plan_retry(book.run.spec, reason=outcome.reason.value, attempt=1,
                                                         origin="x") is not None:
                assert outcome.reason.value in ("metrics_unavailable", "platform_error", "insufficient_data")
        else:
            assert state["status"] == "promoted"
    elif ending == "crashed":  # SIGTERM during the runbook (rolled back first) or while reporting
        assert fault == "sigterm"
        assert outcome.interrupted or book.entries("rollback") or outcome.ending is Ending.PROMOTED
        if outcome.interrupted:
            assert not book.entries("schedule retry")  # a dying orchestrator schedules nothing


def test_the_matrix_covers_every_stage_and_fault():
    assert {s for s, _ in CASES} == set(STAGES)
    assert {f for _, f in CASES} == set(CALL_FAULTS) | set(PROMETHEUS_FAULTS)
    assert len(CASES) == len(STAGES) * len(CALL_FAULTS) + 2 * len(PROMETHEUS_FAULTS)


def pytest_terminal_summary_line() -> str:
    return (f"{RESULTS['cases']} cases: {RESULTS['unverified promotions']} unverified promotions, "
            f"{RESULTS['double rollbacks']} double rollbacks, {RESULTS['split']} split")


def test_zz_matrix_result_is_printed(capsys):
    """Runs last in this module (name order within the file is definition order): prints the totals."""
    if RESULTS["cases"] == 0:
        pytest.skip("run with the matrix")
    with capsys.disabled():
        print(f"\nfault matrix: {pytest_terminal_summary_line()}")
    assert RESULTS["unverified promotions"] == RESULTS["double rollbacks"] == RESULTS["split"] == 0
