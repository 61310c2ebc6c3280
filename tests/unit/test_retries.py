from datetime import UTC, datetime, timedelta

import pytest

from canaryflow.errors import ConfigError
from canaryflow.retries import RETRY_TAG, plan_retry
from canaryflow.spec import validate_spec

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def spec(**retry):
    return validate_spec({"service": "checkout", "version": "v2", "retry": retry})


@pytest.mark.parametrize("reason", ["metrics_unavailable", "platform_error"])
def test_transient_reason_gets_the_next_attempt_after_the_backoff(reason):
    plan = plan_retry(spec(backoff_seconds=60), reason=reason, attempt=1, origin="run-1", now=NOW)
    assert plan.attempt == 2
    assert plan.scheduled_time == NOW + timedelta(seconds=60)
    assert plan.idempotency_key == "canary-retry/run-1/2"
    assert plan.tags == [RETRY_TAG, "attempt:2"]


@pytest.mark.parametrize("reason", ["high_error_rate", "high_latency", "smoke_test_failed", "rollout_stuck",
                                    "manual", "interrupted", "insufficient_data"])
def test_reasons_about_the_version_or_a_person_are_not_retried_by_default(reason):
    assert plan_retry(spec(), reason=reason, attempt=1, origin="run-1", now=NOW) is None


def test_backoff_is_exponential_and_capped():
    policy = spec(backoff_seconds=60, backoff_factor=3, max_backoff_seconds=500, max_attempts=10)
    delays = [plan_retry(policy, reason="platform_error", attempt=a, origin="o", now=NOW).scheduled_time - NOW
              for a in (1, 2, 3, 4)]
    assert [d.total_seconds() for d in delays] == [60, 180, 500, 500]


def test_no_attempt_beyond_max_attempts():
    policy = spec(max_attempts=3)
    assert plan_retry(policy, reason="platform_error", attempt=2, origin="o", now=NOW).attempt == 3
    assert plan_retry(policy, reason="platform_error", attempt=3, origin="o", now=NOW) is None


def test_max_attempts_one_means_never_retry():
    assert plan_retry(spec(max_attempts=1), reason="platform_error", attempt=1, origin="o", now=NOW) is None


def test_every_attempt_of_one_release_shares_the_origin_but_not_the_key():
    first = plan_retry(spec(), reason="platform_error", attempt=1, origin="o", now=NOW)
    second = plan_retry(spec(), reason="platform_error", attempt=2, origin="o", now=NOW)
    assert first.origin == second.origin == "o"
    assert first.idempotency_key != second.idempotency_key


def test_insufficient_data_can_be_opted_in():
    policy = spec(on_reasons=["insufficient_data"])
    assert plan_retry(policy, reason="insufficient_data", attempt=1, origin="o", now=NOW).attempt == 2
    assert plan_retry(policy, reason="platform_error", attempt=1, origin="o", now=NOW) is None


@pytest.mark.parametrize("reason", ["high_error_rate", "smoke_test_failed", "rollout_stuck", "nonsense"])
def test_the_spec_refuses_to_retry_a_bad_version(reason):
    with pytest.raises(ConfigError) as caught:
        spec(on_reasons=[reason])
    assert "retry.on_reasons" in caught.value.fields


def test_release_tags_name_the_release_whatever_started_the_run():
    from canaryflow.retries import release_tags

    tags = release_tags(["webhook", "source:github", "env:staging", "service:old", "version:v1"],
                        service="checkout", version="v2", environment="production")
    assert tags == ["canaryflow", "environment:production", "release", "service:checkout", "source:github",
                    "version:v2", "webhook"]
    assert release_tags(tags, service="checkout", version="v2", environment="production") == tags  # idempotent


def test_retry_tags_replace_the_attempt_and_keep_every_other_tag():
    from canaryflow.retries import retry_tags

    previous = ["service:checkout", "attempt:2", "webhook", "attempt:1"]
    assert retry_tags(previous, 3, "manual-retry") == sorted(
        ["service:checkout", "webhook", RETRY_TAG, "attempt:3", "manual-retry"])
    assert retry_tags([], 2) == sorted([RETRY_TAG, "attempt:2"])
    assert retry_tags(["Attempt:x"], 2) == sorted(["Attempt:x", RETRY_TAG, "attempt:2"])  # only our own prefix


def test_a_retry_planned_without_a_clock_is_scheduled_in_utc_after_the_backoff():
    before = datetime.now(UTC)
    plan = plan_retry(spec(backoff_seconds=60), reason="platform_error", attempt=1, origin="run-1")
    assert plan.scheduled_time.utcoffset() == timedelta(0)  # Prefect reads a naive time as local
    assert before + timedelta(seconds=60) <= plan.scheduled_time <= datetime.now(UTC) + timedelta(seconds=60)
