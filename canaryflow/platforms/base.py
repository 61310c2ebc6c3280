"""The platform interface: where a new version runs and how traffic is split.

Small on purpose (as Flagger's ``TrafficRouter``): the release flow only needs to deploy, wait,
reach the canary for smoke tests, move weight, promote and roll back. Each implementation lives in
its own module; ``canaryflow.platforms.create`` picks one by name and raises on an unknown name.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Platform(Protocol):
    name: str

    def stable_version(self) -> str | None:
        """The version serving users now, if any."""

    def deploy(self, version: str) -> None:
        """Start ``version`` as the canary, with no user traffic yet."""

    def wait_ready(self, *, timeout: float) -> None:
        """Block until the canary is ready; raise ``RolloutStuck`` when it cannot get there."""

    def canary_url(self) -> str:
        """Base URL that reaches the canary directly, bypassing the traffic split (smoke tests)."""

    def set_weight(self, weight: int, *, lease_seconds: float | None = None) -> None:
        """Send ``weight`` percent of user traffic to the canary.

        ``lease_seconds``, where the platform supports it, reverts the weight to 0 unless renewed:
        a crashed orchestrator never leaves traffic split.
        """

    def get_weight(self) -> int:
        """The canary weight the platform applies now."""

    def promote(self) -> None:
        """Make the canary the stable version."""

    def rollback(self) -> None:
        """All traffic to stable first, then remove the canary. Idempotent."""

    def close(self) -> None:
        """Release client resources."""
