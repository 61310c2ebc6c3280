"""A person's command in ``decide``: every verb against every rule it outranks or yields to."""

from __future__ import annotations

import pytest

from canaryflow.control import OperatorCommand, Verb
from canaryflow.judge import RULES, Action, Reason, Round, Signal, Verdict, decide
from tests.unit.test_judge import ERROR, INCONCLUSIVE, PASS, POLICY, m

ABORT = OperatorCommand(Verb.ABORT, "alice@laptop", "support tickets piling up")
PROMOTE = OperatorCommand(Verb.PROMOTE, "bob@ci", "hotfix, metrics look fine")
PAUSE = OperatorCommand(Verb.PAUSE, "carol@ops", "checking the dashboards")
RESUME = OperatorCommand(Verb.RESUME, "carol@ops")
FAILING = (m("error_rate", Verdict.FAIL, 0.2), m("p95_latency", Verdict.PASS, 40))
MISMATCH = (m("traffic_split", Verdict.FAIL, 0.3),)
STUCK = Signal(Reason.ROLLOUT_STUCK, "the canary is gone")

#: Each history that some rule matches, at step 0 of 3, 5 s in (before the wait) unless it says so.
HISTORIES = {
    "signal": dict(rounds=[Round(0, 5, PASS)], signal=STUCK),
    "traffic_mismatch": dict(rounds=[Round(0, 5, MISMATCH)]),
    "metric_failed": dict(rounds=[Round(0, 5, FAILING)]),
    "source_failing": dict(rounds=[Round(0, t, ERROR) for t in (1, 2, 3)]),
    "waiting": dict(rounds=[Round(0, 5, PASS)]),
    "passed": dict(rounds=[Round(0, 61, PASS)], elapsed=61),
    "out_of_time": dict(rounds=[Round(0, 95, INCONCLUSIVE)], elapsed=95),
    "awaiting_pass": dict(rounds=[Round(0, 70, INCONCLUSIVE)], elapsed=70),
}


def _decide(history: str, operator: OperatorCommand | None, step_index: int = 0):
    case = dict(HISTORIES[history])
    return decide(POLICY, step_index=step_index, elapsed=case.pop("elapsed", 5), operator=operator, **case)


def test_without_a_command_each_history_meets_its_own_rule():
    assert {name: _decide(name, None).rule for name in HISTORIES} == {name: name for name in HISTORIES}


@pytest.mark.parametrize("history", HISTORIES)
def test_abort_wins_over_everything_and_says_who_and_why(history):
    d = _decide(history, ABORT)
    assert (d.action, d.reason, d.rule) == (Action.ROLLBACK, Reason.MANUAL, "operator_abort")
    assert d.explanation == "aborted by alice@laptop: support tickets piling up at 10% canary"


@pytest.mark.parametrize("history", HISTORIES)
def test_promote_skips_the_remaining_steps_unless_a_rollback_rule_holds(history):
    d = _decide(history, PROMOTE)
    if RULES.index(history) < RULES.index("operator_promote"):
        assert d.rule == history and d.action is Action.ROLLBACK  # measured harm outranks a person's haste
    else:
        assert (d.action, d.reason, d.rule) == (Action.PROMOTE, Reason.MANUAL, "operator_promote")
        assert d.explanation.startswith("promoted by bob@ci: hotfix, metrics look fine at 10% canary")


@pytest.mark.parametrize("history", HISTORIES)
def test_pause_holds_where_the_release_would_go_on_and_never_masks_a_rollback(history):
    d = _decide(history, PAUSE)
    if RULES.index(history) < RULES.index("paused"):
        assert d.rule == history and d.action is Action.ROLLBACK
    else:
        assert (d.action, d.reason, d.rule) == (Action.HOLD, Reason.PAUSED, "paused")
        assert d.explanation.startswith("paused by carol@ops: checking the dashboards at 10% canary")


@pytest.mark.parametrize("history", HISTORIES)
def test_resume_is_the_same_as_no_command(history):
    assert _decide(history, RESUME) == _decide(history, None)


def test_promote_at_a_middle_step_promotes_not_advances():
    d = decide(POLICY, step_index=1, elapsed=5, rounds=[Round(1, 5, PASS)], operator=PROMOTE)
    assert (d.action, d.explanation.split(":")[0]) == (Action.PROMOTE, "promoted by bob@ci")
    assert "at 50% canary" in d.explanation


def test_a_command_without_a_reason_reads_cleanly():
    d = decide(POLICY, step_index=0, elapsed=5, rounds=[], operator=OperatorCommand(Verb.ABORT, "dave@host"))
    assert d.explanation == "aborted by dave@host at 10% canary"


@pytest.mark.parametrize("value", [None, "abort", {"verb": "explode", "by": "x"}, {"by": "x"}, 3])
def test_a_variable_that_is_not_a_command_is_ignored(value):
    assert OperatorCommand.from_value(value) is None


def test_a_command_survives_its_round_trip_through_a_variable_value():
    assert OperatorCommand.from_value(PAUSE.as_value()) == PAUSE
