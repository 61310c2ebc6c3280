"""When an aborted canary is tried again, and under which idempotency key.

Prefect's task retries sleep inside the process; a canary aborted because Prometheus was down
should instead come back minutes later as a new *scheduled* run of the same deployment, visible
in the UI, surviving a worker restart. This module only decides; ``tasks.retry`` schedules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from canaryflow.spec import ReleaseSpec

RETRY_TAG = "canary-retry"


@dataclass(frozen=True)
class RetryPlan:
    attempt: int  # the attempt the scheduled run will be (2 = first retry)
    scheduled_time: datetime
    idempotency_key: str
    origin: str  # flow run id of the first attempt: every retry of one release shares it

    @property
    def tags(self) -> list[str]:
        return [RETRY_TAG, f"attempt:{self.attempt}"]


#: The prefixes of the tags that say which release a run is, whatever started it.
RELEASE_TAG_PREFIXES = ("service:", "version:", "environment:")


def release_tags(previous: list[str], *, service: str, version: str, environment: str) -> list[str]:
    """The run's tags with ``service:``, ``version:`` and ``environment:`` set to this release's (a
    CLI run, a deployment run, a webhook's or a retry's: the UI filters them all alike), and the
    older ``env:`` spelling dropped."""
    kept = {t for t in previous if not t.startswith((*RELEASE_TAG_PREFIXES, "env:"))}
    return sorted(kept | {"canaryflow", "release", f"service:{service}", f"version:{version}",
                          f"environment:{environment}"})


def retry_tags(previous: list[str], attempt: int, *extra: str) -> list[str]:
    """The previous run's tags, its ``attempt:`` tag replaced by this one's, plus ``canary-retry``."""
    kept = {t for t in previous if not t.startswith("attempt:")}
    return sorted(kept | {RETRY_TAG, f"attempt:{attempt}", *extra})


def plan_retry(spec: ReleaseSpec, *, reason: str, attempt: int, origin: str,
               now: datetime | None = None) -> RetryPlan | None:
    """The next attempt after ``attempt`` aborted with ``reason``, or None when there is none.

    None for a reason about the version itself (only ``spec.retry.on_reasons`` qualify, and the
    spec refuses bad-version reasons there) and once ``max_attempts`` is reached. The idempotency
    key is per origin and attempt, so a flow that schedules twice still gets one run.
    """
    if reason not in spec.retry.on_reasons or attempt >= spec.retry.max_attempts:
        return None
    next_attempt = attempt + 1
    when = (now or datetime.now(UTC)) + timedelta(seconds=spec.retry.delay_before(next_attempt))
    return RetryPlan(attempt=next_attempt, scheduled_time=when,
                     idempotency_key=f"{RETRY_TAG}/{origin}/{next_attempt}", origin=origin)
