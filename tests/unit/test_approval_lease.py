"""The approval gate's lease renewal cannot write after the gate ends (``canaryflow.approval``).

Deterministic: the fake platform's ``set_weight`` blocks on an event the test controls, so a
renewal is *in flight* exactly when the gate is left; no sleeps decide the outcome.
"""

from __future__ import annotations

import threading

from canaryflow.approval import weight_held


class HeldPlatform:
    """``set_weight`` announces itself, then waits until the test lets it finish."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, int]] = []
        self.in_flight = threading.Event()
        self.finish = threading.Event()

    def set_weight(self, weight: int, *, lease_seconds: float | None = None) -> None:
        self.writes.append(("renewal started", weight))
        self.in_flight.set()
        assert self.finish.wait(10), "the test never let the renewal finish"
        self.writes.append(("renewal written", weight))


def test_leaving_the_gate_waits_for_the_renewal_in_flight_and_nothing_writes_after():
    platform = HeldPlatform()
    left = threading.Event()
    journal = platform.writes

    def gate() -> None:
        with weight_held(platform, 50, lease_seconds=0.3):
            assert platform.in_flight.wait(10)
        journal.append(("gate ended", 0))
        left.set()

    thread = threading.Thread(target=gate)
    thread.start()
    assert platform.in_flight.wait(10)
    assert not left.wait(0.3), "the gate ended while a renewal was still writing"
    platform.finish.set()
    assert left.wait(10)
    thread.join(10)
    assert journal == [("renewal started", 50), ("renewal written", 50), ("gate ended", 0)]
    renewals = [t for t in threading.enumerate() if t.name == "canary-lease-renewal"]
    assert renewals == []  # the renewal thread is gone: no write can come later


def test_a_failing_renewal_does_not_end_the_gate_early():
    calls = []

    class Refusing:
        def set_weight(self, weight: int, *, lease_seconds: float | None = None) -> None:
            calls.append(weight)
            if len(calls) == 2:
                done.set()
            raise RuntimeError("HTTP 503")

    done = threading.Event()
    with weight_held(Refusing(), 10, lease_seconds=0.3):
        assert done.wait(10)  # renewals go on after a refusal
    count = len(calls)
    assert count >= 2 and [t for t in threading.enumerate() if t.name == "canary-lease-renewal"] == []
