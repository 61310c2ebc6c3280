"""Settings shared by every release task.

Retries are for transient trouble only (a platform call that timed out or got a 5xx). A FAIL
verdict, a failed smoke test or a stuck rollout are answers, not accidents, and are never retried.
No task caches: their inputs are live clients and the platform's state changes under them.
"""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE

from canaryflow.errors import PlatformError


def only_transient(task: Any, task_run: Any, state: Any) -> bool:
    """``retry_condition_fn``: retry a task only if it failed on a transient platform error."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, PlatformError) and error.transient


PLATFORM_TASK: dict[str, Any] = {
    "cache_policy": NO_CACHE,
    "retries": 3,
    "retry_delay_seconds": [1, 2, 4],
    "retry_condition_fn": only_transient,
    "timeout_seconds": 60,
}

PLAIN_TASK: dict[str, Any] = {"cache_policy": NO_CACHE}

#: Promote and roll back wait for a rollout on Kubernetes (up to the spec's ready timeout): the
#: platform enforces that deadline itself, so the task adds no shorter one of its own.
WAITING_PLATFORM_TASK: dict[str, Any] = {**PLATFORM_TASK, "timeout_seconds": None}
