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

    @property
    def after_failed_rollback(self) -> str:
        """What happens to users when ``rollback`` itself failed, in one honest sentence for the run
        log ("the traffic lease returns users to stable within the lease"): not every platform has
        a lease, and a person reading the log decides from this whether to act. Read only: a class
        attribute or a property."""

    def stable_version(self) -> str | None:
        """The version serving users now, if any."""

    def check_version(self, version: str) -> None:
        """Raise ``PlatformError`` when ``version`` can never be deployed here (a name the local
        catalogue does not know, an image reference that cannot be built). Preflight: changes nothing,
        so a typo fails the release before any canary exists instead of rolling one back."""

    def deploy(self, version: str) -> None:
        """Start ``version`` as the canary, with no user traffic yet."""

    def wait_ready(self, *, timeout: float) -> None:
        """Block until the canary is ready; raise ``RolloutStuck`` when it cannot get there."""

    def canary_problem(self) -> str | None:
        """Why the deployed canary cannot serve users now (its process exited, no replica is
        available), else None. Asked every analysis round: a dead canary emits no metrics of its
        own, so the judge alone would only see "too few requests" while users get errors."""

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
