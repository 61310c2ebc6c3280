"""At most one release per service at a time, enforced by a Prefect global concurrency limit.

``strict=True``: without it Prefect silently skips a limit that does not exist, and two
releases of one service would fight over its traffic. The limit is created (limit 1) the first
time a service is released. Its slot is a lease: a killed orchestrator frees it when it expires.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from canaryflow.errors import ReleaseBlocked

LEASE_SECONDS = 60  # the server's minimum; a killed orchestrator's slot frees itself after it
POLL_SECONDS = 2


def lock_name(service: str) -> str:
    return f"canaryflow-release-{service}"


def ensure_limit(name: str) -> None:
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            except ObjectAlreadyExists:  # another release created it a moment ago
                pass


def _wait_until_free(name: str, deadline: float) -> bool:
    """Poll the limit until no slot is taken or the deadline passes.

    Prefect's own ``timeout_seconds``/``max_retries`` are not used: with Prefect 3.9 a timed-out
    acquisition keeps running in the background and spoils the next lease, and ``max_retries``
    reports an existing limit as missing. So we look first and ask only when the slot is free.
    """
    with get_client(sync_client=True) as client:
        while True:
            if client.read_global_concurrency_limit_by_name(name).active_slots == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0.05)))


@contextmanager
def one_release_per_service(service: str, *, timeout: float) -> Iterator[None]:
    name = lock_name(service)
    ensure_limit(name)
    if not _wait_until_free(name, time.monotonic() + timeout):
        raise ReleaseBlocked(f"another release of {service} is in progress (concurrency limit {name}); "
                             f"waited {timeout:g} s, changed nothing")
    # Free a moment ago; if another release took it since, this waits for that one to finish.
    with concurrency(name, occupy=1, strict=True, lease_duration=LEASE_SECONDS):
        get_run_logger().info("holding %s: no other release of %s can start", name, service)
        yield
