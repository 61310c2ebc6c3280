"""The traffic router interface: how users are split between the stable and canary versions.

One implementation per file. Weights are whole percentages for the canary (0 = all traffic on
stable). ``prepare`` records what ``restore`` puts back, on the cluster itself, so an orchestrator
restarted after a crash can still restore.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

#: Annotation holding the routing object's spec as it was before the release (JSON).
ORIGINAL_SPEC_ANNOTATION = "canaryflow.dev/original-spec"

#: Given the annotations of the object as just (re-)read, the lease annotations to write with the
#: weight; raises (``canaryflow.kube.lease.LeaseLost``) when the write must not happen at all.
LeaseStamp = Callable[[dict[str, str]], dict[str, str]]


@runtime_checkable
class TrafficRouter(Protocol):
    name: str

    def prepare(self) -> None:
        """Record the original routing (once: never over a recording already there), canary at 0%."""

    def set_weight(self, weight: int, *, lease: LeaseStamp | None = None) -> None:
        """Send ``weight`` percent of users to the canary; ``lease`` stamps the object that carries
        the split (routing object or canary Deployment) in a resourceVersion-guarded write."""

    def get_weight(self) -> int:
        """The canary weight applied now."""

    def restore(self) -> None:
        """Put back the routing recorded by ``prepare`` (all traffic on stable). Idempotent."""
