"""The judge: one decision that moves a release, from the history of its measurements.

Each analysis round yields one ``Measurement`` per metric (see :mod:`canaryflow.assess`): PASS,
FAIL, INCONCLUSIVE (no data, too few requests, not yet enough evidence) or ERROR (source
unreachable or malformed), with the numbers behind it. ``decide`` looks at the whole history
and returns one ``Decision``: advance, hold, promote or roll back, with a reason and the numbers
that drove it. It is pure: same inputs, same decision.

``decide`` applies its rules in the order of ``PRECEDENCE``; the first rule that matches wins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from canaryflow.control import OperatorCommand, Verb


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    ERROR = "ERROR"


class Action(StrEnum):
    ADVANCE = "advance"
    HOLD = "hold"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    STEP_BACK = "step_back"  # to the previous weight, where a baseline serves beside the canary again


class Reason(StrEnum):
    # Reasons to roll back.
    HIGH_ERROR_RATE = "high_error_rate"
    HIGH_LATENCY = "high_latency"
    THRESHOLD_BREACHED = "threshold_breached"  # a plain threshold metric (a KPI) failed
    TRAFFIC_MISMATCH = "traffic_mismatch"  # the canary's share of requests is not the routed weight
    SMOKE_TEST_FAILED = "smoke_test_failed"
    ROLLOUT_STUCK = "rollout_stuck"
    METRICS_UNAVAILABLE = "metrics_unavailable"
    INSUFFICIENT_DATA = "insufficient_data"
    PLATFORM_ERROR = "platform_error"
    INTERRUPTED = "interrupted"  # the orchestrator was stopped (SIGTERM, Ctrl-C) mid-release
    MANUAL = "manual"  # a person: reject at the approval gate, ``canaryflow abort``, ``canaryflow promote``
    LEASE_EXPIRED = "lease_expired"  # canary-reconcile restored stable: the run died holding the traffic lease
    ALERT = "alert"
    # Reasons to go on.
    ANALYSIS_PASSED = "analysis_passed"
    WAITING = "waiting"
    AWAITING_PASS = "awaiting_pass"
    PAUSED = "paused"  # a person paused the release at its current weight
    NEEDS_BASELINE = "needs_baseline"  # over a limit where no baseline serves: step back to compare


@dataclass(frozen=True)
class QueryResult:
    """What a metric source answered for one query: a value, no data (``None``) or an error."""

    value: float | None = None
    error: str | None = None

    @property
    def has_data(self) -> bool:
        return self.error is None and self.value is not None and math.isfinite(self.value)


@dataclass(frozen=True)
class Measurement:
    """One metric's verdict in one round, with the figures that explain it.

    ``reason`` is what a FAIL of this metric rolls back for. ``state`` is the metric's running
    evidence after this round (cumulative counts, the e-process), which the next round folds its
    counts into: the history of measurements is all the judge needs.
    """

    metric: str
    verdict: Verdict
    value: float | None
    threshold: float | None
    unit: str
    requests: float | None
    detail: str
    reason: Reason | None = None
    baseline: float | None = None
    baseline_requests: float | None = None
    evidence: float | None = None  # e-value (or Bayes factor for the traffic split)
    evidence_threshold: float | None = None  # 1 / alpha
    # The guard rail's confidence sequence: the rate for a ratio metric, the share over the limit for latency.
    bounds: tuple[float, float] | None = None
    #: The canary is credibly over the limit in rounds where no baseline served (a 100 % step): an
    #: incident on every version would look the same, so the verdict waits for a comparison.
    needs_baseline: bool = False
    state: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Round:
    """One analysis tick: every measurement taken at ``elapsed`` seconds into step ``step_index``."""

    step_index: int
    elapsed: float
    measurements: tuple[Measurement, ...]

    def has(self, verdict: Verdict) -> bool:
        return any(m.verdict is verdict for m in self.measurements)

    @property
    def all_pass(self) -> bool:
        return bool(self.measurements) and all(m.verdict is Verdict.PASS for m in self.measurements)


@dataclass(frozen=True)
class Policy:
    """The parts of the release spec that the decision depends on."""

    steps: tuple[int, ...]
    step_wait_seconds: float
    max_consecutive_errors: int
    max_hold_seconds: float
    max_step_backs: int = 1


@dataclass(frozen=True)
class Signal:
    """A reason to roll back that no metric shows: the canary stopped serving, a person said no."""

    reason: Reason
    detail: str


#: The order in which ``decide`` applies its rules; the first that matches decides. Each entry is
#: (rule name, what it says); ``decide`` records the rule that decided in ``Decision.rule``.
PRECEDENCE: tuple[tuple[str, str], ...] = (
    ("operator_abort", "a person's abort rolls back: manual, with who and why (first: the person's reason is the "
                       "one to report, and traffic goes to stable whatever else holds)"),
    ("signal", "a signal from outside the metrics (the canary stopped serving, a person said no) rolls back"),
    ("traffic_mismatch", "a failed traffic-split check anywhere in the history rolls back: traffic_mismatch "
                         "(with the split broken no comparison means anything)"),
    ("metric_failed", "any other FAIL in the history rolls back, for the first failing metric in spec order "
                      "(its reason: high_error_rate, high_latency or threshold_breached)"),
    ("source_failing", "max_consecutive_errors rounds in a row with an ERROR roll back: metrics_unavailable"),
    ("needs_baseline", "the step's latest round has a limit breached where no baseline served (a 100 % step): step "
                       "back to the previous weight to compare with the baseline, at most max_step_backs times in a "
                       "release; with none left (or no previous step) roll back for that metric (after the rules "
                       "above: a measured FAIL or a failing source never waits for a comparison)"),
    ("operator_promote", "a person's promote skips the rest of the steps and promotes: manual, with who and why "
                         "(after every rollback rule: a person may skip waiting for evidence, never a measured FAIL)"),
    ("paused", "a person's pause holds at the current weight (paused) until resume, the measured rules above still "
               "roll back; the step's clock runs on, so a step past its hold limit decides at once on resume"),
    ("waiting", "before the step's wait is over: hold and keep measuring"),
    ("passed", "the step's latest round is all PASS: advance, or promote after the last step"),
    ("out_of_time", "past wait + max_hold without an all-PASS round: roll back (metrics_unavailable if that "
                    "round had an ERROR, else insufficient_data)"),
    ("awaiting_pass", "otherwise hold until an all-PASS round"),
)
RULES = tuple(name for name, _ in PRECEDENCE)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: Reason
    explanation: str
    evidence: tuple[Measurement, ...] = field(default_factory=tuple)
    rule: str = ""


def _trailing_error_rounds(rounds: Sequence[Round]) -> int:
    count = 0
    for r in reversed(rounds):
        if not r.has(Verdict.ERROR):
            break
        count += 1
    return count


def _summary(measurements: Sequence[Measurement]) -> str:
    return "; ".join(m.detail for m in measurements) or "no measurements"


def _first_failure(rounds: Sequence[Round], *, traffic: bool) -> Measurement | None:
    """The earliest FAIL (of the traffic check, or of any other metric): the order of the rounds,
    then the order of the metrics in the spec, which is the order of a round's measurements."""
    for r in rounds:
        for m in r.measurements:
            if m.verdict is Verdict.FAIL and (m.reason is Reason.TRAFFIC_MISMATCH) == traffic:
                return m
    return None


def step_backs(rounds: Sequence[Round]) -> int:
    """How often the release stepped back: the rounds' step index went down."""
    return sum(1 for a, b in zip(rounds, rounds[1:], strict=False) if b.step_index < a.step_index)


def decide(
    policy: Policy, *, step_index: int, elapsed: float, rounds: Sequence[Round], signal: Signal | None = None,
    operator: OperatorCommand | None = None,
) -> Decision:
    """Decide what the release does next. Pure: same inputs, same decision.

    ``rounds`` is the release's whole analysis history, oldest first; ``elapsed`` is the time spent
    in step ``step_index``; ``signal`` is an abort raised outside analysis (it wins over any metric:
    a dead canary's last good numbers must not advance it); ``operator`` is the latest command of a
    person (:mod:`canaryflow.control`), ``resume`` being the same as none.
    """
    weight = policy.steps[step_index]
    step_rounds = [r for r in rounds if r.step_index == step_index]
    at = f"at {weight}% canary"

    verb = operator.verb if operator is not None else None
    said = operator.describe() if operator is not None else ""
    if verb is Verb.ABORT:
        return Decision(Action.ROLLBACK, Reason.MANUAL, f"{said} {at}", rule="operator_abort")

    if signal is not None:
        return Decision(Action.ROLLBACK, signal.reason, f"{signal.detail} {at}", rule="signal")

    for rule, traffic in (("traffic_mismatch", True), ("metric_failed", False)):
        failed = _first_failure(rounds, traffic=traffic)
        if failed is not None:
            failing = tuple(m for r in rounds for m in r.measurements if m.verdict is Verdict.FAIL)
            return Decision(Action.ROLLBACK, failed.reason or Reason.HIGH_ERROR_RATE, f"{failed.detail} {at}",
                            failing, rule=rule)

    errors = _trailing_error_rounds(rounds)
    if errors >= policy.max_consecutive_errors:
        last = rounds[-1].measurements
        return Decision(Action.ROLLBACK, Reason.METRICS_UNAVAILABLE,
                        f"{errors} analysis rounds in a row without metrics: {_summary(last)}", last,
                        rule="source_failing")

    latest = step_rounds[-1] if step_rounds else None
    evidence = latest.measurements if latest else ()

    unattributed = [m for m in evidence if m.needs_baseline]
    if unattributed:
        first = unattributed[0]
        if step_index > 0 and step_backs(rounds) < policy.max_step_backs:
            back = policy.steps[step_index - 1]
            return Decision(Action.STEP_BACK, Reason.NEEDS_BASELINE,
                            f"{first.detail} {at} with no baseline serving: stepping back to {back}% to compare "
                            "with the baseline (an incident on every version looks the same)",
                            tuple(unattributed), rule="needs_baseline")
        why = "no step back left" if step_index > 0 else "no earlier step to compare at"
        return Decision(Action.ROLLBACK, first.reason or Reason.HIGH_ERROR_RATE, f"{first.detail} {at} ({why})",
                        tuple(unattributed), rule="needs_baseline")

    if verb is Verb.PROMOTE:
        return Decision(Action.PROMOTE, Reason.MANUAL, f"{said} {at}: {_summary(evidence)}", evidence,
                        rule="operator_promote")
    if verb is Verb.PAUSE:
        return Decision(Action.HOLD, Reason.PAUSED, f"{said} {at}: {_summary(evidence)}", evidence,
                        rule="paused")

    if elapsed < policy.step_wait_seconds:
        return Decision(Action.HOLD, Reason.WAITING, f"{elapsed:.0f}s of {policy.step_wait_seconds:.0f}s {at}: "
                        f"{_summary(evidence)}", evidence, rule="waiting")

    if latest is not None and latest.all_pass:
        last_step = step_index == len(policy.steps) - 1
        return Decision(Action.PROMOTE if last_step else Action.ADVANCE, Reason.ANALYSIS_PASSED,
                        f"analysis passed {at}: {_summary(evidence)}", evidence, rule="passed")

    limit = policy.step_wait_seconds + policy.max_hold_seconds
    if elapsed >= limit:
        reason = Reason.METRICS_UNAVAILABLE if latest and latest.has(Verdict.ERROR) else Reason.INSUFFICIENT_DATA
        return Decision(Action.ROLLBACK, reason,
                        f"no passing analysis {at} within {limit:.0f}s: {_summary(evidence)}", evidence,
                        rule="out_of_time")

    return Decision(Action.HOLD, Reason.AWAITING_PASS,
                    f"waiting for a passing analysis {at}: {_summary(evidence)}", evidence, rule="awaiting_pass")
