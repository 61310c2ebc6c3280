"""Fixtures for KubernetesPlatform against the Kubernetes API emulator, through the official client.

The platform is built as the flow builds it: ``canaryflow.platforms.create`` with settings pointing
at the emulator's kubeconfig and a validated release spec. Only waits and backoffs are shortened.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from canaryflow.kube.routers import ORIGINAL_SPEC_ANNOTATION
from canaryflow.platforms.kubernetes import KubernetesPlatform
from canaryflow.settings import Settings
from canaryflow.spec import validate_spec
from tests.emulators.kube import KubeEmulator

ROOT = Path(__file__).resolve().parents[3]
RBAC_MANIFEST = ROOT / "deployments" / "kubernetes" / "rbac.yaml"
NS = "shop"
ISTIO = "networking.istio.io/v1beta1"
GATEWAY = "gateway.networking.k8s.io/v1"

#: Fast waits for the emulator (convergence 0.2 s); backoffs tiny but real.
FAST = {"poll_interval": 0.05, "scale_timeout": 10.0, "rollout_timeout": 10.0,
        "retries": 5, "backoff_base": 0.01, "backoff_max": 0.05, "conflict_retries": 8}

ROUTER_TARGETS: dict[str, dict[str, Any]] = {
    "replicas": {"router": "replicas"},
    "istio": {"router": "istio", "virtual_service": "checkout", "host": "checkout"},
    "gateway-api": {"router": "gateway-api", "http_route": "shop"},
}


def stable_deployment(*, replicas: int = 4, image: str = "registry.example.com/checkout:v1",
                      deadline: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "checkout"}},
        "template": {
            "metadata": {"labels": {"app": "checkout", "track": "stable", "version": "v1"}},
            "spec": {"containers": [
                {"name": "checkout", "image": image, "ports": [{"containerPort": 8080}],
                 "env": [{"name": "LOG_LEVEL", "value": "info"}]},
                {"name": "log-shipper", "image": "fluent-bit:3.0"},
            ]},
        },
    }
    if deadline is not None:
        spec["progressDeadlineSeconds"] = deadline
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "checkout", "namespace": NS, "labels": {"app": "checkout"}}, "spec": spec}


def virtual_service() -> dict[str, Any]:
    return {
        "apiVersion": ISTIO, "kind": "VirtualService",
        "metadata": {"name": "checkout", "namespace": NS, "labels": {"team": "shop"}},
        "spec": {
            "hosts": ["checkout", "shop.example.com"],
            "gateways": ["mesh", "shop-gateway"],
            "http": [
                {"name": "admin", "match": [{"uri": {"prefix": "/admin"}}],
                 "route": [{"destination": {"host": "admin", "port": {"number": 80}}}]},
                {"name": "checkout", "timeout": "5s", "retries": {"attempts": 2, "perTryTimeout": "2s"},
                 "route": [{"destination": {"host": "checkout", "subset": "stable", "port": {"number": 8080}},
                            "weight": 100}]},
            ],
        },
    }


def http_route() -> dict[str, Any]:
    return {
        "apiVersion": GATEWAY, "kind": "HTTPRoute",
        "metadata": {"name": "shop", "namespace": NS},
        "spec": {
            "parentRefs": [{"name": "shop-gateway", "namespace": "infra"}],
            "hostnames": ["shop.example.com"],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/checkout"}}],
                 "filters": [{"type": "RequestHeaderModifier",
                              "requestHeaderModifier": {"set": [{"name": "x-shop", "value": "1"}]}}],
                 "backendRefs": [{"name": "checkout", "port": 8080}]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/payments"}}],
                 "backendRefs": [{"name": "payments", "port": 8080}]},
            ],
        },
    }


def spec_for(router: str, *, version: str = "v2", **target: Any):
    return validate_spec({"service": "checkout", "version": version, "namespace": NS, "platform": "kubernetes",
                          "environment": "production",
                          "kubernetes": {**ROUTER_TARGETS[router], "image": "registry.example.com/checkout:$version",
                                         **target}})


def make_platform(kube: KubeEmulator, router: str, *, version: str = "v2",
                  platform_options: dict[str, Any] | None = None, **target: Any) -> KubernetesPlatform:
    settings = Settings(kubeconfig=str(kube.kubeconfig_path), kube_context="emulator")
    return KubernetesPlatform.from_settings(settings, spec_for(router, version=version, **target),
                                            **FAST, **(platform_options or {}))


def seed_all(kube: KubeEmulator, **deployment: Any) -> None:
    kube.seed(stable_deployment(**deployment))
    kube.seed(virtual_service())
    kube.seed(http_route())


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    with KubeEmulator(namespace=NS, role_manifest=RBAC_MANIFEST, convergence_seconds=0.2) as emulator:
        seed_all(emulator)
        yield emulator


@pytest.fixture(params=list(ROUTER_TARGETS))
def router(request: pytest.FixtureRequest) -> str:
    return request.param


# -- reading the emulator's state -------------------------------------------------------------------

def deployment(kube: KubeEmulator, name: str) -> dict[str, Any] | None:
    return kube.get("apps/v1", "deployments", NS, name)


def image_of(obj: dict[str, Any], container: str = "checkout") -> str:
    return next(c["image"] for c in obj["spec"]["template"]["spec"]["containers"] if c["name"] == container)


def routing_spec(kube: KubeEmulator, router: str) -> dict[str, Any] | None:
    if router == "istio":
        return kube.get(ISTIO, "virtualservices", NS, "checkout")
    if router == "gateway-api":
        return kube.get(GATEWAY, "httproutes", NS, "shop")
    return None


def original_routing(router: str) -> dict[str, Any] | None:
    return {"istio": virtual_service, "gateway-api": http_route}.get(router, lambda: None)()


def user_weight(kube: KubeEmulator, router: str) -> int:
    """The canary share users get, read straight from the emulator's objects (not via the platform)."""
    if router == "replicas":
        stable = deployment(kube, "checkout")["spec"]["replicas"]
        canary_obj = deployment(kube, "checkout-canary")
        canary = canary_obj["spec"]["replicas"] if canary_obj else 0
        return round(100 * canary / (stable + canary)) if stable + canary else 0
    obj = routing_spec(kube, router)
    if router == "istio":
        route = obj["spec"]["http"][1]["route"]
        return sum(d.get("weight", 0) for d in route if d["destination"].get("subset") == "canary")
    refs = obj["spec"]["rules"][0]["backendRefs"]
    return sum(r.get("weight", 1) for r in refs if r["name"] == "checkout-canary")


def without_annotation(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    (obj["metadata"].get("annotations") or {}).pop(ORIGINAL_SPEC_ANNOTATION, None)
    return obj


def leased_object(kube: KubeEmulator, router: str) -> dict[str, Any] | None:
    """The object a release's traffic lease sits on: the routing object, or the canary Deployment."""
    return deployment(kube, "checkout-canary") if router == "replicas" else routing_spec(kube, router)
