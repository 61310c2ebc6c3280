"""DORA metrics of PipelineMetrics: lead time for changes, time to restore, and the zeroed series
that let alerts see a first rollback, smoke failure or query failure as an increase."""

from __future__ import annotations

import pytest

from canaryflow.errors import ConfigError
from canaryflow.pipeline_metrics import LEAD_TIME_BUCKETS, RESTORE_BUCKETS, ROLLBACK_REASONS, PipelineMetrics
from canaryflow.spec import validate_spec

ENV = "production"
LABELS = {"environment": ENV}


@pytest.fixture
def metrics() -> PipelineMetrics:
    return PipelineMetrics(service="checkout", environment=ENV)


def value(m: PipelineMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, {**LABELS, **labels})


def promote(m: PipelineMetrics, *, started: float, finished: float, committed_at: float | None = None) -> None:
    m.release_started(now=started, committed_at=committed_at)
    m.release_finished(status="success", duration=finished - started, now=finished)


def roll_back(m: PipelineMetrics, *, started: float, finished: float, reason: str = "high_error_rate") -> None:
    m.release_started(now=started)
    m.release_finished(status="rolled_back", duration=finished - started, reason=reason, now=finished)


# -- lead time for changes -------------------------------------------------------------------------

def test_lead_time_counts_from_the_commit_when_the_spec_carries_one(metrics):
    promote(metrics, started=10_000, finished=10_600, committed_at=10_000 - 3_000)
    assert value(metrics, "deployment_lead_time_seconds_count") == 1
    assert value(metrics, "deployment_lead_time_seconds_sum") == 3_600
    assert value(metrics, "deployment_lead_time_seconds_bucket", le="1800.0") == 0
    assert value(metrics, "deployment_lead_time_seconds_bucket", le="3600.0") == 1


def test_lead_time_falls_back_to_the_release_start(metrics):
    promote(metrics, started=10_000, finished=10_420)
    assert value(metrics, "deployment_lead_time_seconds_sum") == 420


def test_a_commit_timestamp_after_the_start_never_gives_a_lead_time_shorter_than_the_release(metrics):
    promote(metrics, started=10_000, finished=10_300, committed_at=10_250)  # clock skew on the CI side
    assert value(metrics, "deployment_lead_time_seconds_sum") == 300


def test_lead_time_is_observed_only_at_promotion(metrics):
    roll_back(metrics, started=1_000, finished=1_100)
    metrics.release_finished(status="failed", duration=5, now=1_200)
    assert value(metrics, "deployment_lead_time_seconds_count") == 0


def test_the_commit_timestamp_of_one_release_does_not_leak_into_the_next(metrics):
    promote(metrics, started=10_000, finished=10_100, committed_at=1_000)
    promote(metrics, started=20_000, finished=20_100)
    assert value(metrics, "deployment_lead_time_seconds_sum") == (10_100 - 1_000) + 100


# -- time to restore -------------------------------------------------------------------------------

def test_time_to_restore_runs_from_the_first_rollback_of_a_streak_to_the_next_promotion(metrics):
    roll_back(metrics, started=1_000, finished=1_200)
    assert value(metrics, "deployment_last_failure_timestamp_seconds") == 1_200
    roll_back(metrics, started=2_000, finished=2_300, reason="smoke_test_failed")
    assert value(metrics, "deployment_last_failure_timestamp_seconds") == 1_200  # still the first one
    promote(metrics, started=3_000, finished=4_800)
    assert value(metrics, "deployment_time_to_restore_seconds_count") == 1
    assert value(metrics, "deployment_time_to_restore_seconds_sum") == 4_800 - 1_200
    assert value(metrics, "deployment_last_failure_timestamp_seconds") == 0


def test_a_promotion_without_a_preceding_rollback_restores_nothing(metrics):
    promote(metrics, started=1_000, finished=1_100)
    promote(metrics, started=2_000, finished=2_100)
    assert value(metrics, "deployment_time_to_restore_seconds_count") == 0


def test_a_preflight_failure_does_not_start_the_restore_clock(metrics):
    metrics.release_finished(status="failed", duration=1, now=500)
    assert not value(metrics, "deployment_last_failure_timestamp_seconds")
    promote(metrics, started=1_000, finished=1_100)
    assert value(metrics, "deployment_time_to_restore_seconds_count") == 0


def test_the_restore_clock_spans_runs_through_the_pushgateway_group():
    """A later run starts from what the group holds (the seed), as a flow run does."""
    first = PipelineMetrics(service="checkout", environment=ENV)
    roll_back(first, started=1_000, finished=1_060)
    group = {"deployment_last_failure_timestamp_seconds": {
        "metrics": [{"labels": {"environment": ENV, "service": "checkout", "job": "canaryflow"},
                     "value": str(value(first, "deployment_last_failure_timestamp_seconds"))}]}}
    second = PipelineMetrics(service="checkout", environment=ENV)
    second.seed(group)
    promote(second, started=5_000, finished=5_400)
    assert value(second, "deployment_time_to_restore_seconds_sum") == 5_400 - 1_060


def test_dora_histograms_use_their_buckets(metrics):
    promote(metrics, started=0, finished=100)
    bounds = {name: sorted(float(s.labels["le"]) for f in metrics.registry.collect() if f.name == name
                           for s in f.samples if s.name.endswith("_bucket") and s.labels["le"] != "+Inf")
              for name in ("deployment_lead_time_seconds", "deployment_time_to_restore_seconds")}
    assert bounds == {"deployment_lead_time_seconds": [float(b) for b in LEAD_TIME_BUCKETS],
                      "deployment_time_to_restore_seconds": [float(b) for b in RESTORE_BUCKETS]}


# -- zeroed series ---------------------------------------------------------------------------------

def test_release_start_zeroes_every_rollback_reason_smoke_result_and_dora_series(metrics):
    metrics.release_started(now=1.0)
    for reason in ROLLBACK_REASONS:
        assert value(metrics, "deployment_rollback_total", reason=reason) == 0
    assert {"high_error_rate", "high_latency", "smoke_test_failed", "manual", "alert"} <= set(ROLLBACK_REASONS)
    assert "analysis_passed" not in ROLLBACK_REASONS
    for result in ("passed", "failed"):
        assert value(metrics, "smoke_test_total", result=result) == 0
    assert value(metrics, "deployment_lead_time_seconds_count") == 0
    assert value(metrics, "deployment_time_to_restore_seconds_count") == 0
    assert value(metrics, "deployment_last_failure_timestamp_seconds") == 0


def test_release_start_keeps_a_seeded_failure_timestamp(metrics):
    metrics.seed({"deployment_last_failure_timestamp_seconds": {
        "metrics": [{"labels": {"environment": ENV}, "value": "1234"}]}})
    metrics.release_started(now=2_000)
    assert value(metrics, "deployment_last_failure_timestamp_seconds") == 1234


def test_a_query_zeroes_the_other_results_of_its_workflow(metrics):
    metrics.query("canary_analysis", 0.1, "success")
    get = metrics.registry.get_sample_value
    assert get("prometheus_query_total", {"workflow": "canary_analysis", "result": "success"}) == 1
    assert get("prometheus_query_total", {"workflow": "canary_analysis", "result": "failed"}) == 0
    assert get("prometheus_query_total", {"workflow": "canary_analysis", "result": "timeout"}) == 0


# -- the spec field --------------------------------------------------------------------------------

BASE = {"service": "checkout", "version": "v2"}


def test_spec_commit_timestamp_accepts_iso_with_offset_and_unix_time():
    assert validate_spec({**BASE, "commit_timestamp": "2024-05-01T10:00:00+02:00"}).commit_timestamp.timestamp() \
        == 1714550400
    assert validate_spec({**BASE, "commit_timestamp": 1714550400}).commit_timestamp.timestamp() == 1714550400
    assert validate_spec(BASE).commit_timestamp is None


def test_spec_commit_timestamp_without_a_timezone_is_refused():
    with pytest.raises(ConfigError) as err:
        validate_spec({**BASE, "commit_timestamp": "2024-05-01T10:00:00"})
    assert "commit_timestamp" in err.value.fields
