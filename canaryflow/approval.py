"""The approval gate's answer, and keeping the canary's traffic while a person decides.

Prefect shows ``Approval`` as a form when the run is paused (UI) and ``canaryflow approve`` /
``canaryflow reject`` send the same input from a terminal.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.input import RunInput
from pydantic import Field

from canaryflow.platforms.base import Platform


class Approval(RunInput):
    """Promote to full traffic? A reason is kept in the run log and the summary."""

    approved: bool = Field(description="true: go on to the last step; false: roll back (reason manual)")
    reason: str = Field(default="", max_length=500, description="Why (shown in the run's summary)")
    by: str = Field(default="", max_length=100, description="Who decided")


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
