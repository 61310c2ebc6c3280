"""Synthetic release traffic for the detection benchmark: one run's counts, drawn once, for every rule.

Every rule in ``benchmarks/detection.py`` judges the *same* counts, so a difference
between two rules is the rule and never the luck of the draw. A run is drawn as the local platform
serves a release: the service receives Poisson arrivals (its rate optionally swinging), the router
sends each request to the canary with the step's weight (binomial split, the baseline gets the
rest, nothing at 100 %), each request fails independently (binomial errors; an incident raises
both versions' rate at once) and takes a log-normal latency fitted to the catalogue's v1 (p50 20 ms,
p95 45 ms), binned into the demo service's histogram buckets.

Counts are laid out per step weight, in ticks of ``TICK`` seconds of release time, over the
longest course a rule can take (every step held to its limit, and one step back with its way up
again): the same arrivals split at each weight, so a rule reads, for each stretch of its course,
the row of the weight it was at. A rule that holds reads further along its row, a rule that moves
on reads the next row from where it is in time, and a rule that steps back reads the previous row
again, later. Every rule looks at the counts on multiples of ``TICK`` (rounds every 10 s or more,
windows of 1 m), so a tick is as good as a second and five times cheaper to draw. Time-dependent
effects (the incident, the traffic swing) are placed on the release clock, the same for every rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from canaryflow.local.service import LATENCY_BUCKETS

#: The catalogue's v1: log-normal latency with these quantiles, in ms.
P50_MS, P95_MS = 20.0, 45.0
_Z95 = 1.6448536269514722
SIGMA = (math.log(P95_MS) - math.log(P50_MS)) / _Z95
#: Bucket upper bounds in seconds, ``+Inf`` last: the ``le`` labels of the demo service.
BOUNDS = (*LATENCY_BUCKETS, math.inf)
INCIDENT_ERROR_RATE = 0.05
INCIDENT_SECONDS = 120
SWING_LOW, SWING_HIGH, SWING_PERIOD = 0.5, 1.5, 600.0
#: Seconds per count: every time a rule reads the counts at is a multiple of it.
TICK = 5
#: Seconds the stable version served alone before the release: the judge places its latency
#: boundaries from this history.
HISTORY_SECONDS = 300


@dataclass(frozen=True)
class Release:
    """The shape every rule's release has: the default spec's steps, wait and hold limit."""

    steps: tuple[int, ...] = (10, 50, 100)
    wait: int = 300
    max_hold: int = 120

    def __post_init__(self) -> None:
        if self.wait % TICK or self.max_hold % TICK:
            raise ValueError(f"wait and max_hold must be multiples of {TICK} s, got {self.wait} and {self.max_hold}")

    @property
    def step_seconds(self) -> int:
        return self.wait + self.max_hold

    @property
    def step_ticks(self) -> int:
        return self.step_seconds // TICK

    @property
    def nominal_seconds(self) -> int:
        return len(self.steps) * self.wait

    @property
    def horizon_ticks(self) -> int:
        """Ticks of the longest course: each step held to its limit, plus a step back and up again."""
        return (len(self.steps) + 2) * self.step_ticks


@dataclass(frozen=True)
class Scenario:
    """One row of the table: who is healthy, how much traffic, what goes wrong and when."""

    name: str
    family: str  # "errors", "latency" or "robustness": the table the row is printed in
    healthy: bool  # a rollback is then a false rollback; otherwise a rollback is a detection
    environment: str  # "production" or "staging": the thresholds every rule compares with
    baseline_error_rate: float
    canary_error_rate: float
    canary_rps: float = 10.0  # at the first step; the service serves canary_rps * 100 / steps[0]
    latency_scale: float = 1.0  # the canary's latencies multiplied by this
    slow_share: float = 0.0  # this share of the canary's requests ...
    slow_extra_ms: float = 0.0  # ... takes this much longer
    incident: bool = False
    swing: bool = False
    description: str = ""

    @property
    def regression(self) -> str | None:
        """The rollback reason that counts as catching this canary (None: a healthy canary)."""
        if self.healthy:
            return None
        return "high_latency" if self.family == "latency" else "high_error_rate"

    def service_rps(self, release: Release) -> float:
        return self.canary_rps * 100 / release.steps[0]


def scenarios() -> tuple[Scenario, ...]:
    """The benchmark's rows, in print order."""
    prod = dict(environment="production", baseline_error_rate=0.0005, canary_error_rate=0.0005)
    bad = dict(environment="production", baseline_error_rate=0.001)
    rows = [
        Scenario("healthy-production", "errors", True, **prod,
                 description="canary = baseline: 0.05 % errors, production thresholds (0.1 %, p95 200 ms)"),
        Scenario("healthy-staging", "errors", True, "staging", 0.003, 0.003,
                 description="canary = baseline: 0.3 % errors, staging thresholds (1 %, p95 500 ms)"),
        Scenario("healthy-1rps", "errors", True, **prod, canary_rps=1,
                 description="healthy-production at 1 canary request/s"),
        Scenario("healthy-100rps", "errors", True, **prod, canary_rps=100,
                 description="healthy-production at 100 canary requests/s"),
    ]
    for rps in (1, 10, 100):
        rows.append(Scenario(f"errors-0.5%-{rps}rps", "errors", False, **bad, canary_error_rate=0.005,
                             canary_rps=rps, description=f"canary 0.5 % vs baseline 0.1 %, {rps} canary req/s"))
    for rps in (1, 10, 100):
        rows.append(Scenario(f"errors-2%-{rps}rps", "errors", False, **bad, canary_error_rate=0.02,
                             canary_rps=rps, description=f"canary 2 % vs baseline 0.1 %, {rps} canary req/s"))
    rows += [
        Scenario("latency+30%", "latency", False, **prod, latency_scale=1.3,
                 description="every canary latency x1.3 (p50 26 ms, p95 58 ms; baseline 20/45 ms)"),
        Scenario("tail+300ms", "latency", False, **prod, slow_share=0.05, slow_extra_ms=300,
                 description="5 % of canary requests take 300 ms more"),
        Scenario("incident", "robustness", True, **prod, incident=True,
                 description=f"healthy-production; both versions at {INCIDENT_ERROR_RATE:.0%} errors for "
                             f"{INCIDENT_SECONDS} s, starting uniformly in the release"),
        Scenario("traffic-swing", "robustness", True, **prod, swing=True,
                 description=f"healthy-production; service rps x (1 + 0.5 sin(2 pi t / {SWING_PERIOD:.0f} s + "
                             f"random phase)), between {SWING_LOW} and {SWING_HIGH}"),
    ]
    return tuple(rows)


@dataclass(frozen=True)
class Arm:
    """What one version served, per step and tick: requests, errors, latency per bucket.

    ``buckets[k, i, b]`` counts the requests of release tick i, at step k's weight, whose latency
    fell in bucket b (not cumulative: between ``BOUNDS[b-1]`` and ``BOUNDS[b]``). The ``cum_*``
    arrays are running sums along the ticks with a leading zero, so any interval is one subtraction.
    """

    requests: np.ndarray  # (steps, horizon ticks) int64
    errors: np.ndarray  # (steps, horizon ticks) int64
    buckets: np.ndarray  # (steps, horizon ticks, len(BOUNDS)) int64
    cum_requests: np.ndarray = field(init=False, repr=False)
    cum_errors: np.ndarray = field(init=False, repr=False)
    cum_buckets: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        def running(a: np.ndarray) -> np.ndarray:
            out = np.zeros((a.shape[0], a.shape[1] + 1, *a.shape[2:]), dtype=np.int64)
            np.cumsum(a, axis=1, out=out[:, 1:])
            return out
        object.__setattr__(self, "cum_requests", running(self.requests))
        object.__setattr__(self, "cum_errors", running(self.errors))
        object.__setattr__(self, "cum_buckets", running(self.buckets))


@dataclass(frozen=True)
class History:
    """The baseline's counters before the release started (what Prometheus already holds)."""

    requests: int
    errors: int
    buckets: np.ndarray  # (len(BOUNDS),) per bucket, not cumulative


@dataclass(frozen=True)
class Traffic:
    """One run: the counts every rule is fed."""

    scenario: Scenario
    release: Release
    canary: Arm
    baseline: Arm
    history: History
    incident_start: float | None = None  # release seconds


def bucket_probabilities(*, scale: float = 1.0, slow_share: float = 0.0, slow_extra_ms: float = 0.0) -> np.ndarray:
    """P(latency in each bucket) for the fitted log-normal, scaled, with a slow share shifted."""
    mu = math.log(P50_MS * scale)

    def cdf(ms: float) -> float:
        if ms <= 0:
            return 0.0
        return 0.5 * (1.0 + math.erf((math.log(ms) - mu) / (SIGMA * math.sqrt(2.0))))

    cumulative = []
    for le in BOUNDS:
        ms = le * 1000
        if math.isinf(ms):
            cumulative.append(1.0)
        else:
            cumulative.append((1 - slow_share) * cdf(ms) + slow_share * cdf(ms - slow_extra_ms))
    probabilities = np.diff(np.asarray(cumulative), prepend=0.0)
    return np.clip(probabilities, 0.0, None) / probabilities.sum()


def swing_factor(nominal: np.ndarray, phase: float) -> np.ndarray:
    middle, amplitude = (SWING_LOW + SWING_HIGH) / 2, (SWING_HIGH - SWING_LOW) / 2
    return middle + amplitude * np.sin(2 * np.pi * nominal / SWING_PERIOD + phase)


def run_rng(seed: int, scenario_index: int, run: int) -> np.random.Generator:
    """One generator per (seed, scenario, run): a run's counts do not depend on which worker draws it."""
    return np.random.default_rng([seed, scenario_index, run])


def draw(scenario: Scenario, rng: np.random.Generator, release: Release = Release()) -> Traffic:
    """Draw one run's traffic (the only random step of the benchmark)."""
    steps, ticks = len(release.steps), release.horizon_ticks
    clock = (np.arange(ticks) + 0.5) * TICK
    rps = np.full(ticks, scenario.service_rps(release))
    if scenario.swing:
        rps = rps * swing_factor(clock, rng.uniform(0, 2 * np.pi))
    incident_start = None
    base_rate = np.full(ticks, scenario.baseline_error_rate)
    canary_rate = np.full(ticks, scenario.canary_error_rate)
    if scenario.incident:
        incident_start = float(rng.uniform(0, release.nominal_seconds - INCIDENT_SECONDS))
        hit = (clock >= incident_start) & (clock < incident_start + INCIDENT_SECONDS)
        base_rate = np.where(hit, np.maximum(base_rate, INCIDENT_ERROR_RATE), base_rate)
        canary_rate = np.where(hit, np.maximum(canary_rate, INCIDENT_ERROR_RATE), canary_rate)

    service = np.broadcast_to(rng.poisson(rps * TICK), (steps, ticks))  # the same arrivals at every weight
    weights = np.asarray(release.steps, dtype=float)[:, None] / 100
    canary_n = rng.binomial(service, weights)
    baseline_n = service - canary_n
    base_p = bucket_probabilities()
    canary_p = bucket_probabilities(scale=scenario.latency_scale, slow_share=scenario.slow_share,
                                    slow_extra_ms=scenario.slow_extra_ms)
    canary = Arm(canary_n, rng.binomial(canary_n, canary_rate), rng.multinomial(canary_n, canary_p))
    baseline = Arm(baseline_n, rng.binomial(baseline_n, base_rate), rng.multinomial(baseline_n, base_p))

    served = int(rng.poisson(scenario.service_rps(release) * HISTORY_SECONDS))
    history = History(served, int(rng.binomial(served, scenario.baseline_error_rate)),
                      rng.multinomial(served, base_p))
    return Traffic(scenario, release, canary, baseline, history, incident_start)
