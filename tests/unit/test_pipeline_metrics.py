"""PipelineMetrics without any network: the metric catalogue, seeding from the Pushgateway's JSON,
the decayed deployment frequency and per-task accounting."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry

from canaryflow.pipeline_metrics import PipelineMetrics

ENV = "production"
SERVICE = "checkout"


@pytest.fixture
def metrics() -> PipelineMetrics:
    return PipelineMetrics(service=SERVICE, environment=ENV)


def value(m: PipelineMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def families(m: PipelineMetrics) -> dict[str, object]:
    return {f.name: f for f in m.registry.collect()}


def label_names(m: PipelineMetrics, family: str) -> set[str]:
    """Label names of a family's samples, without the histogram's own ``le``."""
    samples = families(m)[family].samples
    assert samples, f"{family} has no samples"
    return {name for s in samples for name in s.labels} - {"le"}


def bucket_bounds(m: PipelineMetrics, family: str) -> list[float]:
    return sorted(float(s.labels["le"]) for s in families(m)[family].samples if s.name.endswith("_bucket"))


def record_everything(m: PipelineMetrics) -> None:
    m.release_started(now=1_000.0)
    m.traffic(10)
    m.smoke_test(passed=True, duration=12.0)
    m.query("canary_analysis", 0.3, "success")
    m.measurement(metric="error_rate", verdict="PASS", value=0.0005, threshold=0.001)
    m.release_finished(status="rolled_back", duration=130.0, reason="high_error_rate")
    with m.track_task("deploy"):
        pass


# -- the catalogue -------------------------------------------------------------------------------

SEED_CATALOGUE = {
    # family name as exposed -> (type, label names)
    "deployment": ("counter", {"environment", "status"}),
    "deployment_duration_seconds": ("histogram", {"environment"}),
    "deployment_rollback": ("counter", {"environment", "reason"}),
    "deployment_frequency": ("gauge", {"environment"}),
    "canary_traffic_percentage": ("gauge", {"environment", "deployment_id"}),
    "smoke_test": ("counter", {"environment", "result"}),
    "smoke_test_duration_seconds": ("histogram", {"environment"}),
    "prometheus_query": ("counter", {"workflow", "result"}),
    "prometheus_query_duration_seconds": ("histogram", {"workflow"}),
}


@pytest.mark.parametrize("family", sorted(SEED_CATALOGUE))
def test_seed_metric_has_its_exact_type_and_labels(metrics, family):
    record_everything(metrics)
    kind, labels = SEED_CATALOGUE[family]
    assert families(metrics)[family].type == kind
    assert label_names(metrics, family) == labels


def test_seed_metric_sample_names_are_the_catalogue_names(metrics):
    record_everything(metrics)
    names = {s.name for f in metrics.registry.collect() for s in f.samples}
    for expected in ("deployment_total", "deployment_rollback_total", "smoke_test_total", "prometheus_query_total",
                     "deployment_frequency", "canary_traffic_percentage",
                     "deployment_duration_seconds_bucket", "deployment_duration_seconds_count",
                     "deployment_duration_seconds_sum", "smoke_test_duration_seconds_count",
                     "prometheus_query_duration_seconds_count"):
        assert expected in names
    assert not any(n.endswith("_created") for n in names), "the *_created series are disabled"


@pytest.mark.parametrize("family, bounds", [
    ("deployment_duration_seconds", [60, 120, 300, 600, 900, 1200, 1800, 2700, 3600]),
    ("smoke_test_duration_seconds", [10, 20, 30, 60, 120, 180, 300]),
    ("prometheus_query_duration_seconds", [0.1, 0.25, 0.5, 1, 2.5, 5, 10]),
    ("canaryflow_task_duration_seconds", [0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 3600]),
])
def test_histogram_buckets(metrics, family, bounds):
    record_everything(metrics)
    assert bucket_bounds(metrics, family) == [float(b) for b in bounds] + [math.inf]


def test_recorded_values_land_on_the_documented_series(metrics):
    record_everything(metrics)
    assert value(metrics, "deployment_total", environment=ENV, status="rolled_back") == 1
    assert value(metrics, "deployment_rollback_total", environment=ENV, reason="high_error_rate") == 1
    assert value(metrics, "deployment_duration_seconds_sum", environment=ENV) == 130
    assert value(metrics, "deployment_duration_seconds_bucket", environment=ENV, le="120.0") == 0
    assert value(metrics, "deployment_duration_seconds_bucket", environment=ENV, le="300.0") == 1
    assert value(metrics, "canary_traffic_percentage", environment=ENV, deployment_id=SERVICE) == 10
    assert value(metrics, "smoke_test_total", environment=ENV, result="passed") == 1
    assert value(metrics, "smoke_test_duration_seconds_count", environment=ENV) == 1
    assert value(metrics, "prometheus_query_total", workflow="canary_analysis", result="success") == 1
    assert value(metrics, "prometheus_query_duration_seconds_bucket", workflow="canary_analysis", le="0.25") == 0
    assert value(metrics, "prometheus_query_duration_seconds_bucket", workflow="canary_analysis", le="0.5") == 1


def test_task_and_analysis_metrics(metrics):
    record_everything(metrics)
    metrics.measurement(metric="p95_latency", verdict="NO_DATA", value=None, threshold=200)
    assert value(metrics, "canaryflow_task_runs_total", environment=ENV, task="deploy", outcome="success") == 1
    assert value(metrics, "canaryflow_task_duration_seconds_count", environment=ENV, task="deploy") == 1
    assert value(metrics, "canary_analysis_value", environment=ENV, deployment_id=SERVICE,
                 metric="error_rate") == 0.0005
    assert value(metrics, "canary_analysis_threshold", environment=ENV, deployment_id=SERVICE,
                 metric="error_rate") == 0.001
    assert value(metrics, "canary_analysis_measurements_total", environment=ENV, metric="error_rate",
                 verdict="PASS") == 1
    # A measurement without a value records the threshold and the verdict, but no value series.
    assert value(metrics, "canary_analysis_threshold", environment=ENV, deployment_id=SERVICE,
                 metric="p95_latency") == 200
    assert value(metrics, "canary_analysis_measurements_total", environment=ENV, metric="p95_latency",
                 verdict="NO_DATA") == 1
    assert value(metrics, "canary_analysis_value", environment=ENV, deployment_id=SERVICE,
                 metric="p95_latency") is None


def test_label_names_are_limited_to_non_secret_dimensions(metrics):
    record_everything(metrics)
    allowed = {"environment", "status", "reason", "deployment_id", "result", "workflow", "task", "outcome",
               "metric", "verdict", "le"}
    used = {name for f in metrics.registry.collect() for s in f.samples for name in s.labels}
    assert used <= allowed


def test_metrics_use_the_registry_given():
    registry = CollectorRegistry()
    m = PipelineMetrics(service=SERVICE, environment=ENV, registry=registry)
    m.traffic(50)
    assert registry.get_sample_value("canary_traffic_percentage",
                                     {"environment": ENV, "deployment_id": SERVICE}) == 50


# -- seeding from the Pushgateway's /api/v1/metrics group --------------------------------------------

def _labels(**extra: str) -> dict[str, str]:
    return {"environment": ENV, "instance": "", "job": "canaryflow", "service": SERVICE, **extra}


PUSHGATEWAY_GROUP = {
    "deployment_total": {"time_stamp": "2026-01-01T00:00:00Z", "type": "COUNTER", "help": "x", "metrics": [
        {"labels": _labels(status="success"), "value": "4"},
        {"labels": _labels(status="failed"), "value": "0"},
        {"labels": _labels(status="rolled_back"), "value": "2"},
    ]},
    "deployment_rollback_total": {"type": "COUNTER", "help": "x", "metrics": [
        {"labels": _labels(reason="high_error_rate"), "value": "2"},
    ]},
    "deployment_duration_seconds": {"type": "HISTOGRAM", "help": "x", "metrics": [
        {"labels": _labels(), "count": "6", "sum": "1830.5",
         "buckets": {"+Inf": "6", "60": "0", "120": "1", "300": "3", "600": "5", "900": "5", "1200": "5",
                     "1800": "5", "2700": "6", "3600": "6"}},
    ]},
    "prometheus_query_duration_seconds": {"type": "HISTOGRAM", "help": "x", "metrics": [
        {"labels": _labels(workflow="canary_analysis"), "count": "10", "sum": "2.75",
         "buckets": {"+Inf": "10", "0.1": "2", "0.25": "7", "0.5": "9", "1": "9", "2.5": "9", "5": "9",
                     "10": "9"}},
    ]},
    "prometheus_query_total": {"type": "COUNTER", "help": "x", "metrics": [
        {"labels": _labels(workflow="canary_analysis", result="success"), "value": "9"},
        {"labels": _labels(workflow="canary_analysis", result="timeout"), "value": "1"},
    ]},
    "deployment_frequency": {"type": "GAUGE", "help": "x", "metrics": [
        {"labels": _labels(), "value": "2.5"},
    ]},
    "deployment_last_timestamp_seconds": {"type": "GAUGE", "help": "x", "metrics": [
        {"labels": _labels(), "value": "10000"},
    ]},
    "canary_traffic_percentage": {"type": "GAUGE", "help": "x", "metrics": [
        {"labels": _labels(deployment_id=SERVICE), "value": "0"},
    ]},
    # The Pushgateway's own bookkeeping and anything unknown are ignored.
    "push_time_seconds": {"type": "GAUGE", "help": "x", "metrics": [{"labels": _labels(), "value": "1.7e9"}]},
    "someone_elses_metric_total": {"type": "COUNTER", "help": "x", "metrics": [{"labels": _labels(), "value": "5"}]},
}


def test_seed_restores_counters_exactly(metrics):
    metrics.seed(PUSHGATEWAY_GROUP)
    assert value(metrics, "deployment_total", environment=ENV, status="success") == 4
    assert value(metrics, "deployment_total", environment=ENV, status="failed") == 0
    assert value(metrics, "deployment_total", environment=ENV, status="rolled_back") == 2
    assert value(metrics, "deployment_rollback_total", environment=ENV, reason="high_error_rate") == 2
    assert value(metrics, "prometheus_query_total", workflow="canary_analysis", result="success") == 9
    assert value(metrics, "prometheus_query_total", workflow="canary_analysis", result="timeout") == 1


def test_seed_restores_cumulative_histogram_buckets(metrics):
    metrics.seed(PUSHGATEWAY_GROUP)
    expected = {"60.0": 0, "120.0": 1, "300.0": 3, "600.0": 5, "900.0": 5, "1200.0": 5, "1800.0": 5,
                "2700.0": 6, "3600.0": 6, "+Inf": 6}
    for le, cumulative in expected.items():
        assert value(metrics, "deployment_duration_seconds_bucket", environment=ENV, le=le) == cumulative, le
    assert value(metrics, "deployment_duration_seconds_count", environment=ENV) == 6
    assert value(metrics, "deployment_duration_seconds_sum", environment=ENV) == 1830.5
    fractional = {"0.1": 2, "0.25": 7, "0.5": 9, "1.0": 9, "10.0": 9, "+Inf": 10}
    for le, cumulative in fractional.items():
        assert value(metrics, "prometheus_query_duration_seconds_bucket", workflow="canary_analysis",
                     le=le) == cumulative, le
    assert value(metrics, "prometheus_query_duration_seconds_sum", workflow="canary_analysis") == 2.75


def test_seed_restores_gauges(metrics):
    metrics.seed(PUSHGATEWAY_GROUP)
    assert value(metrics, "deployment_frequency", environment=ENV) == 2.5
    assert value(metrics, "deployment_last_timestamp_seconds", environment=ENV) == 10000
    assert value(metrics, "canary_traffic_percentage", environment=ENV, deployment_id=SERVICE) == 0


def test_seed_ignores_unknown_families_and_samples_missing_a_label(metrics):
    group = {
        **PUSHGATEWAY_GROUP,
        "smoke_test_total": {"type": "COUNTER", "help": "x", "metrics": [
            {"labels": {"job": "canaryflow", "result": "passed"}, "value": "3"},  # no environment label
        ]},
        "not_a_family": "garbage",
    }
    metrics.seed(group)
    assert value(metrics, "smoke_test_total", environment=ENV, result="passed") is None
    names = {s.name for f in metrics.registry.collect() for s in f.samples}
    assert "push_time_seconds" not in names and "someone_elses_metric_total" not in names


def test_recording_after_seed_continues_from_the_seeded_values(metrics):
    metrics.seed(PUSHGATEWAY_GROUP)
    metrics.release_finished(status="rolled_back", duration=100.0, reason="high_error_rate")
    metrics.query("canary_analysis", 0.2, "success")
    assert value(metrics, "deployment_total", environment=ENV, status="rolled_back") == 3
    assert value(metrics, "deployment_rollback_total", environment=ENV, reason="high_error_rate") == 3
    assert value(metrics, "deployment_duration_seconds_count", environment=ENV) == 7
    assert value(metrics, "deployment_duration_seconds_bucket", environment=ENV, le="120.0") == 2
    assert value(metrics, "deployment_duration_seconds_sum", environment=ENV) == 1930.5
    assert value(metrics, "prometheus_query_duration_seconds_bucket", workflow="canary_analysis", le="0.25") == 8
    assert value(metrics, "prometheus_query_duration_seconds_count", workflow="canary_analysis") == 11


def test_seeding_twice_would_double_counters(metrics):
    """Seeding adds; it is meant for a fresh registry only (one seed per run)."""
    metrics.seed(PUSHGATEWAY_GROUP)
    metrics.seed(PUSHGATEWAY_GROUP)
    assert value(metrics, "deployment_total", environment=ENV, status="success") == 8
    assert value(metrics, "deployment_frequency", environment=ENV) == 2.5  # gauges are set, not added


# -- deployment frequency ----------------------------------------------------------------------------

def test_first_release_counts_one_deployment_per_hour(metrics):
    metrics.release_started(now=5_000.0)
    assert value(metrics, "deployment_frequency", environment=ENV) == 1.0
    assert value(metrics, "deployment_last_timestamp_seconds", environment=ENV) == 5_000.0


def test_release_started_zeroes_outcome_series_and_traffic(metrics):
    metrics.traffic(50)
    metrics.release_started(now=5_000.0)
    for status in ("success", "failed", "rolled_back"):
        assert value(metrics, "deployment_total", environment=ENV, status=status) == 0
    assert value(metrics, "canary_traffic_percentage", environment=ENV, deployment_id=SERVICE) == 0


@pytest.mark.parametrize("gap, expected", [
    (0.0, 2.0),
    (3600.0, 1.0 + math.exp(-1)),
    (1800.0, 1.0 + math.exp(-0.5)),
    (36_000.0, 1.0 + math.exp(-10)),
])
def test_frequency_decays_with_a_one_hour_time_constant(metrics, gap, expected):
    metrics.release_started(now=10_000.0)
    metrics.release_started(now=10_000.0 + gap)
    assert value(metrics, "deployment_frequency", environment=ENV) == pytest.approx(expected, rel=1e-12)
    assert value(metrics, "deployment_last_timestamp_seconds", environment=ENV) == 10_000.0 + gap


def test_frequency_continues_from_seeded_gauges(metrics):
    metrics.seed(PUSHGATEWAY_GROUP)  # frequency 2.5, last release at t=10000
    metrics.release_started(now=10_000.0 + 1800)
    assert value(metrics, "deployment_frequency", environment=ENV) == pytest.approx(2.5 * math.exp(-0.5) + 1)


def test_three_releases_in_a_row(metrics):
    for t in (0.0, 600.0, 1200.0):
        metrics.release_started(now=100_000.0 + t)
    step = math.exp(-600 / 3600)
    assert value(metrics, "deployment_frequency", environment=ENV) == pytest.approx((1 * step + 1) * step + 1)


# -- track_task ----------------------------------------------------------------------------------------

def test_track_task_counts_success(metrics):
    for _ in range(2):
        with metrics.track_task("smoke_test"):
            pass
    assert value(metrics, "canaryflow_task_runs_total", environment=ENV, task="smoke_test", outcome="success") == 2
    assert value(metrics, "canaryflow_task_runs_total", environment=ENV, task="smoke_test", outcome="failed") is None
    assert value(metrics, "canaryflow_task_duration_seconds_count", environment=ENV, task="smoke_test") == 2


def test_track_task_counts_failure_and_reraises(metrics):
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with metrics.track_task("deploy"):
            raise Boom("platform said no")
    assert value(metrics, "canaryflow_task_runs_total", environment=ENV, task="deploy", outcome="failed") == 1
    assert value(metrics, "canaryflow_task_runs_total", environment=ENV, task="deploy", outcome="success") is None
    assert value(metrics, "canaryflow_task_duration_seconds_count", environment=ENV, task="deploy") == 1


def test_track_task_counts_an_interrupt_as_failed(metrics):
    with pytest.raises(KeyboardInterrupt):
        with metrics.track_task("promote"):
            raise KeyboardInterrupt
    assert value(metrics, "canaryflow_task_runs_total", environment=ENV, task="promote", outcome="failed") == 1


def test_push_without_pushgateway_is_a_no_op(metrics):
    assert metrics.push() is False
    with metrics.track_task("deploy"):  # track_task pushes; without a gateway it must not fail
        pass
