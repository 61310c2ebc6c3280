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
    dies, the renewals stop and the lease still protects users.

    No renewal may write after the gate ends: the flow moves the weight to 100 % (or rolls back)
    right after, and a late ``set_weight`` would undo that. So each renewal runs under a lock and
    re-checks ``stop`` inside it, and leaving the gate sets ``stop``, then takes the lock (waiting
    for a call in flight, however long the platform client's own timeout) and joins the thread
    without a timeout: when this returns, the thread has ended and nothing can write any more.
    """
    stop = threading.Event()
    writing = threading.Lock()

    def renew() -> None:
        while not stop.wait(max(lease_seconds / 3, 0.5)):
            with writing:
                if stop.is_set():
                    return
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
        with writing:  # a renewal in flight finishes here; none starts after
            pass
        thread.join()
