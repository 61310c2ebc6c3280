"""The rules the detection benchmark compares, each fed one run's counts (``detection_traffic``).

Every rule sees the same release: the spec's steps (10/50/100 %), ``wait`` seconds per step, and
the same thresholds (the spec's environment defaults). The peers are modelled as their users
configure them by default, reading the documentation and the code of each:

* **seed** — the release as first written: wait 300 s at each step, then check the canary's error
  rate and p95 over the last 1 m window once; above a threshold rolls back, else the next step. No
  minimum sample (an empty window is NaN, and NaN is not above the threshold).
* **Flagger** (``analysis.interval: 1m``, ``threshold: 1`` or ``5``) — every interval the
  controller first rolls back if the failed-checks counter has reached ``threshold``, then runs
  the metric checks (``request-success-rate`` and ``request-duration`` over ``interval: 1m``);
  a failing check — and a query with no values, "probably not receiving traffic" — increments the
  counter and halts advancement; the counter is reset only by a new revision, never by a pass
  (``pkg/controller/scheduler.go``, ``scheduler_metrics.go``). The rollback therefore comes one
  interval after the threshold-th failed check. Flagger's built-in ``request-duration`` is a p99;
  here every rule checks the p95, against the same limit. In Flagger a weight lasts one interval
  (``stepWeight``/``stepWeights`` advance on every pass); on the common schedule each weight gets
  five checks, and a failed check does not stretch the schedule — the counts are shared.
* **Argo Rollouts** (background ``AnalysisTemplate``, ``interval: 1m``, ``failureLimit: 0``, the
  default) — a measurement every interval from the first step (the first one after 1 m, as an
  ``initialDelay: 1m`` or an ``isNaN`` guard gives it; a measurement at once would read an empty
  window), ``successCondition`` on the 1 m windowed ratio and p95; a NaN fails the condition.
  More failed measurements than ``failureLimit`` fail the run and abort the rollout at once;
  ``consecutiveErrorLimit`` (4) counts query errors, which the simulation has none of. The
  analysis stops when the last step's pause ends.
* **canaryflow, previous rule** (``git show 5bf4b4c``) — a round every 30 s during each step's
  wait and one at its end; the 1 m window (clipped to the canary's age); fewer than 50 requests
  in it is INCONCLUSIVE; any FAIL rolls back; after the wait a round with both metrics PASS
  advances; without one by wait + max_hold, ``insufficient_data``.
* **canaryflow, new judge** — the project's own code: ``Analysis`` reading raw counters from a
  simulated Prometheus (``SimulatedPrometheus``), ``decide`` on every round, the flow's round
  schedule (``next_pause``). Nothing of the judge is re-implemented here.

Windowed figures come from the same counts as the judge's: a 1 m ``rate()`` ratio is the
window's errors over its requests, ``histogram_quantile(0.95, ...)`` is interpolated inside the
buckets as Prometheus does (``Histogram.quantile``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from benchmarks.detection_traffic import BOUNDS, TICK, Arm, Release, Traffic
from canaryflow.analysis import Analysis, next_pause, policy_for
from canaryflow.assess.counts import Histogram
from canaryflow.judge import Action, QueryResult, Round, decide
from canaryflow.prometheus import SeriesResult
from canaryflow.spec import ReleaseSpec, validate_spec

SERVICE, CANARY, BASELINE = "checkout", "v2", "v1"
WINDOW = 60  # seconds: rate(...[1m])
PEER_INTERVAL = 60  # Flagger's and Argo's analysis interval
PROMOTED = "promoted"
DEFAULT_INTERVAL = ReleaseSpec.model_fields["analysis_interval_seconds"].default

#: A rule's course so far: (step index, seconds spent at it) end to end on the release clock, the
#: last one the current step (a step back makes a step appear again, later).
Segments = Sequence[tuple[int, int]]


def spec_for(environment: str, *, interval: float | None = None) -> ReleaseSpec:
    """The default spec of the environment: the thresholds and shape every rule uses (``interval``:
    the new judge's analysis interval, default the spec's)."""
    fields = {"service": SERVICE, "version": CANARY, "environment": environment}
    if interval is not None:
        fields["analysis_interval_seconds"] = interval
    return validate_spec(fields)


def release_of(spec: ReleaseSpec) -> Release:
    return Release(tuple(spec.steps), int(spec.step_wait_seconds), int(spec.max_hold_seconds))


@dataclass(frozen=True)
class Outcome:
    """How one rule ended one run, and what the canary had served by then."""

    rolled_back: bool
    reason: str  # the rollback reason, or "promoted"
    seconds: float  # release seconds at the decision
    canary_requests: int
    canary_errors: int
    step: int  # index of the step at which it ended


def span(cum: np.ndarray, segments: Segments, t0: float, t1: float) -> np.ndarray | int:
    """Sum of one arm's counts over release seconds [t0, t1) along ``segments`` (seconds are
    read in whole ticks: every time a rule looks at is a multiple of ``TICK``)."""
    total: np.ndarray | int = 0
    start = 0
    for step, seconds in segments:
        a, b = max(t0, start), min(t1, start + seconds)
        if a < b:
            total = total + cum[step, int(b) // TICK] - cum[step, int(a) // TICK]
        start += seconds
    return total


def ended(arm: Arm, segments: Segments, *, rolled_back: bool, reason: str) -> Outcome:
    t = sum(s for _, s in segments)
    return Outcome(rolled_back, reason, float(t), int(span(arm.cum_requests, segments, 0, t)),
                   int(span(arm.cum_errors, segments, 0, t)), segments[-1][0])


def p95_ms(buckets: np.ndarray) -> float:
    """``histogram_quantile(0.95, ...)`` of per-bucket counts, in ms (NaN with no requests)."""
    cumulative = np.cumsum(buckets)
    value = Histogram(tuple(zip(BOUNDS, (int(c) for c in cumulative), strict=False))).quantile(0.95)
    return math.nan if value is None else value * 1000


@dataclass(frozen=True)
class Limits:
    max_error_rate: float
    max_p95_ms: float

    @classmethod
    def of(cls, spec: ReleaseSpec) -> Limits:
        return cls(spec.max_error_rate, spec.max_p95_latency_ms)


def window_check(arm: Arm, segments: Segments, t: float, limits: Limits, *, length: float = WINDOW
                 ) -> tuple[int, str | None]:
    """(requests in the window, the failing metric's reason or None) for the window ending at t.

    With no requests the ratio and the quantile are NaN: ``None`` here (NaN is never above a
    threshold); each rule decides what no data means to it.
    """
    t0 = t - length
    requests = int(span(arm.cum_requests, segments, t0, t))
    if requests == 0:
        return 0, None
    if span(arm.cum_errors, segments, t0, t) / requests > limits.max_error_rate:
        return requests, "high_error_rate"
    if p95_ms(span(arm.cum_buckets, segments, t0, t)) > limits.max_p95_ms:
        return requests, "high_latency"
    return requests, None


def fixed_schedule(release: Release) -> list[tuple[int, int]]:
    """The schedule of the rules that never hold: wait at each step; the last step's array to its end."""
    return [(k, release.wait) for k in range(len(release.steps) - 1)] + [
        (len(release.steps) - 1, release.step_seconds)]


def upto(schedule: Segments, t: float) -> list[tuple[int, int]]:
    out, start = [], 0
    for step, seconds in schedule:
        if t <= start:
            break
        out.append((step, int(min(seconds, t - start))))
        start += seconds
    return out


# -- the peers ----------------------------------------------------------------------------------


def seed_rule(traffic: Traffic, limits: Limits) -> Outcome:
    release, arm = traffic.release, traffic.canary
    schedule = fixed_schedule(release)
    for k in range(len(release.steps)):
        t = (k + 1) * release.wait
        _, failed = window_check(arm, schedule, t, limits)
        if failed:
            return ended(arm, upto(schedule, t), rolled_back=True, reason=failed)
    return ended(arm, upto(schedule, release.nominal_seconds), rolled_back=False, reason=PROMOTED)


def flagger_rule(traffic: Traffic, limits: Limits, *, threshold: int) -> Outcome:
    release, arm = traffic.release, traffic.canary
    schedule = fixed_schedule(release)
    end = sum(s for _, s in schedule)
    failed_checks, t, last_reason = 0, PEER_INTERVAL, "high_error_rate"
    while t <= end:
        if failed_checks >= threshold:
            return ended(arm, upto(schedule, t), rolled_back=True, reason=last_reason)
        requests, failed = window_check(arm, schedule, t, limits)
        if failed or requests == 0:
            failed_checks += 1
            last_reason = failed or "metrics_unavailable"
        elif t >= release.nominal_seconds:
            return ended(arm, upto(schedule, t), rolled_back=False, reason=PROMOTED)
        t += PEER_INTERVAL
    return ended(arm, upto(schedule, end), rolled_back=False, reason="undecided")


def argo_rule(traffic: Traffic, limits: Limits, *, failure_limit: int = 0) -> Outcome:
    release, arm = traffic.release, traffic.canary
    schedule = fixed_schedule(release)
    failures = 0
    for t in range(PEER_INTERVAL, release.nominal_seconds + 1, PEER_INTERVAL):
        requests, failed = window_check(arm, schedule, t, limits)
        if failed or requests == 0:
            failures += 1
            if failures > failure_limit:
                return ended(arm, upto(schedule, t), rolled_back=True, reason=failed or "metrics_unavailable")
    return ended(arm, upto(schedule, release.nominal_seconds), rolled_back=False, reason=PROMOTED)


# -- canaryflow's rules: the flow's step loop ---------------------------------------------------

#: One round of a rule that holds: (step index, seconds into the step, the course before this step)
#: -> (action, reason).
RoundRule = Callable[[int, int, list[tuple[int, int]]], tuple[Action, str]]


def through_steps(traffic: Traffic, interval: float, judge_round: RoundRule) -> Outcome:
    """``_steps`` and ``analyse_step`` of flows/release.py, on the simulated clock: a round at once,
    then every interval (one landing on the end of the wait), holding until the rule stops holding;
    a step back goes to the previous step, a pass to the next."""
    release, done, k = traffic.release, [], 0
    while k < len(release.steps):
        elapsed = 0
        while True:
            action, reason = judge_round(k, elapsed, done)
            if action is not Action.HOLD:
                break
            elapsed = int(round(elapsed + next_pause(elapsed=elapsed, wait=release.wait, interval=interval)))
        done.append((k, elapsed))
        if action is Action.ROLLBACK:
            return ended(traffic.canary, done, rolled_back=True, reason=reason)
        if action is Action.PROMOTE:
            break
        k = k - 1 if action is Action.STEP_BACK else k + 1
    return ended(traffic.canary, done, rolled_back=False, reason=PROMOTED)


def previous_rule(traffic: Traffic, limits: Limits, *, interval: float = 30, min_requests: int = 50) -> Outcome:
    """canaryflow at 5bf4b4c: windowed thresholds every round, any FAIL rolls back (module doc)."""
    release, arm = traffic.release, traffic.canary

    def judge_round(k: int, elapsed: int, done: list[tuple[int, int]]) -> tuple[Action, str]:
        segments = [*done, (k, elapsed)]
        age = sum(s for _, s in done) + elapsed
        requests, failed = window_check(arm, segments, age, limits, length=min(WINDOW, max(1, age)))
        if requests >= min_requests and failed:
            return Action.ROLLBACK, failed
        if elapsed < release.wait:
            return Action.HOLD, "waiting"
        if requests >= min_requests:
            return Action.ADVANCE, "analysis_passed"
        if elapsed >= release.wait + release.max_hold:
            return Action.ROLLBACK, "insufficient_data"
        return Action.HOLD, "awaiting_pass"

    return through_steps(traffic, interval, judge_round)


class SimulatedPrometheus:
    """Raw counters of the canary and the baseline as Prometheus would answer at the rule's position.

    ``move_to`` sets where the release is (its segments); ``query_series`` then answers the
    judge's counter queries the way the demo service's series look: requests by ``code``, latency
    buckets by ``le`` (cumulative, ``+Inf`` last), the baseline's history before the release included.
    """

    def __init__(self, traffic: Traffic, *, canary: str = CANARY, baseline: str = BASELINE) -> None:
        self.traffic, self.canary, self.baseline = traffic, canary, baseline
        self._le = tuple("+Inf" if math.isinf(b) else repr(b) for b in BOUNDS)
        self.move_to([])

    def move_to(self, segments: Segments) -> None:
        h = self.traffic.history
        self._totals = {
            self.canary: self._served(self.traffic.canary, segments, 0, 0, np.zeros(len(BOUNDS), dtype=np.int64)),
            self.baseline: self._served(self.traffic.baseline, segments, h.requests, h.errors, h.buckets),
        }

    @staticmethod
    def _served(arm: Arm, segments: Segments, requests: int, errors: int, buckets: np.ndarray
                ) -> tuple[int, int, np.ndarray]:
        end = sum(seconds for _, seconds in segments)
        requests += int(span(arm.cum_requests, segments, 0, end))
        errors += int(span(arm.cum_errors, segments, 0, end))
        return requests, errors, np.cumsum(buckets + span(arm.cum_buckets, segments, 0, end))

    def query_series(self, promql: str, *, at: float | None = None) -> SeriesResult:
        if promql.startswith("timestamp("):  # every simulated target is scraped at the evaluation time
            return SeriesResult(series={(("instance", "sim"),): float(at or 0.0)})
        version = self.canary if f'version="{self.canary}"' in promql else self.baseline
        requests, errors, cumulative = self._totals[version]
        if "_bucket" in promql:
            return SeriesResult(series={(("le", le),): float(c) for le, c in zip(self._le, cumulative, strict=False)})
        series = {(("code", "500"),): float(errors)}
        if 'code=~"5.."' not in promql:
            series[(("code", "200"),)] = float(requests - errors)
        return SeriesResult(series=series)

    def query(self, promql: str, *, at: float | None = None) -> QueryResult:
        return QueryResult(error="the simulation answers counter queries only")

    def is_online(self) -> bool:
        return True


def new_judge(traffic: Traffic, spec: ReleaseSpec) -> Outcome:
    """The project's judge (``Analysis.round`` + ``decide``) on the simulated counters."""
    source = SimulatedPrometheus(traffic)
    analysis = Analysis(spec, source, baseline_version=BASELINE)
    analysis.start(at=0.0)
    policy, rounds = policy_for(spec), []

    def judge_round(k: int, elapsed: int, done: list[tuple[int, int]]) -> tuple[Action, str]:
        source.move_to([*done, (k, elapsed)])
        before = float(sum(s for _, s in done))
        measurements = analysis.round(step_index=k, expected_share=spec.steps[k] / 100, at=before + elapsed,
                                      weight_set_at=before)
        rounds.append(Round(k, float(elapsed), measurements))
        decision = decide(policy, step_index=k, elapsed=float(elapsed), rounds=rounds)
        return decision.action, decision.reason.value

    return through_steps(traffic, spec.analysis_interval_seconds, judge_round)


@dataclass(frozen=True)
class Rule:
    name: str
    judge: Callable[[Traffic, ReleaseSpec], Outcome]


def rules(*, interval: float | None = None) -> tuple[Rule, ...]:
    """The columns' rules in print order; ``interval`` is the new judge's analysis interval (default
    the spec's)."""
    interval = DEFAULT_INTERVAL if interval is None else interval
    def limits(spec: ReleaseSpec) -> Limits:
        return Limits.of(spec)

    def judged(spec: ReleaseSpec) -> ReleaseSpec:
        if spec.analysis_interval_seconds == interval:
            return spec
        return spec.model_copy(update={"analysis_interval_seconds": interval})

    return (
        Rule("seed (wait 300 s, check)", lambda t, s: seed_rule(t, limits(s))),
        Rule("Flagger threshold 1", lambda t, s: flagger_rule(t, limits(s), threshold=1)),
        Rule("Flagger threshold 5", lambda t, s: flagger_rule(t, limits(s), threshold=5)),
        Rule("Argo failureLimit 0", lambda t, s: argo_rule(t, limits(s))),
        Rule("canaryflow previous", lambda t, s: previous_rule(t, limits(s))),
        Rule(f"canaryflow new judge{'' if interval == DEFAULT_INTERVAL else f' ({interval:g} s rounds)'}",
             lambda t, s: new_judge(t, judged(s))),
    )
