"""Every verdict and every rule of ``decide``, in the order of its precedence."""

from __future__ import annotations

import pytest

from canaryflow.control import OperatorCommand, Verb
from canaryflow.judge import (
    PRECEDENCE,
    RULES,
    Action,
    Measurement,
    Policy,
    Reason,
    Round,
    Signal,
    Verdict,
    decide,
    step_backs,
)

POLICY = Policy(steps=(10, 50, 100), step_wait_seconds=60, max_consecutive_errors=3, max_hold_seconds=30)
REASON = {"error_rate": Reason.HIGH_ERROR_RATE, "p95_latency": Reason.HIGH_LATENCY,
          "orders": Reason.THRESHOLD_BREACHED, "traffic_split": Reason.TRAFFIC_MISMATCH}


def m(metric: str, verdict: Verdict, value: float | None = None) -> Measurement:
    return Measurement(metric, verdict, value, 1.0, "x", 500, f"{metric} {verdict}", reason=REASON.get(metric))


PASS = (m("error_rate", Verdict.PASS, 0.0), m("p95_latency", Verdict.PASS, 40))
ERROR = (m("error_rate", Verdict.ERROR), m("p95_latency", Verdict.ERROR))
INCONCLUSIVE = (m("error_rate", Verdict.INCONCLUSIVE), m("p95_latency", Verdict.INCONCLUSIVE))


# -- decide, rule by rule ------------------------------------------------------------------------

def test_precedence_is_written_down_in_the_order_decide_applies_it():
    assert RULES == ("operator_abort", "signal", "traffic_mismatch", "metric_failed", "source_failing",
                     "needs_baseline", "operator_promote", "paused", "waiting", "passed", "out_of_time",
                     "awaiting_pass")
    assert all(len(text) > 20 for _, text in PRECEDENCE)



@pytest.mark.parametrize("reason", [Reason.ROLLOUT_STUCK, Reason.MANUAL, Reason.ALERT])
def test_rule1_signal_beats_a_passing_analysis(reason):
    signal = Signal(reason, "canary v2 exited with code 3")
    d = decide(POLICY, step_index=0, elapsed=100, rounds=[Round(0, 100, PASS)], signal=signal)
    assert (d.action, d.reason) == (Action.ROLLBACK, reason)
    assert d.explanation == "canary v2 exited with code 3 at 10% canary"


def test_rule1_signal_beats_a_fail_too():
    failing = (m("error_rate", Verdict.FAIL, 0.5), m("p95_latency", Verdict.PASS, 40))
    d = decide(POLICY, step_index=1, elapsed=1, rounds=[Round(1, 1, failing)],
               signal=Signal(Reason.MANUAL, "rejected by lead: error budget spent"))
    assert (d.action, d.reason) == (Action.ROLLBACK, Reason.MANUAL)


def test_rule2_any_fail_rolls_back_even_before_the_wait_ends():
    rounds = [Round(0, 5, (m("error_rate", Verdict.FAIL, 0.05), m("p95_latency", Verdict.PASS)))]
    d = decide(POLICY, step_index=0, elapsed=5, rounds=rounds)
    assert (d.action, d.reason) == (Action.ROLLBACK, Reason.HIGH_ERROR_RATE)
    assert d.evidence[0].value == 0.05


def test_rule3_the_first_failing_metric_in_spec_order_names_the_rollback():
    rounds = [Round(0, 5, (m("p95_latency", Verdict.FAIL, 900), m("error_rate", Verdict.FAIL, 0.2)))]
    d = decide(POLICY, step_index=0, elapsed=5, rounds=rounds)
    assert (d.reason, d.rule) == (Reason.HIGH_LATENCY, "metric_failed")
    assert [e.metric for e in d.evidence] == ["p95_latency", "error_rate"]


def test_rule3_an_earlier_round_fails_first_whatever_the_metric_order():
    rounds = [Round(0, 5, (m("error_rate", Verdict.PASS), m("p95_latency", Verdict.FAIL, 900))),
              Round(0, 6, (m("error_rate", Verdict.FAIL, 0.2), m("p95_latency", Verdict.FAIL, 900)))]
    assert decide(POLICY, step_index=0, elapsed=6, rounds=rounds).reason is Reason.HIGH_LATENCY


def test_rule3_a_third_metric_failing_rolls_back_with_its_own_reason():
    rounds = [Round(0, 5, (*PASS, m("orders", Verdict.FAIL, 3.0)))]
    d = decide(POLICY, step_index=0, elapsed=5, rounds=rounds)
    assert (d.action, d.reason) == (Action.ROLLBACK, Reason.THRESHOLD_BREACHED)
    assert d.explanation == "orders FAIL at 10% canary"


def test_rule2_traffic_mismatch_beats_a_metric_failure_in_the_same_round():
    rounds = [Round(0, 5, (m("error_rate", Verdict.FAIL, 0.2), m("traffic_split", Verdict.FAIL, 0.02)))]
    d = decide(POLICY, step_index=0, elapsed=5, rounds=rounds)
    assert (d.reason, d.rule) == (Reason.TRAFFIC_MISMATCH, "traffic_mismatch")


def test_rule2_a_later_traffic_mismatch_still_beats_an_earlier_metric_failure():
    rounds = [Round(0, 5, (m("error_rate", Verdict.FAIL, 0.2),)), Round(0, 6, (m("traffic_split", Verdict.FAIL),))]
    assert decide(POLICY, step_index=0, elapsed=6, rounds=rounds).reason is Reason.TRAFFIC_MISMATCH


def test_rule2_latency_fail():
    rounds = [Round(0, 5, (m("error_rate", Verdict.PASS), m("p95_latency", Verdict.FAIL, 900)))]
    assert decide(POLICY, step_index=0, elapsed=5, rounds=rounds).reason is Reason.HIGH_LATENCY


def test_rule2_a_fail_earlier_in_history_is_not_forgotten():
    rounds = [Round(0, 5, (m("error_rate", Verdict.FAIL, 0.2),)), Round(0, 70, PASS)]
    assert decide(POLICY, step_index=0, elapsed=70, rounds=rounds).action is Action.ROLLBACK


def test_rule2_fail_beats_metrics_unavailable():
    rounds = [Round(0, 1, ERROR), Round(0, 2, ERROR), Round(0, 3, (m("error_rate", Verdict.FAIL, 0.3),
                                                                   m("p95_latency", Verdict.ERROR)))]
    assert decide(POLICY, step_index=0, elapsed=3, rounds=rounds).reason is Reason.HIGH_ERROR_RATE


def test_rule3_consecutive_errors_roll_back_before_the_wait_ends():
    rounds = [Round(0, t, ERROR) for t in (1, 2, 3)]
    d = decide(POLICY, step_index=0, elapsed=3, rounds=rounds)
    assert (d.action, d.reason) == (Action.ROLLBACK, Reason.METRICS_UNAVAILABLE)


def test_rule4_one_error_round_short_of_the_limit_holds():
    rounds = [Round(0, t, ERROR) for t in (1, 2)]
    d = decide(POLICY, step_index=0, elapsed=2, rounds=rounds)
    assert (d.action, d.rule) == (Action.HOLD, "waiting")


def test_rule3_errors_must_be_consecutive():
    rounds = [Round(0, 1, ERROR), Round(0, 2, ERROR), Round(0, 3, INCONCLUSIVE), Round(0, 4, ERROR)]
    assert decide(POLICY, step_index=0, elapsed=4, rounds=rounds).action is Action.HOLD


def test_rule3_counts_across_steps():
    rounds = [Round(0, 60, PASS), Round(0, 61, ERROR), Round(1, 0, ERROR), Round(1, 1, ERROR)]
    assert decide(POLICY, step_index=1, elapsed=1, rounds=rounds).reason is Reason.METRICS_UNAVAILABLE


# -- needs_baseline: a limit breached where no baseline served -----------------------------------

UNATTRIBUTED = (Measurement("error_rate", Verdict.INCONCLUSIVE, 0.04, 0.001, "ratio", 300,
                            "error_rate: canary 4.00 % where no baseline served", reason=Reason.HIGH_ERROR_RATE,
                            needs_baseline=True), m("p95_latency", Verdict.PASS, 40))


def test_needs_baseline_steps_back_to_the_previous_weight_during_the_wait():
    rounds = [Round(0, 60, PASS), Round(1, 60, PASS), Round(2, 10, UNATTRIBUTED)]
    d = decide(POLICY, step_index=2, elapsed=10, rounds=rounds)
    assert (d.action, d.reason, d.rule) == (Action.STEP_BACK, Reason.NEEDS_BASELINE, "needs_baseline")
    assert "stepping back to 50%" in d.explanation and "canary 4.00 %" in d.explanation
    assert [e.metric for e in d.evidence] == ["error_rate"]


def test_needs_baseline_only_once_then_rolls_back_for_the_metric():
    rounds = [Round(0, 60, PASS), Round(1, 60, PASS), Round(2, 10, UNATTRIBUTED), Round(1, 0, PASS),
              Round(1, 60, PASS), Round(2, 20, UNATTRIBUTED)]
    d = decide(POLICY, step_index=2, elapsed=20, rounds=rounds)
    assert (d.action, d.reason, d.rule) == (Action.ROLLBACK, Reason.HIGH_ERROR_RATE, "needs_baseline")
    assert "no step back left" in d.explanation


def test_needs_baseline_with_step_backs_off_rolls_back_at_once():
    policy = Policy(steps=(10, 50, 100), step_wait_seconds=60, max_consecutive_errors=3, max_hold_seconds=30,
                    max_step_backs=0)
    d = decide(policy, step_index=2, elapsed=10, rounds=[Round(1, 60, PASS), Round(2, 10, UNATTRIBUTED)])
    assert (d.action, d.reason) == (Action.ROLLBACK, Reason.HIGH_ERROR_RATE)


def test_needs_baseline_at_the_first_step_has_nowhere_to_step_back():
    policy = Policy(steps=(100,), step_wait_seconds=60, max_consecutive_errors=3, max_hold_seconds=30)
    d = decide(policy, step_index=0, elapsed=10, rounds=[Round(0, 10, UNATTRIBUTED)])
    assert (d.action, d.reason) == (Action.ROLLBACK, Reason.HIGH_ERROR_RATE)
    assert "no earlier step" in d.explanation


def test_needs_baseline_in_an_earlier_round_of_the_step_does_not_decide():
    rounds = [Round(1, 60, PASS), Round(2, 10, UNATTRIBUTED), Round(2, 20, PASS)]
    assert decide(POLICY, step_index=2, elapsed=20, rounds=rounds).action is Action.HOLD


def test_a_fail_beats_needs_baseline_and_needs_baseline_beats_a_persons_promote():
    failing = (m("error_rate", Verdict.FAIL, 0.2), *UNATTRIBUTED[1:])
    rounds = [Round(1, 60, failing), Round(2, 10, UNATTRIBUTED)]
    assert decide(POLICY, step_index=2, elapsed=10, rounds=rounds).rule == "metric_failed"
    promote = OperatorCommand(Verb.PROMOTE, "lead", "ship it")
    d = decide(POLICY, step_index=2, elapsed=10, rounds=[Round(1, 60, PASS), Round(2, 10, UNATTRIBUTED)],
               operator=promote)
    assert d.action is Action.STEP_BACK


def test_step_backs_count_the_times_the_step_index_went_down():
    assert step_backs([Round(0, 0, PASS), Round(1, 0, PASS), Round(2, 0, PASS)]) == 0
    assert step_backs([Round(2, 0, PASS), Round(1, 0, PASS), Round(2, 0, PASS), Round(1, 0, PASS)]) == 2


def test_rule4_hold_during_the_wait_even_when_passing():
    d = decide(POLICY, step_index=0, elapsed=59, rounds=[Round(0, 59, PASS)])
    assert (d.action, d.reason) == (Action.HOLD, Reason.WAITING)


def test_rule5_advance_after_a_pass_at_the_end_of_the_wait():
    d = decide(POLICY, step_index=0, elapsed=60, rounds=[Round(0, 60, PASS)])
    assert (d.action, d.reason) == (Action.ADVANCE, Reason.ANALYSIS_PASSED)


def test_rule5_promote_after_the_last_step():
    d = decide(POLICY, step_index=2, elapsed=60, rounds=[Round(2, 60, PASS)])
    assert d.action is Action.PROMOTE


def test_rule5_a_pass_from_the_previous_step_does_not_count():
    rounds = [Round(0, 60, PASS)]
    d = decide(POLICY, step_index=1, elapsed=60, rounds=rounds)
    assert d.action is Action.HOLD and d.reason is Reason.AWAITING_PASS


def test_rule5_only_the_latest_round_counts():
    rounds = [Round(0, 50, PASS), Round(0, 60, INCONCLUSIVE)]
    assert decide(POLICY, step_index=0, elapsed=60, rounds=rounds).action is Action.HOLD


def test_rule5_a_partial_pass_is_not_a_pass():
    rounds = [Round(0, 60, (m("error_rate", Verdict.PASS), m("p95_latency", Verdict.INCONCLUSIVE)))]
    assert decide(POLICY, step_index=0, elapsed=60, rounds=rounds).action is Action.HOLD


def test_rule5_an_empty_round_is_not_a_pass():
    assert decide(POLICY, step_index=0, elapsed=60, rounds=[Round(0, 60, ())]).action is Action.HOLD


def test_rule6_no_pass_within_the_hold_limit_is_insufficient_data():
    d = decide(POLICY, step_index=0, elapsed=90, rounds=[Round(0, 90, INCONCLUSIVE)])
    assert (d.action, d.reason) == (Action.ROLLBACK, Reason.INSUFFICIENT_DATA)


def test_rule6_with_a_recent_error_is_metrics_unavailable():
    rounds = [Round(0, 89, INCONCLUSIVE), Round(0, 90, ERROR)]
    d = decide(POLICY, step_index=0, elapsed=90, rounds=rounds)
    assert (d.action, d.reason) == (Action.ROLLBACK, Reason.METRICS_UNAVAILABLE)


def test_rule5_a_pass_exactly_at_wait_plus_hold_still_advances():
    d = decide(POLICY, step_index=0, elapsed=90, rounds=[Round(0, 90, PASS)])
    assert (d.action, d.rule) == (Action.ADVANCE, "passed")


def test_rule6_one_second_before_the_hold_limit_still_holds():
    d = decide(POLICY, step_index=0, elapsed=89.9, rounds=[Round(0, 89.9, INCONCLUSIVE)])
    assert (d.action, d.rule) == (Action.HOLD, "awaiting_pass")


def test_rule6_with_no_round_at_all():
    assert decide(POLICY, step_index=0, elapsed=90, rounds=[]).reason is Reason.INSUFFICIENT_DATA


def test_rule7_hold_after_the_wait_until_a_pass():
    d = decide(POLICY, step_index=0, elapsed=75, rounds=[Round(0, 75, INCONCLUSIVE)])
    assert (d.action, d.reason) == (Action.HOLD, Reason.AWAITING_PASS)


def test_zero_wait_still_needs_a_pass():
    policy = Policy(steps=(100,), step_wait_seconds=0, max_consecutive_errors=3, max_hold_seconds=10)
    assert decide(policy, step_index=0, elapsed=0, rounds=[Round(0, 0, INCONCLUSIVE)]).action is Action.HOLD
    assert decide(policy, step_index=0, elapsed=0, rounds=[Round(0, 0, PASS)]).action is Action.PROMOTE


def test_explanations_carry_the_numbers():
    rounds = [Round(0, 5, (Measurement("error_rate", Verdict.FAIL, 0.052, 0.01, "ratio", 412,
                                       "error_rate 5.20% > 1.00% over 412 requests",
                                       reason=Reason.HIGH_ERROR_RATE),))]
    d = decide(POLICY, step_index=0, elapsed=5, rounds=rounds)
    assert "5.20% > 1.00% over 412 requests at 10% canary" in d.explanation
