"""Keeping the canary's traffic while a person decides at the approval gate (``tasks.approval``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from canaryflow.platforms.base import Platform


@contextmanager
def weight_held(platform: Platform, weight: int, *, lease_seconds: float) -> Iterator[None]:
    """Renew the traffic lease in the background while the flow is blocked (paused for approval):
    without it the lease would lapse and send users back to stable mid-gate. If this process
    dies, the renewals stop and the lease still protects users."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(max(lease_seconds / 3, 0.5)):
            try:
                platform.set_weight(weight, lease_seconds=lease_seconds)
            except Exception:  # the lease is the safety net; a missed renewal only shortens it
                continue

    thread = threading.Thread(target=renew, name="canary-lease-renewal", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
