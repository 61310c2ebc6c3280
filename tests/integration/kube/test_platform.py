"""KubernetesPlatform on the emulator: the release operations the flow calls, faults and RBAC refusals."""

from __future__ import annotations

import time

import pytest
import yaml

from canaryflow.errors import PlatformError, RolloutStuck
from canaryflow.kube.client import KubeForbidden
from canaryflow.platforms import create
from canaryflow.platforms.base import Platform
from canaryflow.settings import Settings
from tests.emulators.kube import KubeEmulator

from .conftest import (
    NS,
    RBAC_MANIFEST,
    deployment,
    image_of,
    make_platform,
    original_routing,
    routing_spec,
    seed_all,
    spec_for,
    user_weight,
    without_annotation,
)


def test_factory_builds_it_from_settings_and_spec(kube):
    settings = Settings(kubeconfig=str(kube.kubeconfig_path), kube_context="emulator")
    platform = create("kubernetes", settings=settings, service="checkout", spec=spec_for("istio"))
    try:
        assert isinstance(platform, Platform) and platform.name == "kubernetes"
        assert platform.stable_version() == "v1"
        assert platform.canary_url() == "http://checkout-canary.shop.svc.cluster.local:8080"
    finally:
        platform.close()


def test_deploy_and_wait_ready(kube, router):
    platform = make_platform(kube, router)
    try:
        platform.deploy("v2")
        platform.wait_ready(timeout=10)
        canary = deployment(kube, "checkout-canary")
        assert image_of(canary) == "registry.example.com/checkout:v2"
        assert image_of(canary, "log-shipper") == "fluent-bit:3.0"  # sidecar kept
        labels = canary["spec"]["template"]["metadata"]["labels"]
        assert labels["version"] == "v2" and labels["track"] == "canary" and labels["app"] == "checkout"
        assert canary["status"]["availableReplicas"] == (1 if router == "replicas" else 4)
        stable = deployment(kube, "checkout")
        assert image_of(stable) == "registry.example.com/checkout:v1" and stable["spec"]["replicas"] == 4
        assert platform.stable_version() == "v1"
        platform.deploy("v2")  # a retried deploy is harmless
        assert (deployment(kube, "checkout-canary")["metadata"]["resourceVersion"]
                == canary["metadata"]["resourceVersion"])
    finally:
        platform.close()


def test_leftover_canary_is_updated_to_the_new_version(kube):
    old = make_platform(kube, "replicas", version="v2")
    old.deploy("v2")
    old.close()
    platform = make_platform(kube, "replicas", version="v3")
    try:
        platform.deploy("v3")
        platform.wait_ready(timeout=10)
        canary = deployment(kube, "checkout-canary")
        assert image_of(canary) == "registry.example.com/checkout:v3"
        assert canary["spec"]["template"]["metadata"]["labels"]["version"] == "v3"
    finally:
        platform.close()


def test_stuck_rollout_raises_rollout_stuck(router):
    with KubeEmulator(namespace=NS, role_manifest=RBAC_MANIFEST, convergence_seconds=0.2) as kube:
        seed_all(kube, deadline=1)
        kube.stuck_images.add("registry.example.com/checkout:v3")
        platform = make_platform(kube, router, version="v3")
        try:
            platform.deploy("v3")
            with pytest.raises(RolloutStuck,
                               match='deployment "checkout-canary" exceeded its progress deadline') as info:
                platform.wait_ready(timeout=20)
            assert info.value.operation == "wait_ready" and not info.value.transient
            platform.rollback()
            assert deployment(kube, "checkout-canary") is None
            assert user_weight(kube, router) == 0
        finally:
            platform.close()


def test_wait_ready_times_out_as_rollout_stuck(kube):
    kube.stuck_images.add("registry.example.com/checkout:v3")
    platform = make_platform(kube, "istio", version="v3")
    try:
        platform.deploy("v3")
        with pytest.raises(RolloutStuck, match="not ready after 0s.*0 of 4 updated replicas are available"):
            platform.wait_ready(timeout=0.3)
    finally:
        platform.close()


def test_wait_ready_without_canary(kube):
    platform = make_platform(kube, "replicas")
    try:
        with pytest.raises(RolloutStuck, match="no canary is deployed"):
            platform.wait_ready(timeout=1)
    finally:
        platform.close()


def test_promote(kube, router):
    platform = make_platform(kube, router)
    try:
        platform.deploy("v2")
        platform.wait_ready(timeout=10)
        for weight in (10, 50, 100):
            platform.set_weight(weight)
        platform.promote()
        stable = deployment(kube, "checkout")
        assert image_of(stable) == "registry.example.com/checkout:v2"
        assert image_of(stable, "log-shipper") == "fluent-bit:3.0"
        assert stable["spec"]["template"]["metadata"]["labels"]["version"] == "v2"
        assert stable["spec"]["template"]["metadata"]["labels"]["track"] == "stable"
        assert stable["spec"]["replicas"] == 4 and stable["status"]["availableReplicas"] == 4
        assert deployment(kube, "checkout-canary") is None
        assert platform.stable_version() == "v2"
        if router != "replicas":
            assert without_annotation(routing_spec(kube, router))["spec"] == original_routing(router)["spec"]
        platform.promote()  # retried after success: nothing left to do
        assert platform.get_weight() == 0
    finally:
        platform.close()


def test_rollback_moves_traffic_to_stable_before_removing_canary(kube, router):
    platform = make_platform(kube, router)
    try:
        platform.deploy("v2")
        platform.wait_ready(timeout=10)
        platform.set_weight(100 if router == "replicas" else 50)
        kube.clear_audit()
        platform.rollback()
        writes = [e for e in kube.audit if e.verb in ("patch", "delete", "create")]
        if router == "replicas":
            # stable 0 -> 4 (waited for), then canary 4 -> 0, then the canary goes
            moves = [(e.verb, e.name, e.subresource) for e in writes if e.subresource == "scale" or e.verb == "delete"]
            assert moves == [("patch", "checkout", "scale"), ("patch", "checkout-canary", "scale"),
                             ("delete", "checkout-canary", "")]
            between = kube.audit[kube.audit.index(writes[0]) + 1:kube.audit.index(writes[1])]
            assert any(e.verb == "get" and e.name == "checkout" for e in between)  # waited for stable
        else:
            kinds = [e.resource for e in writes]
            assert kinds == [{"istio": "virtualservices", "gateway-api": "httproutes"}[router], "deployments"]
            assert writes[-1].verb == "delete" and writes[-1].name == "checkout-canary"
            assert routing_spec(kube, router)["spec"] == original_routing(router)["spec"]
        assert deployment(kube, "checkout-canary") is None
        assert deployment(kube, "checkout")["spec"]["replicas"] == 4
        assert image_of(deployment(kube, "checkout")) == "registry.example.com/checkout:v1"
        kube.clear_audit()
        platform.rollback()  # idempotent: nothing is written the second time
        assert [e for e in kube.audit if e.verb not in ("get", "list") and e.status < 400] == []
    finally:
        platform.close()


def test_rollback_from_a_fresh_process(kube, router):
    """The crash hook builds a new platform: the cluster's state alone is enough to roll back."""
    first = make_platform(kube, router)
    first.deploy("v2")
    first.wait_ready(timeout=10)
    first.set_weight(50)
    first.close()
    second = make_platform(kube, router)
    try:
        second.rollback()
        assert user_weight(kube, router) == 0 and deployment(kube, "checkout-canary") is None
        assert deployment(kube, "checkout")["spec"]["replicas"] == 4
    finally:
        second.close()


def test_interrupted_promotion_is_undone_before_traffic_moves(kube, router):
    platform = make_platform(kube, router)
    try:
        platform.deploy("v2")
        platform.wait_ready(timeout=10)
        platform.set_weight(100)
        kube.faults.add(verb="delete", resource="deployments", name="checkout-canary", status=503, times=None)
        with pytest.raises(PlatformError) as info:
            platform.promote()
        assert info.value.transient and "503" in str(info.value)
        assert platform.stable_version() == "v2"  # the stable Deployment was already changed
        kube.faults.clear()
        kube.clear_audit()
        platform.rollback()
        stable = deployment(kube, "checkout")
        assert image_of(stable) == "registry.example.com/checkout:v1"
        assert image_of(stable, "log-shipper") == "fluent-bit:3.0"
        assert stable["spec"]["template"]["metadata"]["labels"] == {"app": "checkout", "track": "stable",
                                                                    "version": "v1"}
        assert stable["status"]["availableReplicas"] == 4
        assert deployment(kube, "checkout-canary") is None
        writes = [(e.verb, e.resource, e.subresource, e.name) for e in kube.audit if e.verb in ("patch", "delete")]
        assert writes[0] == ("patch", "deployments", "", "checkout")  # the undo comes first
        assert writes[-1] == ("delete", "deployments", "", "checkout-canary")
        assert any(e.verb == "list" and e.resource == "replicasets" for e in kube.audit)
        assert platform.stable_version() == "v1"
    finally:
        platform.close()


def test_conflict_storm_and_server_errors_are_survived(kube, router):
    platform = make_platform(kube, router)
    try:
        written = {"replicas": ("deployments", "checkout-canary"), "istio": ("virtualservices", "checkout"),
                   "gateway-api": ("httproutes", "shop")}[router]
        kube.faults.add(verb="patch", resource=written[0], name=written[1], status=409, times=5)
        kube.faults.add(verb="get", resource="deployments", status=500, times=2)
        kube.faults.add(verb="patch", resource="deployments/scale", status=503, times=2)
        kube.faults.add(verb="create", resource="deployments", status=429, times=1)
        platform.deploy("v2")
        platform.wait_ready(timeout=10)
        platform.set_weight(50)
        assert platform.get_weight() == 50 and user_weight(kube, router) == 50
        statuses = sorted({e.status for e in kube.audit})
        assert 409 in statuses and 500 in statuses and 429 in statuses
        if router == "replicas":
            assert 503 in statuses
    finally:
        platform.close()


def test_persistent_server_errors_end_as_transient_platform_error(kube):
    platform = make_platform(kube, "istio")
    try:
        kube.faults.add(verb="patch", resource="virtualservices", status=503, times=None)
        with pytest.raises(PlatformError) as info:
            platform.set_weight(10)
        assert info.value.transient and info.value.operation == "set_weight"
        assert len([e for e in kube.audit if e.verb == "patch" and e.resource == "virtualservices"]) == 5  # bounded
        kube.faults.clear()
        assert platform.get_weight() == 0
    finally:
        platform.close()


def reduced_role(tmp_path, *, resource: str, verb: str):
    docs = list(yaml.safe_load_all(RBAC_MANIFEST.read_text()))
    for doc in docs:
        if doc and doc.get("kind") == "Role":
            for rule in doc["rules"]:
                if resource in rule["resources"]:
                    rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    path = tmp_path / "reduced-rbac.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


@pytest.mark.parametrize(("router_name", "resource", "message"), [
    ("istio", "virtualservices",
     'deploy: RBAC refused: cannot patch virtualservices.networking.istio.io "checkout" in namespace "shop" — '
     "grant it in the pipeline's Role (deployments/kubernetes/rbac.yaml)"),
    ("gateway-api", "httproutes",
     'deploy: RBAC refused: cannot patch httproutes.gateway.networking.k8s.io "shop" in namespace "shop"'),
])
def test_missing_permission_fails_clearly_and_leaves_traffic_on_stable(tmp_path, router_name, resource, message):
    with KubeEmulator(namespace=NS, role_manifest=reduced_role(tmp_path, resource=resource, verb="patch"),
                      convergence_seconds=0.2) as kube:
        seed_all(kube)
        platform = make_platform(kube, router_name)
        try:
            with pytest.raises(KubeForbidden) as info:
                platform.deploy("v2")
            assert str(info.value).startswith(message)
            assert not info.value.transient
            assert kube.token not in str(info.value)
            assert routing_spec(kube, router_name)["spec"] == original_routing(router_name)["spec"]
            assert deployment(kube, "checkout-canary") is None  # nothing started without its route
            platform.rollback()  # still possible: nothing to undo
            assert user_weight(kube, router_name) == 0
        finally:
            platform.close()


def test_missing_scale_permission_names_the_subresource(tmp_path):
    with KubeEmulator(namespace=NS, role_manifest=reduced_role(tmp_path, resource="deployments/scale", verb="patch"),
                      convergence_seconds=0.2) as kube:
        seed_all(kube)
        platform = make_platform(kube, "replicas")
        try:
            platform.deploy("v2")
            platform.wait_ready(timeout=10)
            with pytest.raises(KubeForbidden, match='set_weight: RBAC refused: cannot patch deployments.apps/scale '
                                                    '"checkout-canary" in namespace "shop"'):
                platform.set_weight(50)
            assert deployment(kube, "checkout")["spec"]["replicas"] == 4  # stable still serves everything it did
            # Rolling back cannot scale either; the canary is deleted all the same, so no user reaches it.
            with pytest.raises(KubeForbidden, match="deployments.apps/scale"):
                platform.rollback()
            assert deployment(kube, "checkout-canary") is None
            assert deployment(kube, "checkout")["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v1")
        finally:
            platform.close()


def test_missing_stable_deployment_is_named(kube):
    platform = make_platform(kube, "replicas", deployment="payments")
    try:
        with pytest.raises(PlatformError, match='stable_version: deployment "payments" not found in namespace "shop"'):
            platform.stable_version()
    finally:
        platform.close()


def test_canary_problem_reports_a_canary_that_stopped_serving(kube, router):
    platform = make_platform(kube, router)
    try:
        assert platform.canary_problem() == 'canary deployment "checkout-canary" is gone'
        platform.deploy("v2")
        platform.wait_ready(timeout=10)
        assert platform.canary_problem() is None
        kube.stuck_images.add("registry.example.com/checkout:v2")  # its pods crash-loop from now on
        deadline = time.monotonic() + 10
        while (problem := platform.canary_problem()) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert problem is not None and problem.startswith(
            'canary deployment "checkout-canary" has no available replica (0 of ')
    finally:
        platform.close()


def test_check_version_refuses_a_version_that_cannot_be_a_label(kube):
    platform = make_platform(kube, "istio")
    try:
        platform.check_version("v2.1.0-rc_1")
        with pytest.raises(PlatformError, match="cannot be a Kubernetes label value") as refused:
            platform.check_version("v" * 64)
        assert refused.value.operation == "check_version" and not refused.value.transient
        assert deployment(kube, "checkout-canary") is None  # a check changes nothing
    finally:
        platform.close()
