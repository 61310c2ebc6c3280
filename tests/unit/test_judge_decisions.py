"""Every rule of ``decide``, the whole decision: action, reason, rule, explanation and evidence.

``test_judge.py`` walks the precedence rule by rule; these pin what each decision *says*, because
the explanation and the evidence are what a person reads in the log, the summary and the rolled-back
event, and a decision that names the wrong round's numbers is a wrong decision.
"""

from __future__ import annotations

import pytest

from canaryflow.control import OperatorCommand, Verb
from canaryflow.judge import Action, Decision, Measurement, Policy, Reason, Round, Verdict, decide, step_backs

POLICY = Policy(steps=(10, 50, 100), step_wait_seconds=60, max_consecutive_errors=3, max_hold_seconds=30)


def m(metric: str, verdict: Verdict, tag: str = "", **extra) -> Measurement:
    reason = {"error_rate": Reason.HIGH_ERROR_RATE, "p95_latency": Reason.HIGH_LATENCY}[metric]
    return Measurement(metric, verdict, 0.0, 1.0, "x", 500, f"{metric} {verdict.value}{tag}",
                       reason=extra.pop("reason", reason), **extra)


def both(verdict: Verdict, tag: str = "") -> tuple[Measurement, ...]:
    return (m("error_rate", verdict, tag), m("p95_latency", verdict, tag))


PASS, INCONCLUSIVE = both(Verdict.PASS), both(Verdict.INCONCLUSIVE)
UNATTRIBUTED = m("error_rate", Verdict.INCONCLUSIVE, " where no baseline served", needs_baseline=True)


def exactly(d: Decision, action: Action, reason: Reason, rule: str, explanation: str,
            evidence: tuple[Measurement, ...]) -> None:
    assert (d.action, d.reason, d.rule) == (action, reason, rule)
    assert d.explanation == explanation
    assert d.evidence == evidence


def test_source_failing_names_the_latest_round_and_carries_its_measurements():
    last = both(Verdict.ERROR, " third")
    rounds = [Round(0, 10, PASS), Round(0, 20, both(Verdict.ERROR, " first")),
              Round(0, 30, both(Verdict.ERROR, " second")), Round(0, 40, last)]
    exactly(decide(POLICY, step_index=0, elapsed=40, rounds=rounds), Action.ROLLBACK, Reason.METRICS_UNAVAILABLE,
            "source_failing", "3 analysis rounds in a row without metrics: error_rate ERROR third; "
                              "p95_latency ERROR third", last)


def test_waiting_without_any_round_says_there_are_no_measurements():
    exactly(decide(POLICY, step_index=0, elapsed=5, rounds=[]), Action.HOLD, Reason.WAITING, "waiting",
            "5s of 60s at 10% canary: no measurements", ())


def test_waiting_carries_the_latest_round_of_the_step():
    rounds = [Round(0, 0, INCONCLUSIVE), Round(0, 30, PASS)]
    exactly(decide(POLICY, step_index=0, elapsed=30, rounds=rounds), Action.HOLD, Reason.WAITING, "waiting",
            "30s of 60s at 10% canary: error_rate PASS; p95_latency PASS", PASS)


def test_passed_advances_with_the_passing_round():
    exactly(decide(POLICY, step_index=1, elapsed=60, rounds=[Round(1, 60, PASS)]), Action.ADVANCE,
            Reason.ANALYSIS_PASSED, "passed", "analysis passed at 50% canary: error_rate PASS; p95_latency PASS",
            PASS)


def test_out_of_time_rolls_back_with_the_last_round():
    exactly(decide(POLICY, step_index=0, elapsed=90, rounds=[Round(0, 90, INCONCLUSIVE)]), Action.ROLLBACK,
            Reason.INSUFFICIENT_DATA, "out_of_time",
            "no passing analysis at 10% canary within 90s: error_rate INCONCLUSIVE; p95_latency INCONCLUSIVE",
            INCONCLUSIVE)


def test_awaiting_pass_holds_with_the_last_round():
    exactly(decide(POLICY, step_index=0, elapsed=70, rounds=[Round(0, 70, INCONCLUSIVE)]), Action.HOLD,
            Reason.AWAITING_PASS, "awaiting_pass",
            "waiting for a passing analysis at 10% canary: error_rate INCONCLUSIVE; p95_latency INCONCLUSIVE",
            INCONCLUSIVE)


@pytest.mark.parametrize(("verb", "action", "reason", "rule", "said"), [
    (Verb.PROMOTE, Action.PROMOTE, Reason.MANUAL, "operator_promote", "promoted by bob: hotfix"),
    (Verb.PAUSE, Action.HOLD, Reason.PAUSED, "paused", "paused by bob: hotfix"),
])
def test_a_persons_promote_or_pause_says_who_and_why_with_the_latest_round(verb, action, reason, rule, said):
    d = decide(POLICY, step_index=0, elapsed=10, rounds=[Round(0, 10, PASS)],
               operator=OperatorCommand(verb, "bob", "hotfix"))
    exactly(d, action, reason, rule, f"{said} at 10% canary: error_rate PASS; p95_latency PASS", PASS)


def test_a_step_back_from_the_middle_step_goes_to_the_first():
    rounds = [Round(0, 60, PASS), Round(1, 10, (UNATTRIBUTED, m("p95_latency", Verdict.PASS)))]
    exactly(decide(POLICY, step_index=1, elapsed=10, rounds=rounds), Action.STEP_BACK, Reason.NEEDS_BASELINE,
            "needs_baseline", "error_rate INCONCLUSIVE where no baseline served at 50% canary with no baseline "
                              "serving: stepping back to 10% to compare with the baseline (an incident on every "
                              "version looks the same)", (UNATTRIBUTED,))


def test_with_no_step_back_left_it_rolls_back_for_the_metric_and_says_why():
    rounds = [Round(1, 60, PASS), Round(2, 10, (UNATTRIBUTED,)), Round(1, 60, PASS), Round(2, 10, (UNATTRIBUTED,))]
    exactly(decide(POLICY, step_index=2, elapsed=10, rounds=rounds), Action.ROLLBACK, Reason.HIGH_ERROR_RATE,
            "needs_baseline", "error_rate INCONCLUSIVE where no baseline served at 100% canary (no step back left)",
            (UNATTRIBUTED,))


def test_with_no_earlier_step_it_rolls_back_and_a_metric_without_a_reason_counts_as_errors():
    single = Policy(steps=(100,), step_wait_seconds=60, max_consecutive_errors=3, max_hold_seconds=30)
    unnamed = m("error_rate", Verdict.INCONCLUSIVE, " alone", needs_baseline=True, reason=None)
    exactly(decide(single, step_index=0, elapsed=10, rounds=[Round(0, 10, (unnamed,))]), Action.ROLLBACK,
            Reason.HIGH_ERROR_RATE, "needs_baseline",
            "error_rate INCONCLUSIVE alone at 100% canary (no earlier step to compare at)", (unnamed,))


def test_step_backs_count_only_a_lower_step_index_never_a_repeated_one():
    assert step_backs([Round(1, 0, PASS), Round(1, 30, PASS), Round(2, 0, PASS)]) == 0
    assert step_backs([Round(2, 0, PASS), Round(2, 30, PASS), Round(1, 0, PASS)]) == 1


def test_step_backs_turned_off_at_the_middle_step_says_none_is_left():
    never = Policy(steps=(10, 50, 100), step_wait_seconds=60, max_consecutive_errors=3, max_hold_seconds=30,
                   max_step_backs=0)
    d = decide(never, step_index=1, elapsed=10, rounds=[Round(1, 10, (UNATTRIBUTED,))])
    assert (d.action, d.explanation) == (
        Action.ROLLBACK, "error_rate INCONCLUSIVE where no baseline served at 50% canary (no step back left)")
