"""Platform and router factories: kubernetes needs its spec section; local is unchanged."""

from __future__ import annotations

import pytest

from canaryflow.errors import ConfigError
from canaryflow.kube import routers
from canaryflow.kube.client import KubeApi
from canaryflow.kube.workloads import Workloads
from canaryflow.platforms import PLATFORMS, create
from canaryflow.platforms.local import LocalPlatform
from canaryflow.settings import Settings
from canaryflow.spec import validate_spec


def test_known_platforms():
    assert PLATFORMS == ("local", "kubernetes")


def test_local_still_builds_without_a_spec():
    platform = create("local", settings=Settings(), service="checkout")
    assert isinstance(platform, LocalPlatform)
    platform.close()


def test_kubernetes_needs_the_spec_section():
    with pytest.raises(ConfigError) as info:
        create("kubernetes", settings=Settings(), service="checkout")
    assert info.value.fields == ("kubernetes",)
    local_spec = validate_spec({"service": "checkout", "version": "v2"})
    with pytest.raises(ConfigError):
        create("kubernetes", settings=Settings(), service="checkout", spec=local_spec)


def test_kubernetes_with_unreadable_kubeconfig_is_a_config_error(tmp_path):
    spec = validate_spec({"service": "checkout", "version": "v2", "platform": "kubernetes", "kubernetes": {}})
    with pytest.raises(ConfigError, match="cannot load Kubernetes credentials"):
        create("kubernetes", settings=Settings(kubeconfig=str(tmp_path / "missing")), service="checkout", spec=spec)


def test_unknown_platform():
    with pytest.raises(ConfigError) as info:
        create("nomad", settings=Settings(), service="checkout")
    assert info.value.fields == ("platform",)


def test_every_router_satisfies_the_protocol():
    from kubernetes import client

    api = KubeApi(client.ApiClient(client.Configuration()), namespace="shop")
    try:
        made = [
            routers.create("replicas", workloads=Workloads(api, stable="c", canary="c-canary")),
            routers.create("istio", api=api, virtual_service="c"),
            routers.create("gateway-api", api=api, http_route="r", stable_service="c", canary_service="c-canary"),
        ]
        assert [r.name for r in made] == list(routers.ROUTERS)
        assert all(isinstance(r, routers.TrafficRouter) for r in made)
    finally:
        api.close()


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("CANARYFLOW_KUBECONFIG", "/etc/canaryflow/kubeconfig")
    monkeypatch.setenv("CANARYFLOW_KUBE_CONTEXT", "prod")
    monkeypatch.setenv("CANARYFLOW_KUBE_IN_CLUSTER", "true")
    settings = Settings()
    assert (settings.kubeconfig, settings.kube_context, settings.kube_in_cluster) == (
        "/etc/canaryflow/kubeconfig", "prod", True)
    monkeypatch.delenv("CANARYFLOW_KUBECONFIG")
    assert Settings().kubeconfig is None
