"""Replicas: canary weight as the canary Deployment's share of the total replicas.

Both Deployments' pods sit behind the same Service, so each gets traffic in proportion to its
ready replicas (the canary pattern of the Kubernetes documentation). Weights are therefore as
fine as one replica: ``split_replicas`` rounds, and ``get_weight`` returns the weight last set
while the replicas still match it. The receiving side is always scaled up and waited for before
the other is scaled down, so users never meet zero ready replicas. The traffic lease lives on the
canary Deployment, written (guarded by its resourceVersion) before any replica moves.
"""

from __future__ import annotations

from canaryflow.errors import PlatformError
from canaryflow.kube.routers._recorded import check_weight
from canaryflow.kube.routers.base import LeaseStamp
from canaryflow.kube.workloads import WEIGHT_ANNOTATION, Workloads, replicas_weight, split_replicas


class ReplicasRouter:
    name = "replicas"

    def __init__(self, *, workloads: Workloads, total_replicas: int | None = None) -> None:
        self.workloads = workloads
        self.total_replicas = total_replicas

    def prepare(self) -> None:
        """Nothing to record: the stable Deployment's replicas are the total, kept on the canary."""

    def _replicas(self) -> tuple[int, int, str | None]:
        stable = int(self.workloads.get_stable()["spec"].get("replicas", 1))
        canary = self.workloads.find_canary()
        if canary is None:
            return stable, 0, None
        recorded = (canary["metadata"].get("annotations") or {}).get(WEIGHT_ANNOTATION)
        return stable, int(canary["spec"].get("replicas", 1)), recorded

    def set_weight(self, weight: int, *, lease: LeaseStamp | None = None) -> None:
        weight = check_weight(weight)
        if lease is not None:
            if self.workloads.find_canary() is not None:
                self.workloads.stamp_canary(lease)
            else:
                lease({})  # the lease went with the canary: a release that held it must stop here
        total = self.workloads.total(self.total_replicas)
        want_stable, want_canary = split_replicas(total, weight)
        stable, canary, _ = self._replicas()
        w = self.workloads
        if want_canary > 0 and w.find_canary() is None:
            raise PlatformError(f'canary deployment "{w.canary}" does not exist; deploy first',
                                operation=w.api.operation)
        # Receiving side first, waited for until available; only then the other side comes down.
        # Scale-downs are not waited for: they remove capacity nobody is waiting on (and a stuck
        # canary would never report its scale-down as a finished rollout).
        sides = [(w.canary, canary, want_canary), (w.stable, stable, want_stable)]
        for name, current, wanted in sides:
            if wanted > current:
                w.scale_and_wait(name, wanted)
        for name, current, wanted in sides:
            if wanted < current:
                w.scale(name, wanted)
        if w.find_canary() is not None:
            w.set_canary_annotation(WEIGHT_ANNOTATION, str(weight))

    def get_weight(self) -> int:
        stable, canary, recorded = self._replicas()
        if recorded is not None and recorded.isdigit():
            total = self.workloads.total(self.total_replicas)
            if split_replicas(total, int(recorded)) == (stable, canary):
                return int(recorded)
        return replicas_weight(stable, canary)

    def restore(self) -> None:
        """Stable back to the total (waited for), canary to zero."""
        if self.workloads.find_canary() is None:
            total = self.workloads.total(self.total_replicas)
            stable, _, _ = self._replicas()
            if stable != total:
                self.workloads.scale_and_wait(self.workloads.stable, total)
            return
        self.set_weight(0)
