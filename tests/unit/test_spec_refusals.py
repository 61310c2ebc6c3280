"""Values the release spec refuses, and the edge values it still takes.

Each refused value would make the judge or the retry logic do something absurd without any error:
a negative error-rate limit fails every canary, a zero error budget for the metric source rolls back
before the first round, equal neighbouring steps repeat a step under a new name, a backoff factor
under 1 shrinks the wait between retries. Every case names the field, as a user would look for it.
"""

from __future__ import annotations

import pytest

from canaryflow.errors import ConfigError
from canaryflow.judge import Reason
from canaryflow.retries import plan_retry
from canaryflow.spec import RETRYABLE_REASONS, validate_spec

BASE = {"service": "checkout", "version": "v2"}

#: Written out, not imported: widening the spec's list must be a deliberate change here too.
SAYS_NOTHING_ABOUT_THE_VERSION = {"metrics_unavailable", "platform_error", "insufficient_data"}


def _refused(**fields) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        validate_spec({**BASE, **fields})
    return caught.value


@pytest.mark.parametrize("fields,named", [
    ({"thresholds": {"max_error_rate": -0.001}}, "thresholds.max_error_rate"),
    ({"thresholds": {"max_error_rate": 1.01}}, "thresholds.max_error_rate"),
    ({"thresholds": {"max_error_rate": float("nan")}}, "thresholds.max_error_rate"),
    ({"thresholds": {"max_p95_latency_ms": 0}}, "thresholds.max_p95_latency_ms"),
    ({"thresholds": {"max_p95_latency_ms": -50}}, "thresholds.max_p95_latency_ms"),
    ({"thresholds": {"max_p95_latency_ms": float("inf")}}, "thresholds.max_p95_latency_ms"),
    ({"steps": [10, 10, 100]}, "steps"),
    ({"steps": [10, 100, 100]}, "steps"),
    ({"steps": [100, 100]}, "steps"),
    ({"steps": [10, 50, 101]}, "steps"),
    ({"max_consecutive_errors": 0}, "max_consecutive_errors"),
    ({"max_consecutive_errors": -1}, "max_consecutive_errors"),
    ({"min_canary_requests": 0}, "min_canary_requests"),
    ({"max_hold_seconds": -1}, "max_hold_seconds"),
    ({"analysis_interval_seconds": 0}, "analysis_interval_seconds"),
    ({"ready_timeout_seconds": 0}, "ready_timeout_seconds"),
    ({"traffic_lease_seconds": 0}, "traffic_lease_seconds"),
    ({"retry": {"backoff_factor": 0.99}}, "retry.backoff_factor"),
    ({"retry": {"backoff_factor": 0}}, "retry.backoff_factor"),
    ({"retry": {"backoff_seconds": -1}}, "retry.backoff_seconds"),
    ({"retry": {"max_backoff_seconds": 0}}, "retry.max_backoff_seconds"),
    ({"retry": {"max_attempts": 0}}, "retry.max_attempts"),
    ({"approval": {"timeout_seconds": 0}}, "approval.timeout_seconds"),
])
def test_nonsense_values_are_refused_and_named(fields, named):
    assert named in _refused(**fields).fields


@pytest.mark.parametrize("fields", [
    {"thresholds": {"max_error_rate": 0}},  # no error at all is tolerated: strict, not absurd
    {"thresholds": {"max_error_rate": 1}},
    {"thresholds": {"max_p95_latency_ms": 0.001}},
    {"steps": [100]},
    {"steps": [99, 100]},
    {"max_consecutive_errors": 1},
    {"min_canary_requests": 1},
    {"max_hold_seconds": 0},
    {"step_wait_seconds": 0},
    {"retry": {"backoff_factor": 1}},  # a constant backoff
    {"retry": {"backoff_seconds": 0}},
    {"retry": {"max_attempts": 1}},
])
def test_the_edge_values_are_still_accepted(fields):
    validate_spec({**BASE, **fields})


@pytest.mark.parametrize("reason", list(Reason), ids=str)
def test_only_reasons_that_say_nothing_about_the_version_can_be_retried(reason):
    if reason.value in SAYS_NOTHING_ABOUT_THE_VERSION:
        spec = validate_spec({**BASE, "retry": {"on_reasons": [reason.value]}})
        assert plan_retry(spec, reason=reason.value, attempt=1, origin="o") is not None
    else:
        refused = _refused(retry={"on_reasons": ["metrics_unavailable", reason.value]})
        assert "retry.on_reasons" in refused.fields
        assert reason.value in str(refused)


@pytest.mark.parametrize("reason", [Reason.HIGH_ERROR_RATE, Reason.HIGH_LATENCY, Reason.THRESHOLD_BREACHED,
                                    Reason.TRAFFIC_MISMATCH, Reason.SMOKE_TEST_FAILED, Reason.ROLLOUT_STUCK],
                         ids=str)
def test_a_bad_version_reason_is_never_retried_whatever_the_spec(reason):
    assert reason.value not in RETRYABLE_REASONS
    spec = validate_spec({**BASE, "retry": {"on_reasons": sorted(SAYS_NOTHING_ABOUT_THE_VERSION)}})
    assert plan_retry(spec, reason=reason.value, attempt=1, origin="o") is None


def test_every_retryable_reason_is_a_reason_the_judge_gives():
    assert set(RETRYABLE_REASONS) == SAYS_NOTHING_ABOUT_THE_VERSION <= {r.value for r in Reason}


def test_every_refusal_is_listed_under_one_heading_a_line_per_field():
    refused = _refused(steps=[10, 50], min_canary_requests=0)
    assert refused.fields == ("steps", "min_canary_requests")
    assert str(refused) == (
        "invalid release spec:\n"
        "  steps: Value error, the last step must be 100 (the canary takes all traffic before promotion)\n"
        "  min_canary_requests: Input should be greater than or equal to 1")


@pytest.mark.parametrize("data", ["steps: [10, 100]", ["checkout", "v2"], None])
def test_a_spec_that_is_not_a_mapping_is_refused_as_a_whole(data):
    with pytest.raises(ConfigError) as caught:
        validate_spec(data)
    assert caught.value.fields == ("<spec>",)
    assert str(caught.value) == ("invalid release spec:\n"
                                 "  <spec>: Input should be a valid dictionary or instance of ReleaseSpec")


def test_retry_delays_double_from_the_backoff_up_to_the_cap():
    retry = validate_spec(BASE).retry
    assert [retry.delay_before(attempt) for attempt in range(1, 9)] == [300, 300, 600, 1200, 2400, 3600, 3600, 3600]


def test_retry_delays_follow_the_spec_backoff_and_factor():
    retry = validate_spec({**BASE, "retry": {"backoff_seconds": 10, "backoff_factor": 3,
                                             "max_backoff_seconds": 100}}).retry
    assert [retry.delay_before(attempt) for attempt in (2, 3, 4, 5)] == [10, 30, 90, 100]
