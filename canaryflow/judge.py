"""The judge: verdicts for single measurements and the one decision that moves a release.

Two layers, both pure:

* ``judge_error_rate`` / ``judge_latency`` turn raw query results into a ``Measurement`` with a
  verdict PASS, FAIL, INCONCLUSIVE (no data, too few requests) or ERROR (source unreachable or
  malformed). NaN, +/-Inf and an empty vector are *no data* — never a pass.
* ``decide`` looks at the whole measurement history of a release and returns one ``Decision``:
  advance, hold, promote or roll back, with a reason and the numbers that drove it.

``decide`` applies its rules in the order of ``PRECEDENCE``; the first rule that matches wins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum


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


class Reason(StrEnum):
    # Reasons to roll back.
    HIGH_ERROR_RATE = "high_error_rate"
    HIGH_LATENCY = "high_latency"
    SMOKE_TEST_FAILED = "smoke_test_failed"
    ROLLOUT_STUCK = "rollout_stuck"
    METRICS_UNAVAILABLE = "metrics_unavailable"
    INSUFFICIENT_DATA = "insufficient_data"
    PLATFORM_ERROR = "platform_error"
    INTERRUPTED = "interrupted"  # the orchestrator was stopped (SIGTERM, Ctrl-C) mid-release
    MANUAL = "manual"
    ALERT = "alert"
    # Reasons to go on.
    ANALYSIS_PASSED = "analysis_passed"
    WAITING = "waiting"
    AWAITING_PASS = "awaiting_pass"


#: Which failing metric names the rollback when several fail in one round.
FAIL_REASON_BY_METRIC: dict[str, Reason] = {
    "error_rate": Reason.HIGH_ERROR_RATE,
    "p95_latency": Reason.HIGH_LATENCY,
}


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
    metric: str
    verdict: Verdict
    value: float | None
    threshold: float
    unit: str
    requests: float | None
    detail: str


def _fmt(metric: str, value: float) -> str:
    return f"{value * 100:.2f}%" if metric == "error_rate" else f"{value:.0f} ms"


def _judge(
    metric: str, result: QueryResult, requests: QueryResult, *, threshold: float, min_requests: int,
    unit: str, scale: float,
) -> Measurement:
    limit = _fmt(metric, threshold)
    if result.error or requests.error:
        why = result.error or requests.error
        return Measurement(metric, Verdict.ERROR, None, threshold, unit, None, f"metric source failed: {why}")
    count = requests.value if requests.has_data else None
    if count is None or count < min_requests:
        seen = 0 if count is None else round(count)
        return Measurement(
            metric, Verdict.INCONCLUSIVE, None, threshold, unit, count,
            f"too few canary requests: {seen} < {min_requests}",
        )
    if not result.has_data:
        raw = "empty result" if result.value is None else str(result.value)
        return Measurement(metric, Verdict.INCONCLUSIVE, None, threshold, unit, count, f"no data ({raw})")
    value = result.value * scale  # type: ignore[operator]
    verdict = Verdict.FAIL if value > threshold else Verdict.PASS
    sign = ">" if verdict is Verdict.FAIL else "<="
    return Measurement(
        metric, verdict, value, threshold, unit, count,
        f"{metric} {_fmt(metric, value)} {sign} {limit} over {count:.0f} requests",
    )


def judge_error_rate(
    result: QueryResult, requests: QueryResult, *, max_error_rate: float, min_requests: int
) -> Measurement:
    return _judge("error_rate", result, requests, threshold=max_error_rate, min_requests=min_requests,
                  unit="ratio", scale=1.0)


def judge_latency(
    result_seconds: QueryResult, requests: QueryResult, *, max_p95_ms: float, min_requests: int
) -> Measurement:
    return _judge("p95_latency", result_seconds, requests, threshold=max_p95_ms, min_requests=min_requests,
                  unit="ms", scale=1000.0)


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


@dataclass(frozen=True)
class Signal:
    """A reason to roll back that no metric shows: the canary stopped serving, a person said no."""

    reason: Reason
    detail: str


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: Reason
    explanation: str
    evidence: tuple[Measurement, ...] = field(default_factory=tuple)


#: The order in which ``decide`` applies its rules; the first that matches decides.
PRECEDENCE: tuple[str, ...] = (
    "1. a signal from outside the metrics (e.g. the canary stopped serving) rolls back",
    "2. any FAIL measurement in the history rolls back, error rate before latency",
    "3. max_consecutive_errors rounds in a row with an ERROR roll back: metrics_unavailable",
    "4. before the step's wait is over: hold and keep measuring",
    "5. the step's latest round is all PASS: advance, or promote after the last step",
    "6. past wait + max_hold without a PASS: roll back (metrics_unavailable or insufficient_data)",
    "7. otherwise hold until a PASS",
)


def _trailing_error_rounds(rounds: Sequence[Round]) -> int:
    count = 0
    for r in reversed(rounds):
        if not r.has(Verdict.ERROR):
            break
        count += 1
    return count


def _summary(measurements: Sequence[Measurement]) -> str:
    return "; ".join(m.detail for m in measurements) or "no measurements"


def decide(
    policy: Policy, *, step_index: int, elapsed: float, rounds: Sequence[Round], signal: Signal | None = None
) -> Decision:
    """Decide what the release does next. Pure: same inputs, same decision.

    ``rounds`` is the release's whole analysis history, oldest first; ``elapsed`` is the time spent
    in step ``step_index``; ``signal`` is an abort raised outside analysis (it wins over any metric:
    a dead canary's last good numbers must not advance it).
    """
    weight = policy.steps[step_index]
    step_rounds = [r for r in rounds if r.step_index == step_index]

    # Rule 1: abort signals.
    if signal is not None:
        return Decision(Action.ROLLBACK, signal.reason, f"{signal.detail} at {weight}% canary")

    # Rule 2: any FAIL.
    failing = [m for r in rounds for m in r.measurements if m.verdict is Verdict.FAIL]
    if failing:
        by_priority = sorted(failing, key=lambda m: list(FAIL_REASON_BY_METRIC).index(m.metric))
        worst = by_priority[0]
        return Decision(
            Action.ROLLBACK, FAIL_REASON_BY_METRIC[worst.metric], f"{worst.detail} at {weight}% canary",
            tuple(failing),
        )

    # Rule 3: the metric source keeps failing.
    errors = _trailing_error_rounds(rounds)
    if errors >= policy.max_consecutive_errors:
        last = rounds[-1].measurements
        return Decision(
            Action.ROLLBACK, Reason.METRICS_UNAVAILABLE,
            f"{errors} analysis rounds in a row without metrics: {_summary(last)}", last,
        )

    latest = step_rounds[-1] if step_rounds else None
    evidence = latest.measurements if latest else ()

    # Rule 4: the wait is not over.
    if elapsed < policy.step_wait_seconds:
        return Decision(Action.HOLD, Reason.WAITING, f"{elapsed:.0f}s of {policy.step_wait_seconds:.0f}s at "
                        f"{weight}% canary: {_summary(evidence)}", evidence)

    # Rule 5: a PASS ends the step.
    if latest is not None and latest.all_pass:
        last_step = step_index == len(policy.steps) - 1
        return Decision(
            Action.PROMOTE if last_step else Action.ADVANCE, Reason.ANALYSIS_PASSED,
            f"analysis passed at {weight}% canary: {_summary(evidence)}", evidence,
        )

    # Rule 6: out of time to obtain a PASS.
    if elapsed >= policy.step_wait_seconds + policy.max_hold_seconds:
        reason = Reason.METRICS_UNAVAILABLE if latest and latest.has(Verdict.ERROR) else Reason.INSUFFICIENT_DATA
        return Decision(
            Action.ROLLBACK, reason,
            f"no passing analysis at {weight}% canary within {policy.step_wait_seconds + policy.max_hold_seconds:.0f}s: "
            f"{_summary(evidence)}", evidence,
        )

    # Rule 7: keep measuring.
    return Decision(Action.HOLD, Reason.AWAITING_PASS, f"waiting for a passing analysis at {weight}% canary: "
                    f"{_summary(evidence)}", evidence)
