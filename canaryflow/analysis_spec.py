"""The analysis section of a release spec: which metrics judge the canary, and how strictly.

Users add metrics the way Argo Rollouts' AnalysisTemplate and Flagger's MetricTemplate let them,
but each metric is one of three kinds the judge knows how to test soundly:

* ``ratio`` — two raw counters (``bad`` events out of ``total`` requests, e.g. 5xx out of all),
  read for the canary *and* the baseline (the stable version serving at the same moment). The
  judge runs an anytime-valid test of "canary worse than baseline" on the counts, with the
  absolute limit ``max`` as a confidence-sequence guard rail.
* ``latency`` — a raw histogram (``*_bucket`` counters with an ``le`` label), judged the same way
  on the count of requests slower than fixed bucket boundaries, with ``max_ms`` at ``quantile`` as
  the guard rail.
* ``threshold`` — any PromQL giving one number for the canary (a business KPI), checked against
  ``min``/``max`` each round and failed after more than ``failure_limit`` breaches (Argo's
  ``successCondition``/``failureLimit``).

Counter templates must contain ``$version``: the same template is rendered once for the canary
and once for the baseline, so a template without it would compare a version with itself.
Everything that shapes a test (alpha, tolerance, grid, boundaries) is fixed here, before the
release, as ``JUDGE.md`` asks.
"""

from __future__ import annotations

import string
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: The name of the judge's own traffic-split check (sample ratio mismatch) in every round.
TRAFFIC_SPLIT = "traffic_split"
PLACEHOLDERS = frozenset({"service", "version", "namespace", "window"})

#: Default counters: the usual ``http_requests_total`` / ``http_request_duration_seconds`` names.
DEFAULT_REQUESTS = 'http_requests_total{service="$service",version="$version"}'
DEFAULT_ERRORS = 'http_requests_total{service="$service",version="$version",code=~"5.."}'
DEFAULT_LATENCY_BUCKETS = 'http_request_duration_seconds_bucket{service="$service",version="$version"}'


def placeholders(template: str) -> set[str]:
    return {m.group("named") or m.group("braced") for m in string.Template.pattern.finditer(template)} - {None}


def check_template(template: str, *, needs_version: bool = True) -> str:
    unknown = sorted(placeholders(template) - PLACEHOLDERS)
    if unknown:
        raise ValueError(f"unknown placeholder(s) {unknown}; allowed: {sorted(PLACEHOLDERS)}")
    if needs_version and "version" not in placeholders(template):
        raise ValueError("must contain $version: it is rendered once for the canary and once for the baseline")
    return template


def render(template: str, *, service: str, version: str, namespace: str, window: str) -> str:
    return string.Template(template).substitute(service=service, version=version, namespace=namespace,
                                                window=window)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Grid(_Strict):
    """Alternatives the e-process averages over: ratios canary/baseline, log-spaced."""

    low: float = Field(default=1.5, gt=1, description="Smallest ratio canary/baseline the test looks for")
    high: float = Field(default=100, gt=1, description="Largest ratio on the grid")
    points: int = Field(default=40, ge=1, le=400, description="Grid points, log-spaced on [low, high]")

    @model_validator(mode="after")
    def _ordered(self) -> Grid:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


class QueryTemplates(_Strict):
    """Raw counters the default metrics read (``string.Template`` syntax, ``$version`` required).

    Raw counters, not ``rate()``: the judge takes differences between rounds itself, per series,
    with counter resets handled, so it tests integer counts instead of extrapolated fractions.
    """

    requests: str = Field(default=DEFAULT_REQUESTS, description="Counter of all requests of one version")
    errors: str = Field(default=DEFAULT_ERRORS, description="Counter of failed requests of one version")
    latency_buckets: str = Field(default=DEFAULT_LATENCY_BUCKETS,
                                 description="Histogram bucket counters (with an `le` label) of one version")
    latency_unit: Literal["seconds", "milliseconds"] = Field(
        default="seconds", description="Unit of the histogram's `le` boundaries")

    @field_validator("requests", "errors", "latency_buckets")
    @classmethod
    def _templates(cls, value: str) -> str:
        return check_template(value)


class RatioMetric(_Strict):
    """Bad events out of requests, canary vs baseline (default: 5xx out of all requests)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="Metric name, unique in the list")
    kind: Literal["ratio"] = Field(default="ratio", description="Bad events out of requests, canary vs baseline")
    total: str | None = Field(default=None, description="Requests counter; default: queries.requests")
    bad: str | None = Field(default=None, description="Bad-events counter; default: queries.errors")
    max: float | None = Field(default=None, ge=0, le=1,
                              description="Absolute limit (guard rail); default: thresholds.max_error_rate")
    tolerance: float = Field(default=1.0, ge=1, description="Canary up to this many times the baseline is fine")
    grid: Grid = Field(default_factory=Grid, description="Alternatives the e-process averages over")
    floor: float | None = Field(
        default=None, ge=0, le=1,
        description="Roll back on the comparison only if the canary's rate is credibly above this too "
                    "(a near-zero baseline makes a tiny difference a large ratio); default: max / 10")

    @field_validator("total", "bad")
    @classmethod
    def _templates(cls, value: str | None) -> str | None:
        return None if value is None else check_template(value)

    @model_validator(mode="after")
    def _grid_above_tolerance(self) -> RatioMetric:
        if self.grid.low <= self.tolerance:
            raise ValueError(f"grid.low ({self.grid.low}) must be above tolerance ({self.tolerance})")
        return self


class LatencyMetric(_Strict):
    """A latency histogram, canary vs baseline on slow-request counts (default: p95 under the limit)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="Metric name, unique in the list")
    kind: Literal["latency"] = Field(default="latency",
                                     description="A latency histogram, canary vs baseline on slow-request counts")
    buckets: str | None = Field(default=None, description="Histogram bucket counters; default: queries.latency_buckets")
    unit: Literal["seconds", "milliseconds"] | None = Field(
        default=None, description="Unit of `le`; default: queries.latency_unit")
    quantile: float = Field(default=0.95, gt=0, lt=1, description="The guard rail: this quantile stays under max_ms")
    max_ms: float | None = Field(default=None, gt=0,
                                 description="Latency limit in ms; default: thresholds.max_p95_latency_ms")
    boundaries_ms: list[float] | Literal["auto"] = Field(
        default="auto",
        description="Bucket boundaries whose slow counts are compared; `auto` = the baseline's buckets "
                    "nearest its p50, p90, p99 and p99.9, read before the canary starts")
    tolerance: float = Field(default=1.0, ge=1, description="Canary up to this many times the baseline is fine")
    grid: Grid = Field(default_factory=lambda: Grid(low=1.25, high=20, points=40),
                       description="Alternatives the e-process averages over")

    @field_validator("buckets")
    @classmethod
    def _templates(cls, value: str | None) -> str | None:
        return None if value is None else check_template(value)

    @field_validator("boundaries_ms")
    @classmethod
    def _positive(cls, value: list[float] | str) -> list[float] | str:
        if isinstance(value, list) and (not value or any(b <= 0 for b in value)):
            raise ValueError("boundaries must be a non-empty list of positive milliseconds, or auto")
        return value

    @model_validator(mode="after")
    def _grid_above_tolerance(self) -> LatencyMetric:
        if self.grid.low <= self.tolerance:
            raise ValueError(f"grid.low ({self.grid.low}) must be above tolerance ({self.tolerance})")
        return self


class ThresholdMetric(_Strict):
    """Any PromQL giving one number for the canary, e.g. a business KPI; no baseline comparison."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="Metric name, unique in the list")
    kind: Literal["threshold"] = Field(default="threshold",
                                       description="One number for the canary against min/max, no baseline")
    query: str = Field(description="PromQL for one number of the canary ($version, $window, ...)")
    min: float | None = Field(default=None, description="Lowest value of a passing round (min, max or both)")
    max: float | None = Field(default=None, description="Highest value of a passing round (min, max or both)")
    failure_limit: int = Field(default=0, ge=0, description="Breaching rounds tolerated; one more rolls back")

    @field_validator("query")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value)

    @model_validator(mode="after")
    def _a_bound(self) -> ThresholdMetric:
        if self.min is None and self.max is None:
            raise ValueError("a threshold metric needs min, max or both")
        if self.min is not None and self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


AnalysisMetric = Annotated[RatioMetric | LatencyMetric | ThresholdMetric, Field(discriminator="kind")]


def default_metrics() -> list[RatioMetric | LatencyMetric | ThresholdMetric]:
    return [RatioMetric(name="error_rate"), LatencyMetric(name="p95_latency")]


class Analysis(_Strict):
    """How the canary is judged. Defaults: error rate and p95 latency, alpha 1 %."""

    alpha: float = Field(default=0.01, gt=0, lt=0.5,
                         description="Chance of rolling back a canary no worse than its baseline, over the "
                                     "whole release however often it is checked")
    strict: bool = Field(default=False,
                         description="Also require each guard rail's upper bound within its limit to promote")
    traffic_alpha: float = Field(default=0.001, gt=0, lt=0.5,
                                 description="Level of the traffic-split check (sample ratio mismatch)")
    traffic_concentration: float = Field(default=100, gt=0, description="Prior concentration k of that check")
    metrics: list[AnalysisMetric] = Field(
        default_factory=default_metrics, min_length=1,
        description="What judges the canary, in order of precedence; names unique, `traffic_split` reserved")

    @field_validator("metrics")
    @classmethod
    def _unique_names(cls, metrics: list[RatioMetric | LatencyMetric | ThresholdMetric]
                      ) -> list[RatioMetric | LatencyMetric | ThresholdMetric]:
        names = [m.name for m in metrics]
        if TRAFFIC_SPLIT in names:
            raise ValueError(f"{TRAFFIC_SPLIT!r} is the judge's own traffic-split check; name the metric otherwise")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"metric names must be unique; repeated: {twice}")
        return metrics
