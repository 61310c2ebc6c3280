"""Istio: canary weight as VirtualService route weights between the ``stable`` and ``canary`` subsets.

Every HTTP route that sends traffic to the stable subset of the host is split; other routes,
other destinations and every other field stay as they are. A route without a canary destination
gets one (a copy of the stable destination with the canary subset). The subsets are defined by
the user's DestinationRule (e.g. ``track: canary`` for the canary pods).
"""

from __future__ import annotations

import copy
from typing import Any

from canaryflow.kube.client import KubeApi
from canaryflow.kube.routers._recorded import RecordedSpecRouter, check_weight


def _is(destination: dict[str, Any], subset: str, host: str | None) -> bool:
    d = destination.get("destination") or {}
    return d.get("subset") == subset and (host is None or d.get("host") == host)


def split_routes(spec: dict[str, Any], *, stable_subset: str, host: str | None) -> list[int]:
    """Indexes of the ``spec.http`` routes that reach the stable subset (of ``host``, if given)."""
    return [i for i, rule in enumerate(spec.get("http") or [])
            if any(_is(d, stable_subset, host) for d in rule.get("route") or [])]


def set_virtual_service_weight(spec: dict[str, Any], weight: int, *, stable_subset: str = "stable",
                               canary_subset: str = "canary", host: str | None = None) -> dict[str, Any]:
    """A copy of a VirtualService spec with ``weight`` percent to the canary subset in every split route.

    Raises ``LookupError`` when no HTTP route reaches the stable subset.
    """
    check_weight(weight)
    spec = copy.deepcopy(spec)
    indexes = split_routes(spec, stable_subset=stable_subset, host=host)
    if not indexes:
        raise LookupError(f"no http route sends traffic to subset {stable_subset!r}"
                          + (f" of host {host!r}" if host else ""))
    for i in indexes:
        route = spec["http"][i]["route"]
        stable = next(d for d in route if _is(d, stable_subset, host))
        target_host = (stable.get("destination") or {}).get("host")
        canary = next((d for d in route if _is(d, canary_subset, target_host)), None)
        if canary is None:
            canary = copy.deepcopy(stable)
            canary["destination"]["subset"] = canary_subset
            route.insert(route.index(stable) + 1, canary)
        stable["weight"] = 100 - weight
        canary["weight"] = weight
    return spec


def virtual_service_weight(spec: dict[str, Any], *, stable_subset: str = "stable", canary_subset: str = "canary",
                           host: str | None = None) -> int:
    """The canary weight of the first split route (0 when it has no canary destination)."""
    indexes = split_routes(spec, stable_subset=stable_subset, host=host)
    if not indexes:
        raise LookupError(f"no http route sends traffic to subset {stable_subset!r}"
                          + (f" of host {host!r}" if host else ""))
    route = spec["http"][indexes[0]]["route"]
    stable = next(d for d in route if _is(d, stable_subset, host))
    target_host = (stable.get("destination") or {}).get("host")
    canary = next((d for d in route if _is(d, canary_subset, target_host)), None)
    if canary is None:
        return 0
    # Istio: a lone destination without a weight takes everything.
    return int(canary.get("weight", 100 if len(route) == 1 else 0))


class IstioRouter(RecordedSpecRouter):
    name = "istio"
    group = "networking.istio.io"
    version = "v1beta1"
    plural = "virtualservices"
    kind = "virtualservice"

    def __init__(self, *, api: KubeApi, virtual_service: str, host: str | None = None,
                 stable_subset: str = "stable", canary_subset: str = "canary", api_version: str = "v1beta1") -> None:
        super().__init__(api=api, object_name=virtual_service)
        self.host = host
        self.stable_subset = stable_subset
        self.canary_subset = canary_subset
        self.version = api_version

    def apply_weight(self, spec: dict[str, Any], weight: int) -> dict[str, Any]:
        return set_virtual_service_weight(spec, weight, stable_subset=self.stable_subset,
                                          canary_subset=self.canary_subset, host=self.host)

    def read_weight(self, spec: dict[str, Any]) -> int:
        return virtual_service_weight(spec, stable_subset=self.stable_subset, canary_subset=self.canary_subset,
                                      host=self.host)
