"""One analysis round: run the rendered queries against a metric source and judge each metric."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

from canaryflow.judge import Measurement, Policy, QueryResult, judge_error_rate, judge_latency
from canaryflow.errors import PlatformError, PreflightError
from canaryflow.spec import ReleaseSpec, duration_seconds

if TYPE_CHECKING:
    from canaryflow.release import ReleaseRun


class MetricSource(Protocol):
    def query(self, promql: str) -> QueryResult: ...

    def is_online(self) -> bool: ...


def check_preconditions(run: ReleaseRun) -> None:
    """Refuse a release that could not be judged or has nothing to replace; changes nothing."""
    source = run.source
    if not source.is_online():
        raise PreflightError(f"Prometheus at {source.url} is not ready (/-/ready)", reason="metrics_unavailable")
    sample = source.query("vector(1)")
    if sample.error or sample.value != 1:
        raise PreflightError(f"Prometheus at {source.url} failed a sample query: {sample.error or sample.value}",
                             reason="metrics_unavailable")
    run.previous_version = run.platform.stable_version()
    if run.previous_version == run.spec.version:
        raise PreflightError(f"{run.spec.service} already runs {run.spec.version}")
    try:
        run.platform.check_version(run.spec.version)
    except PlatformError as exc:
        if exc.transient:
            raise
        raise PreflightError(f"{run.spec.service} {run.spec.version} cannot be released: {exc}") from None


def policy_for(spec: ReleaseSpec) -> Policy:
    return Policy(
        steps=tuple(spec.steps), step_wait_seconds=spec.step_wait_seconds,
        max_consecutive_errors=spec.max_consecutive_errors, max_hold_seconds=spec.max_hold_seconds,
    )


def effective_window(spec: ReleaseSpec, canary_age: float | None) -> str:
    """The analysis window, shortened to the canary's age while it is younger than the window.

    Only samples the new canary produced are judged: series of the same version from before the
    deploy (a version put back right after it was replaced) never dilute its numbers, and a bad
    canary's first errors are not averaged over a window it did not live in.
    """
    if canary_age is None:
        return spec.analysis_window
    seconds = max(1, math.ceil(canary_age))
    return spec.analysis_window if seconds >= duration_seconds(spec.analysis_window) else f"{seconds}s"


def measure(source: MetricSource, spec: ReleaseSpec, *, canary_age: float | None = None) -> tuple[Measurement, ...]:
    """Error rate then latency, both gated by the same canary request count."""
    queries = spec.rendered_queries(window=effective_window(spec, canary_age))
    requests = source.query(queries["request_count"])
    return (
        judge_error_rate(source.query(queries["error_rate"]), requests,
                         max_error_rate=spec.max_error_rate, min_requests=spec.min_canary_requests),
        judge_latency(source.query(queries["p95_latency_seconds"]), requests,
                      max_p95_ms=spec.max_p95_latency_ms, min_requests=spec.min_canary_requests),
    )


def next_pause(*, elapsed: float, wait: float, interval: float) -> float:
    """Seconds until the next analysis round: every ``interval``, plus one round exactly at the end
    of the wait so a step never ends on a stale measurement."""
    if elapsed < wait:
        return max(0.0, min(interval, wait - elapsed))
    return interval
