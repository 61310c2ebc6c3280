"""The pipeline's own Prometheus metrics: what every release did, for alerts and dashboards.

Flow runs are short batch jobs, so the metrics go to a Pushgateway (Prometheus' guidance for batch
jobs), one group per ``{job="canaryflow", service, environment}``. A push replaces its group, so
each run first *seeds* its registry from the group's current values: counters and histograms stay
monotonic across runs and ``increase()`` in alerts works. A long-lived process (worker, ``serve()``)
can also serve the same registry on a port.

Metric names and labels of the seed catalogue are kept exactly: alerts and dashboards use them.
Labels never carry secrets: only environment, service, status, reason, task, metric names.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, push_to_gateway, start_http_server
from prometheus_client.metrics_core import Metric

from canaryflow.judge import Reason

try:  # the *_created series double every counter in the Pushgateway and are not used.
    from prometheus_client import disable_created_metrics

    disable_created_metrics()
except ImportError:  # pragma: no cover - very old prometheus-client
    pass

log = logging.getLogger(__name__)

JOB = "canaryflow"
DEPLOYMENT_BUCKETS = (60, 120, 300, 600, 900, 1200, 1800, 2700, 3600)
SMOKE_BUCKETS = (10, 20, 30, 60, 120, 180, 300)
QUERY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10)
TASK_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 3600)
FREQUENCY_HALF_HOUR = 3600.0  # time constant of the deployments-per-hour estimate
# DORA: elite teams measure lead time and time to restore in minutes to hours, low performers in weeks.
LEAD_TIME_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200, 604800)
RESTORE_BUCKETS = (60, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400, 604800)
#: Every reason a release can roll back for (the judge's "go on" reasons are not outcomes).
ROLLBACK_REASONS = tuple(r.value for r in Reason
                         if r not in (Reason.ANALYSIS_PASSED, Reason.WAITING, Reason.AWAITING_PASS))
QUERY_RESULTS = ("success", "failed", "timeout")


class PipelineMetrics:
    """Every metric the pipeline emits, in one registry, for one service and environment."""

    def __init__(self, *, service: str, environment: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.environment = environment
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # The nine seed metrics.
        self.deployment_total = Counter(
            "deployment_total", "Releases finished, by outcome.", ["environment", "status"], registry=r)
        self.deployment_duration_seconds = Histogram(
            "deployment_duration_seconds", "Wall time of a release from start to promotion or rollback.",
            ["environment"], buckets=DEPLOYMENT_BUCKETS, registry=r)
        self.deployment_rollback_total = Counter(
            "deployment_rollback_total", "Rollbacks, by reason.", ["environment", "reason"], registry=r)
        self.deployment_frequency = Gauge(
            "deployment_frequency", "Deployments per hour (exponentially decayed count, 1 h time constant).",
            ["environment"], registry=r)
        self.canary_traffic_percentage = Gauge(
            "canary_traffic_percentage", "Share of traffic sent to the canary.",
            ["environment", "deployment_id"], registry=r)
        self.smoke_test_total = Counter(
            "smoke_test_total", "Smoke test runs, by result.", ["environment", "result"], registry=r)
        self.smoke_test_duration_seconds = Histogram(
            "smoke_test_duration_seconds", "Duration of the smoke test suite.", ["environment"],
            buckets=SMOKE_BUCKETS, registry=r)
        self.prometheus_query_total = Counter(
            "prometheus_query_total", "Prometheus queries made by the pipeline, by result.",
            ["workflow", "result"], registry=r)
        self.prometheus_query_duration_seconds = Histogram(
            "prometheus_query_duration_seconds", "Latency of Prometheus queries made by the pipeline.",
            ["workflow"], buckets=QUERY_BUCKETS, registry=r)
        # Per task, and the analysis itself.
        self.task_runs_total = Counter(
            "canaryflow_task_runs_total", "Pipeline task runs, by task and outcome.",
            ["environment", "task", "outcome"], registry=r)
        self.task_duration_seconds = Histogram(
            "canaryflow_task_duration_seconds", "Duration of pipeline tasks.", ["environment", "task"],
            buckets=TASK_BUCKETS, registry=r)
        self.analysis_value = Gauge(
            "canary_analysis_value", "Latest measured canary value (error_rate as a ratio, p95_latency in ms).",
            ["environment", "deployment_id", "metric"], registry=r)
        self.analysis_threshold = Gauge(
            "canary_analysis_threshold", "Threshold the canary value is judged against (same unit).",
            ["environment", "deployment_id", "metric"], registry=r)
        self.analysis_baseline_value = Gauge(
            "canary_analysis_baseline_value", "Latest value of the baseline (stable) the canary is compared with "
            "(same unit as canary_analysis_value).", ["environment", "deployment_id", "metric"], registry=r)
        self.analysis_evidence = Gauge(
            "canary_analysis_evidence", "Latest evidence that the canary is worse than its baseline (e-value; "
            "rollback at canary_analysis_evidence_threshold = 1/alpha).", ["environment", "deployment_id", "metric"],
            registry=r)
        self.analysis_evidence_threshold = Gauge(
            "canary_analysis_evidence_threshold", "Evidence at which the metric rolls back (1/alpha).",
            ["environment", "deployment_id", "metric"], registry=r)
        self.analysis_measurements_total = Counter(
            "canary_analysis_measurements_total", "Canary measurements, by metric and verdict.",
            ["environment", "metric", "verdict"], registry=r)
        self.deployment_last_timestamp_seconds = Gauge(
            "deployment_last_timestamp_seconds", "Unix time the last release of this service started.",
            ["environment"], registry=r)
        # DORA's four keys. Deployment frequency is ``deployment_frequency`` / ``deployment_total``
        # and change failure rate is a ratio of ``deployment_total`` by status (see README); the
        # other two need a clock that spans releases, so they are observed here at promotion.
        self.deployment_lead_time_seconds = Histogram(
            "deployment_lead_time_seconds",
            "Lead time for changes: from the commit (spec commit_timestamp; else the release start) "
            "to its promotion.", ["environment"], buckets=LEAD_TIME_BUCKETS, registry=r)
        self.deployment_time_to_restore_seconds = Histogram(
            "deployment_time_to_restore_seconds",
            "Time to restore: from the first rolled-back release to the next promotion of the service.",
            ["environment"], buckets=RESTORE_BUCKETS, registry=r)
        self.deployment_last_failure_timestamp_seconds = Gauge(
            "deployment_last_failure_timestamp_seconds",
            "Unix time of the first rollback not yet followed by a promotion; 0 when the service is restored.",
            ["environment"], registry=r)
        # Side effects that report a release (Grafana dashboards and annotations, Prefect artifacts
        # and retry runs, the Pushgateway push): never block a deploy nor change its outcome, so count them.
        self.monitoring_operations_total = Counter(
            "canaryflow_monitoring_operations_total",
            "Reporting operations of releases (system: grafana|prefect|pushgateway|pipeline), by result: "
            "ok|skipped|failed|unauthorized.",
            ["environment", "system", "operation", "result"], registry=r)
        self._committed_at: float | None = None
        self._pushgateway: str | None = None
        #: How a push is sent (``prometheus_client.push_to_gateway``'s signature): a test puts a faulty one here.
        self.pusher: Any = push_to_gateway

    # -- recording -------------------------------------------------------------------------------

    def release_started(self, *, now: float | None = None, committed_at: float | None = None) -> None:
        """Count one more deployment in the decayed per-hour estimate, and zero the outcome series
        so that the first rollback of a service shows up as an increase, not as a new series.

        ``committed_at`` (Unix time of the commit or build being released) starts the lead-time
        clock; without it lead time counts from the release start, which still shows the pipeline's
        own share of it. Rollback reasons and smoke results are zeroed too: alerts take
        ``increase()`` of them, and Prometheus sees no increase in a series that starts at 1.
        """
        now = time.time() if now is None else now
        self._committed_at = committed_at
        env = self.environment
        last = _gauge_value(self.deployment_last_timestamp_seconds, env)
        previous = _gauge_value(self.deployment_frequency, env)
        decayed = previous * math.exp(-(now - last) / FREQUENCY_HALF_HOUR) if last else 0.0
        self.deployment_frequency.labels(env).set(decayed + 1.0)
        self.deployment_last_timestamp_seconds.labels(env).set(now)
        for status in ("success", "failed", "rolled_back"):
            self.deployment_total.labels(env, status)
        for rollback_reason in ROLLBACK_REASONS:
            self.deployment_rollback_total.labels(env, rollback_reason)
        for result in ("passed", "failed"):
            self.smoke_test_total.labels(env, result)
        for histogram in (self.deployment_lead_time_seconds, self.deployment_time_to_restore_seconds):
            histogram.labels(env)
        self.deployment_last_failure_timestamp_seconds.labels(env)  # 0 until a rollback, kept if seeded
        self.canary_traffic_percentage.labels(env, self.service).set(0)

    def release_finished(self, *, status: str, duration: float, reason: str | None = None,
                         now: float | None = None) -> None:
        """Count the outcome; at a promotion also observe lead time and, after a rollback, time to restore.

        Only ``rolled_back`` starts the restore clock: ``failed`` is a release that stopped in
        preflight, before anything changed, so there is nothing to restore. The clock starts at the
        *first* rollback of a streak (DORA counts from when the service degraded, not from the last
        attempt) and lives in the Pushgateway group, like ``deployment_last_timestamp_seconds``, so
        it spans runs.
        """
        env = self.environment
        now = time.time() if now is None else now
        self.deployment_total.labels(env, status).inc()
        self.deployment_duration_seconds.labels(env).observe(duration)
        failing_since = _gauge_value(self.deployment_last_failure_timestamp_seconds, env)
        if status == "rolled_back":
            self.rollback(reason or "unknown")
            if not failing_since:
                self.deployment_last_failure_timestamp_seconds.labels(env).set(now)
        elif status == "success":
            # Never shorter than the release itself: a commit timestamp "after" the start is clock skew.
            lead = duration if self._committed_at is None else max(now - self._committed_at, duration)
            self.deployment_lead_time_seconds.labels(env).observe(lead)
            if failing_since:
                self.deployment_time_to_restore_seconds.labels(env).observe(max(now - failing_since, 0.0))
                self.deployment_last_failure_timestamp_seconds.labels(env).set(0)

    def rollback(self, reason: str) -> None:
        """One rollback: by a release (via ``release_finished``) or by hand / on an alert."""
        self.deployment_rollback_total.labels(self.environment, reason).inc()

    def traffic(self, weight: int) -> None:
        self.canary_traffic_percentage.labels(self.environment, self.service).set(weight)

    def smoke_test(self, *, passed: bool, duration: float) -> None:
        self.smoke_test_total.labels(self.environment, "passed" if passed else "failed").inc()
        self.smoke_test_duration_seconds.labels(self.environment).observe(duration)

    def query(self, workflow: str, seconds: float, outcome: str) -> None:
        for result in QUERY_RESULTS:  # zeroed, so the first failure is an increase (PrometheusQueryFailing)
            self.prometheus_query_total.labels(workflow, result)
        self.prometheus_query_total.labels(workflow, outcome).inc()
        self.prometheus_query_duration_seconds.labels(workflow).observe(seconds)

    def measurement(self, *, metric: str, verdict: str, value: float | None, threshold: float | None,
                    baseline: float | None = None, evidence: float | None = None,
                    evidence_threshold: float | None = None) -> None:
        env = self.environment
        self.analysis_measurements_total.labels(env, metric, verdict).inc()
        for gauge, figure in ((self.analysis_threshold, threshold), (self.analysis_value, value),
                              (self.analysis_baseline_value, baseline), (self.analysis_evidence, evidence),
                              (self.analysis_evidence_threshold, evidence_threshold)):
            if figure is not None and math.isfinite(figure):
                gauge.labels(env, self.service, metric).set(figure)

    def monitoring(self, system: str, operation: str, result: str) -> None:
        """One operation on a monitoring system; ``result`` is ok | skipped | failed | unauthorized."""
        self.monitoring_operations_total.labels(self.environment, system, operation, result).inc()

    @contextmanager
    def track_task(self, task: str) -> Iterator[None]:
        """Time a task and count its outcome; push afterwards so the run is visible as it goes."""
        started = time.monotonic()
        outcome = "failed"
        try:
            yield
            outcome = "success"
        finally:
            self.task_runs_total.labels(self.environment, task, outcome).inc()
            self.task_duration_seconds.labels(self.environment, task).observe(time.monotonic() - started)
            self.push()

    # -- transport -------------------------------------------------------------------------------

    @property
    def grouping_key(self) -> dict[str, str]:
        return {"service": self.service, "environment": self.environment}

    def attach_pushgateway(self, url: str, *, seed: bool = True) -> None:
        """Push to ``url`` from now on, after loading the group's current values (see module doc)."""
        self._pushgateway = url.rstrip("/")
        if seed:
            try:
                self.seed(fetch_group(self._pushgateway, self.grouping_key))
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("could not read pipeline metrics from the Pushgateway (%s); counters restart",
                            type(exc).__name__)

    def push(self) -> bool:
        """Push the registry; a failure is logged and counted (it goes out with the next push that
        works), never raised: monitoring never blocks a deploy, whatever the Pushgateway answers."""
        if not self._pushgateway:
            return False
        try:
            self.pusher(self._pushgateway, job=JOB, grouping_key=self.grouping_key, registry=self.registry,
                        timeout=5)
            return True
        except Exception as exc:
            self.monitoring("pushgateway", "push", "failed")
            log.warning("pushing pipeline metrics failed: %s", type(exc).__name__)
            return False

    def seed(self, families: dict[str, Any]) -> None:
        """Load values read from the Pushgateway's JSON API into this registry."""
        metrics = {m._name: m for m in self._all()}
        for name, family in families.items():
            metric = metrics.get(name.removesuffix("_total")) or metrics.get(name)
            if metric is None or not isinstance(family, dict):
                continue
            for sample in family.get("metrics", []):
                labels = [sample.get("labels", {}).get(n, "") for n in metric._labelnames]
                if "" in labels:
                    continue
                _seed_child(metric, metric.labels(*labels), sample)

    def _all(self) -> list[Any]:
        return [v for v in vars(self).values() if isinstance(v, (Counter, Gauge, Histogram))]


def _gauge_value(gauge: Gauge, *labels: str) -> float:
    return gauge.labels(*labels)._value.get()


def _seed_child(metric: Any, child: Any, sample: dict[str, Any]) -> None:
    # prometheus_client offers no public setter for counters/histograms; the values it keeps are
    # `_value`, `_sum` and per-bucket (non-cumulative) `_buckets`.
    if isinstance(metric, Histogram):
        cumulative = [float(sample["buckets"].get(_bucket_key(b), 0)) for b in metric._upper_bounds[:-1]]
        cumulative.append(float(sample.get("count", 0)))
        previous = 0.0
        for bucket, total in zip(child._buckets, cumulative, strict=False):
            bucket.inc(max(total - previous, 0.0))
            previous = total
        child._sum.inc(float(sample.get("sum", 0)))
    elif isinstance(metric, Counter):
        child.inc(max(float(sample.get("value", 0)), 0.0))
    else:
        child.set(float(sample.get("value", 0)))


def _bucket_key(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(bound)


def fetch_group(url: str, grouping_key: dict[str, str]) -> dict[str, Any]:
    """The metric families of one Pushgateway group, or {} if it does not exist yet."""
    body = httpx.get(f"{url.rstrip('/')}/api/v1/metrics", timeout=5).json()
    for group in body.get("data", []):
        labels = group.get("labels", {})
        if labels.get("job") == JOB and all(labels.get(k) == v for k, v in grouping_key.items()):
            return {k: v for k, v in group.items() if isinstance(v, dict) and "metrics" in v}
    return {}


class _ServedMetrics:
    """A collector over every service's registry in this process, adding the ``service`` label that
    the Pushgateway's grouping key would add, so both transports expose the same series."""

    def __init__(self) -> None:
        self.by_group: dict[tuple[str, str], PipelineMetrics] = {}
        self.port: int | None = None

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for (service, _env), metrics in sorted(self.by_group.items()):
            for family in metrics.registry.collect():
                out = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                out.samples.extend(s._replace(labels={**s.labels, "service": service}) for s in family.samples)
        yield from merged.values()


_served = _ServedMetrics()


def metrics_for(*, service: str, environment: str, pushgateway_url: str | None = None,
                metrics_port: int | None = None) -> PipelineMetrics:
    """The metrics of one release run.

    With ``metrics_port`` the process keeps one instance per service and environment and serves them
    all (a long-lived worker: values stay monotonic in memory). Otherwise every run gets a fresh
    registry seeded from the Pushgateway.
    """
    if metrics_port is None:
        metrics = PipelineMetrics(service=service, environment=environment)
        if pushgateway_url:
            metrics.attach_pushgateway(pushgateway_url)
        return metrics
    if _served.port is None:
        registry = CollectorRegistry()
        registry.register(_served)
        start_http_server(metrics_port, addr="127.0.0.1", registry=registry)
        _served.port = metrics_port
    key = (service, environment)
    if key not in _served.by_group:
        metrics = PipelineMetrics(service=service, environment=environment)
        if pushgateway_url:
            metrics.attach_pushgateway(pushgateway_url)
        _served.by_group[key] = metrics
    return _served.by_group[key]
