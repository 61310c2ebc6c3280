"""Each traffic router on the emulator: set/get round trips, restore, and optimistic concurrency."""

from __future__ import annotations

import json

import pytest

from canaryflow.kube.client import KubeConflict
from canaryflow.kube.routers import ORIGINAL_SPEC_ANNOTATION

from .conftest import (
    GATEWAY,
    ISTIO,
    NS,
    deployment,
    image_of,
    make_platform,
    original_routing,
    routing_spec,
    user_weight,
)


def test_weights_round_trip_and_restore(kube, router):
    platform = make_platform(kube, router)
    try:
        platform.deploy("v2")
        platform.wait_ready(timeout=10)
        if router == "replicas":
            # The canary's one pod (for smoke tests) already sits behind the shared Service: 1 of 5.
            assert platform.get_weight() == user_weight(kube, router) == 20
        else:
            assert platform.get_weight() == 0 and user_weight(kube, router) == 0
        for weight in (10, 50, 100, 50, 0, 25):
            platform.set_weight(weight)
            assert platform.get_weight() == weight
            if router != "replicas":  # replicas: the share of 4 replicas is as close as whole pods allow
                assert user_weight(kube, router) == weight
        platform.router.restore()
        assert platform.get_weight() == 0 and user_weight(kube, router) == 0
    finally:
        platform.close()


@pytest.mark.parametrize("router_name", ["istio", "gateway-api"])
def test_prepare_records_original_and_restore_puts_it_back_untouched(kube, router_name):
    platform = make_platform(kube, router_name)
    try:
        platform.router.prepare()
        prepared = routing_spec(kube, router_name)
        recorded = json.loads(prepared["metadata"]["annotations"][ORIGINAL_SPEC_ANNOTATION])
        assert recorded == original_routing(router_name)["spec"]
        assert prepared["metadata"].get("labels") == original_routing(router_name)["metadata"].get("labels")

        platform.set_weight(30)
        # A second prepare (a retried deploy, a restarted orchestrator) never records the split state.
        platform.router.prepare()
        again = routing_spec(kube, router_name)
        assert json.loads(again["metadata"]["annotations"][ORIGINAL_SPEC_ANNOTATION]) == recorded

        # A fresh platform (new process) restores from the annotation alone.
        fresh = make_platform(kube, router_name)
        fresh.router.restore()
        fresh.close()
        restored = routing_spec(kube, router_name)
        assert restored["spec"] == original_routing(router_name)["spec"]
        assert ORIGINAL_SPEC_ANNOTATION not in (restored["metadata"].get("annotations") or {})
        platform.router.restore()  # idempotent
        assert routing_spec(kube, router_name)["spec"] == original_routing(router_name)["spec"]
    finally:
        platform.close()


def test_istio_split_leaves_other_routes_and_fields(kube):
    platform = make_platform(kube, "istio")
    try:
        platform.router.prepare()
        platform.set_weight(20)
        vs = routing_spec(kube, "istio")["spec"]
        original = original_routing("istio")["spec"]
        assert vs["hosts"] == original["hosts"] and vs["gateways"] == original["gateways"]
        assert vs["http"][0] == original["http"][0]
        main = vs["http"][1]
        assert main["timeout"] == "5s" and main["retries"] == {"attempts": 2, "perTryTimeout": "2s"}
        assert main["route"] == [
            {"destination": {"host": "checkout", "subset": "stable", "port": {"number": 8080}}, "weight": 80},
            {"destination": {"host": "checkout", "subset": "canary", "port": {"number": 8080}}, "weight": 20},
        ]
    finally:
        platform.close()


def test_gateway_split_leaves_other_rules_and_fields(kube):
    platform = make_platform(kube, "gateway-api")
    try:
        platform.router.prepare()
        platform.set_weight(20)
        spec = routing_spec(kube, "gateway-api")["spec"]
        original = original_routing("gateway-api")["spec"]
        assert spec["parentRefs"] == original["parentRefs"] and spec["hostnames"] == original["hostnames"]
        assert spec["rules"][1] == original["rules"][1]
        rule = spec["rules"][0]
        assert rule["matches"] == original["rules"][0]["matches"] and rule["filters"] == original["rules"][0]["filters"]
        assert rule["backendRefs"] == [{"name": "checkout", "port": 8080, "weight": 80},
                                       {"name": "checkout-canary", "port": 8080, "weight": 20}]
    finally:
        platform.close()


@pytest.mark.parametrize("router_name", ["istio", "gateway-api"])
def test_writes_carry_the_resource_version_read(kube, router_name):
    """A write based on a stale read is refused by the server (409), not silently applied."""
    platform = make_platform(kube, router_name)
    try:
        stale = platform.router.read()
        platform.set_weight(10)  # someone else's write moves the resourceVersion on
        with pytest.raises(KubeConflict):
            platform.router._write(stale, {"spec": {"extra": "lost update"}})
        assert "extra" not in routing_spec(kube, router_name)["spec"]
    finally:
        platform.close()


def test_replicas_router_scales_receiving_side_first(kube):
    platform = make_platform(kube, "replicas")
    try:
        platform.deploy("v2")
        platform.wait_ready(timeout=10)
        kube.clear_audit()
        platform.set_weight(50)  # canary 1 -> 2 first, then stable 4 -> 2
        platform.set_weight(10)  # stable 2 -> 3 first, then canary 2 -> 1
        scales = [(e.name) for e in kube.audit if e.verb == "patch" and e.subresource == "scale"]
        assert scales == ["checkout-canary", "checkout", "checkout", "checkout-canary"]
        assert (deployment(kube, "checkout")["spec"]["replicas"],
                deployment(kube, "checkout-canary")["spec"]["replicas"]) == (3, 1)
        # Every scale-down happened only once the other side was fully available.
        platform.set_weight(100)
        assert deployment(kube, "checkout")["spec"]["replicas"] == 0
        assert deployment(kube, "checkout-canary")["status"]["availableReplicas"] == 4
    finally:
        platform.close()


def test_objects_of_other_routers_stay_untouched(kube, router):
    platform = make_platform(kube, router)
    try:
        platform.deploy("v2")
        platform.set_weight(50)
        if router != "istio":
            assert kube.get(ISTIO, "virtualservices", NS, "checkout")["spec"] == original_routing("istio")["spec"]
        if router != "gateway-api":
            assert kube.get(GATEWAY, "httproutes", NS, "shop")["spec"] == original_routing("gateway-api")["spec"]
        assert image_of(deployment(kube, "checkout")) == "registry.example.com/checkout:v1"  # stable untouched
    finally:
        platform.close()
