"""VirtualService and HTTPRoute weight edits: only the split moves, every other field stays."""

from __future__ import annotations

import copy

import pytest

from canaryflow.errors import ConfigError
from canaryflow.kube import routers
from canaryflow.kube.routers._recorded import check_weight, merge_patch_between
from canaryflow.kube.routers.gateway_api import http_route_weight, set_http_route_weight
from canaryflow.kube.routers.istio import set_virtual_service_weight, virtual_service_weight


def merge(target, patch):
    """RFC 7386 apply, to check merge_patch_between round-trips."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge(result.get(k), v)
    return result


VS = {
    "hosts": ["checkout.shop.svc.cluster.local", "shop.example.com"],
    "gateways": ["mesh", "shop-gw"],
    "http": [
        {"name": "admin", "match": [{"uri": {"prefix": "/admin"}}],
         "route": [{"destination": {"host": "admin", "port": {"number": 80}}}]},
        {"name": "main", "retries": {"attempts": 3}, "timeout": "5s",
         "route": [{"destination": {"host": "checkout", "subset": "stable", "port": {"number": 8080}}, "weight": 100,
                    "headers": {"request": {"set": {"x-track": "stable"}}}}]},
        {"name": "other-service",
         "route": [{"destination": {"host": "payments", "subset": "stable"}}]},
    ],
    "tcp": [{"route": [{"destination": {"host": "checkout", "subset": "stable"}}]}],
}


class TestVirtualService:
    def test_adds_canary_destination_and_keeps_everything_else(self):
        out = set_virtual_service_weight(VS, 10, host="checkout")
        assert out["http"][0] == VS["http"][0]
        assert out["http"][2] == VS["http"][2]
        assert out["tcp"] == VS["tcp"] and out["hosts"] == VS["hosts"] and out["gateways"] == VS["gateways"]
        main = out["http"][1]
        assert main["retries"] == {"attempts": 3} and main["timeout"] == "5s"
        stable, canary = main["route"]
        assert stable["weight"] == 90 and stable["destination"]["subset"] == "stable"
        assert canary["weight"] == 10
        assert canary["destination"] == {"host": "checkout", "subset": "canary", "port": {"number": 8080}}
        assert VS["http"][1]["route"][0]["weight"] == 100 and len(VS["http"][1]["route"]) == 1  # input untouched
        assert virtual_service_weight(out, host="checkout") == 10

    def test_round_trip_every_weight(self):
        spec = set_virtual_service_weight(VS, 0, host="checkout")
        for weight in (0, 1, 10, 50, 99, 100, 0):
            spec = set_virtual_service_weight(spec, weight, host="checkout")
            assert virtual_service_weight(spec, host="checkout") == weight
            assert len(spec["http"][1]["route"]) == 2  # the canary destination is reused, never duplicated

    def test_without_host_splits_every_route_to_the_stable_subset(self):
        out = set_virtual_service_weight(VS, 30)
        assert [d["weight"] for d in out["http"][1]["route"]] == [70, 30]
        assert [d["weight"] for d in out["http"][2]["route"]] == [70, 30]
        assert out["http"][2]["route"][1]["destination"] == {"host": "payments", "subset": "canary"}

    def test_custom_subset_names(self):
        vs = {"http": [{"route": [{"destination": {"host": "c", "subset": "primary"}, "weight": 80},
                                  {"destination": {"host": "c", "subset": "next"}, "weight": 20}]}]}
        assert virtual_service_weight(vs, stable_subset="primary", canary_subset="next") == 20
        out = set_virtual_service_weight(vs, 5, stable_subset="primary", canary_subset="next")
        assert [d["weight"] for d in out["http"][0]["route"]] == [95, 5]

    def test_no_route_to_stable(self):
        with pytest.raises(LookupError, match="subset 'stable' of host 'nothing'"):
            set_virtual_service_weight(VS, 10, host="nothing")
        with pytest.raises(LookupError):
            virtual_service_weight({"hosts": ["x"]})

    def test_lone_destination_without_weight(self):
        assert virtual_service_weight({"http": [{"route": [{"destination": {"host": "c", "subset": "stable"}}]}]}) == 0

    def test_merge_patch_applies_to_the_wanted_spec(self):
        wanted = set_virtual_service_weight(VS, 25, host="checkout")
        assert merge(VS, merge_patch_between(VS, wanted)) == wanted
        assert merge_patch_between(VS, copy.deepcopy(VS)) == {}
        assert set(merge_patch_between(VS, wanted)) == {"http"}


ROUTE = {
    "parentRefs": [{"name": "shop-gw", "namespace": "infra"}],
    "hostnames": ["shop.example.com"],
    "rules": [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/api/checkout"}}],
         "filters": [{"type": "RequestHeaderModifier",
                      "requestHeaderModifier": {"set": [{"name": "x", "value": "1"}]}}],
         "backendRefs": [{"name": "checkout", "port": 8080}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/api/payments"}}],
         "backendRefs": [{"name": "payments", "port": 8080}]},
    ],
}


class TestHttpRoute:
    def test_adds_canary_backend_and_keeps_everything_else(self):
        out = set_http_route_weight(ROUTE, 10, stable_service="checkout", canary_service="checkout-canary")
        assert out["parentRefs"] == ROUTE["parentRefs"] and out["hostnames"] == ROUTE["hostnames"]
        assert out["rules"][1] == ROUTE["rules"][1]
        rule = out["rules"][0]
        assert rule["matches"] == ROUTE["rules"][0]["matches"] and rule["filters"] == ROUTE["rules"][0]["filters"]
        assert rule["backendRefs"] == [{"name": "checkout", "port": 8080, "weight": 90},
                                       {"name": "checkout-canary", "port": 8080, "weight": 10}]
        assert http_route_weight(out, stable_service="checkout", canary_service="checkout-canary") == 10
        assert "weight" not in ROUTE["rules"][0]["backendRefs"][0]

    def test_round_trip(self):
        spec = ROUTE
        for weight in (0, 5, 50, 100, 0):
            spec = set_http_route_weight(spec, weight, stable_service="checkout", canary_service="checkout-canary")
            assert http_route_weight(spec, stable_service="checkout", canary_service="checkout-canary") == weight
            assert len(spec["rules"][0]["backendRefs"]) == 2

    def test_default_weights_are_one(self):
        spec = {"rules": [{"backendRefs": [{"name": "checkout"}, {"name": "checkout-canary"}]}]}
        assert http_route_weight(spec, stable_service="checkout", canary_service="checkout-canary") == 50
        assert http_route_weight(ROUTE, stable_service="checkout", canary_service="checkout-canary") == 0

    def test_non_service_backends_are_not_matched(self):
        spec = {"rules": [{"backendRefs": [{"name": "checkout", "kind": "ServiceImport",
                                            "group": "multicluster.x-k8s.io"}]}]}
        with pytest.raises(LookupError, match="Service 'checkout'"):
            set_http_route_weight(spec, 10, stable_service="checkout", canary_service="checkout-canary")


def test_check_weight():
    assert check_weight(0) == 0 and check_weight(100) == 100
    for bad in (-1, 101, 10.5, True, "10"):
        with pytest.raises(ValueError):
            check_weight(bad)


def test_unknown_router_names_the_field():
    with pytest.raises(ConfigError) as info:
        routers.create("linkerd")
    assert info.value.fields == ("kubernetes.router",)
    assert "replicas, istio, gateway-api" in str(info.value)
