"""Gateway API: canary weight as ``backendRefs`` weights of an HTTPRoute (gateway.networking.k8s.io/v1).

Every rule with a backendRef to the stable Service is split between it and the canary Service;
other rules, other backends, filters and matches stay as they are. A rule without a canary
backend gets one (a copy of the stable backendRef naming the canary Service).
"""

from __future__ import annotations

import copy
from typing import Any

from canaryflow.kube.client import KubeApi
from canaryflow.kube.routers._recorded import RecordedSpecRouter, check_weight


def _is(ref: dict[str, Any], service: str) -> bool:
    return (ref.get("name") == service and ref.get("kind", "Service") == "Service"
            and ref.get("group", "") in ("", "core"))


def split_rules(spec: dict[str, Any], *, stable_service: str) -> list[int]:
    """Indexes of the ``spec.rules`` with a backendRef to the stable Service."""
    return [i for i, rule in enumerate(spec.get("rules") or [])
            if any(_is(ref, stable_service) for ref in rule.get("backendRefs") or [])]


def set_http_route_weight(spec: dict[str, Any], weight: int, *, stable_service: str,
                          canary_service: str) -> dict[str, Any]:
    """A copy of an HTTPRoute spec with ``weight`` percent to the canary Service in every split rule.

    Raises ``LookupError`` when no rule reaches the stable Service.
    """
    check_weight(weight)
    spec = copy.deepcopy(spec)
    indexes = split_rules(spec, stable_service=stable_service)
    if not indexes:
        raise LookupError(f"no rule has a backendRef to Service {stable_service!r}")
    for i in indexes:
        refs = spec["rules"][i]["backendRefs"]
        stable = next(r for r in refs if _is(r, stable_service))
        canary = next((r for r in refs if _is(r, canary_service)), None)
        if canary is None:
            canary = copy.deepcopy(stable)
            canary["name"] = canary_service
            refs.insert(refs.index(stable) + 1, canary)
        stable["weight"] = 100 - weight
        canary["weight"] = weight
    return spec


def http_route_weight(spec: dict[str, Any], *, stable_service: str, canary_service: str) -> int:
    """The canary's share (percent) of the first split rule; weights default to 1 as in the API."""
    indexes = split_rules(spec, stable_service=stable_service)
    if not indexes:
        raise LookupError(f"no rule has a backendRef to Service {stable_service!r}")
    refs = spec["rules"][indexes[0]]["backendRefs"]
    total = sum(int(r.get("weight", 1)) for r in refs)
    canary = sum(int(r.get("weight", 1)) for r in refs if _is(r, canary_service))
    return 0 if total == 0 else int(100 * canary / total + 0.5)


class GatewayApiRouter(RecordedSpecRouter):
    name = "gateway-api"
    group = "gateway.networking.k8s.io"
    version = "v1"
    plural = "httproutes"
    kind = "httproute"

    def __init__(self, *, api: KubeApi, http_route: str, stable_service: str, canary_service: str) -> None:
        super().__init__(api=api, object_name=http_route)
        self.stable_service = stable_service
        self.canary_service = canary_service

    def apply_weight(self, spec: dict[str, Any], weight: int) -> dict[str, Any]:
        return set_http_route_weight(spec, weight, stable_service=self.stable_service,
                                     canary_service=self.canary_service)

    def read_weight(self, spec: dict[str, Any]) -> int:
        return http_route_weight(spec, stable_service=self.stable_service, canary_service=self.canary_service)
