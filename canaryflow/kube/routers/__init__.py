"""Traffic routers by name. ``create`` raises ``ConfigError`` on a name it does not know."""

from __future__ import annotations

from typing import Any

from canaryflow.errors import ConfigError
from canaryflow.kube.routers.base import ORIGINAL_SPEC_ANNOTATION, TrafficRouter

__all__ = ["ROUTERS", "ORIGINAL_SPEC_ANNOTATION", "TrafficRouter", "create"]

ROUTERS = ("replicas", "istio", "gateway-api")


def create(name: str, **options: Any) -> TrafficRouter:
    """Build router ``name`` with the keyword ``options`` its constructor takes."""
    if name == "replicas":
        from canaryflow.kube.routers.replicas import ReplicasRouter

        return ReplicasRouter(**options)
    if name == "istio":
        from canaryflow.kube.routers.istio import IstioRouter

        return IstioRouter(**options)
    if name == "gateway-api":
        from canaryflow.kube.routers.gateway_api import GatewayApiRouter

        return GatewayApiRouter(**options)
    raise ConfigError(f"unknown traffic router {name!r}; known: {', '.join(ROUTERS)}", fields=("kubernetes.router",))
