"""Replica rounding, image tags and the canary/promotion objects built from the stable Deployment."""

from __future__ import annotations

import pytest

from canaryflow.errors import PlatformError
from canaryflow.kube.workloads import (
    TOTAL_ANNOTATION,
    VERSION_ANNOTATION,
    build_canary,
    deployed_version,
    image_tag,
    pick_container,
    promotion_patch,
    replicas_weight,
    split_replicas,
    with_tag,
)


class TestSplitReplicas:
    @pytest.mark.parametrize("total", range(1, 21))
    def test_invariants_for_every_weight(self, total):
        for weight in range(0, 101):
            stable, canary = split_replicas(total, weight)
            assert stable >= 0 and canary >= 0
            if weight == 0:
                assert (stable, canary) == (total, 0)
            elif weight == 100:
                assert (stable, canary) == (0, total)
            else:
                assert canary >= 1 and stable >= 1
                assert stable + canary == max(total, 2)

    @pytest.mark.parametrize(("total", "weight", "expected"), [
        (10, 10, (9, 1)), (10, 50, (5, 5)), (10, 25, (7, 3)),  # 2.5 rounds half up
        (4, 10, (3, 1)), (4, 50, (2, 2)), (4, 90, (1, 3)), (4, 99, (1, 3)),
        (3, 1, (2, 1)), (3, 50, (1, 2)), (2, 50, (1, 1)), (1, 50, (1, 1)), (1, 100, (0, 1)),
        (100, 33, (67, 33)),
    ])
    def test_examples(self, total, weight, expected):
        assert split_replicas(total, weight) == expected

    def test_monotonic_in_weight(self):
        for total in range(1, 15):
            canaries = [split_replicas(total, w)[1] for w in range(101)]
            assert canaries == sorted(canaries)

    @pytest.mark.parametrize(("total", "weight"), [(0, 10), (3, -1), (3, 101)])
    def test_rejects_nonsense(self, total, weight):
        with pytest.raises(ValueError):
            split_replicas(total, weight)

    def test_replicas_weight(self):
        assert replicas_weight(9, 1) == 10
        assert replicas_weight(3, 0) == 0
        assert replicas_weight(0, 4) == 100
        assert replicas_weight(0, 0) == 0
        assert replicas_weight(2, 1) == 33


class TestImages:
    @pytest.mark.parametrize(("image", "tag"), [
        ("checkout:v1", "v1"), ("registry.example.com:5000/shop/checkout:v1.2", "v1.2"),
        ("registry.example.com:5000/shop/checkout", None), ("checkout", None),
        ("checkout@sha256:abc", None), ("checkout:v1@sha256:abc", None),
    ])
    def test_image_tag(self, image, tag):
        assert image_tag(image) == tag

    @pytest.mark.parametrize(("image", "expected"), [
        ("checkout:v1", "checkout:v2"), ("reg:5000/checkout:v1", "reg:5000/checkout:v2"),
        ("reg:5000/checkout", "reg:5000/checkout:v2"), ("checkout@sha256:abc", "checkout:v2"),
    ])
    def test_with_tag(self, image, expected):
        assert with_tag(image, "v2") == expected


def stable(*, version_in_selector=False, labels_version="v1"):
    selector = {"app": "checkout"}
    template_labels = {"app": "checkout", "track": "stable", "pod-template-hash": "abc"}
    if labels_version:
        template_labels["version"] = labels_version
    if version_in_selector:
        selector["version"] = "v1"
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "checkout", "namespace": "shop", "uid": "u1", "resourceVersion": "42", "generation": 7,
                     "labels": {"app": "checkout"}, "annotations": {"deployment.kubernetes.io/revision": "4"},
                     "managedFields": [{}]},
        "spec": {"replicas": 4, "paused": False, "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": template_labels, "annotations": {"prometheus.io/scrape": "true"}},
                              "spec": {"containers": [{"name": "istio-proxy", "image": "proxyv2:1.22"},
                                                      {"name": "checkout", "image": "reg/checkout:v1",
                                                       "env": [{"name": "A", "value": "1"}]}]}}},
        "status": {"replicas": 4},
    }


class TestBuildCanary:
    def test_copy_with_new_image_and_labels(self):
        s = stable()
        c = build_canary(s, name="checkout-canary", version="v2", image="reg/checkout:v2", container="checkout",
                         replicas=1, total=4)
        assert c["metadata"]["name"] == "checkout-canary" and c["metadata"]["namespace"] == "shop"
        assert set(c["metadata"]) == {"name", "namespace", "labels", "annotations"}  # no uid/rv/revision
        assert c["metadata"]["annotations"][TOTAL_ANNOTATION] == "4"
        assert c["metadata"]["annotations"][VERSION_ANNOTATION] == "v2"
        assert "status" not in c and "paused" not in c["spec"]
        assert c["spec"]["replicas"] == 1
        assert c["spec"]["selector"]["matchLabels"] == {"app": "checkout", "track": "canary"}
        labels = c["spec"]["template"]["metadata"]["labels"]
        assert labels == {"app": "checkout", "track": "canary", "version": "v2"}
        containers = c["spec"]["template"]["spec"]["containers"]
        assert containers[0] == {"name": "istio-proxy", "image": "proxyv2:1.22"}
        assert containers[1] == {"name": "checkout", "image": "reg/checkout:v2", "env": [{"name": "A", "value": "1"}]}
        assert c["spec"]["template"]["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
        assert s["spec"]["template"]["spec"]["containers"][1]["image"] == "reg/checkout:v1"  # stable untouched

    def test_version_in_selector_follows_the_new_version(self):
        c = build_canary(stable(version_in_selector=True), name="c", version="v2", image="i:v2",
                         container="checkout", replicas=1, total=4)
        assert c["spec"]["selector"]["matchLabels"] == {"app": "checkout", "version": "v2", "track": "canary"}


class TestVersionsAndContainers:
    def test_pick_container(self):
        assert pick_container(stable(), None, "checkout")["name"] == "checkout"
        assert pick_container(stable(), None, "payments")["name"] == "istio-proxy"  # first
        assert pick_container(stable(), "istio-proxy", "checkout")["name"] == "istio-proxy"
        with pytest.raises(PlatformError, match='no container "web"'):
            pick_container(stable(), "web", "checkout")

    def test_deployed_version_prefers_label_then_tag(self):
        assert deployed_version(stable(labels_version="v1-label"), None, "checkout") == "v1-label"
        assert deployed_version(stable(labels_version=None), None, "checkout") == "v1"
        # A version label pinned by the selector cannot follow releases: the image tag tells.
        pinned = stable(version_in_selector=True, labels_version="old")
        assert deployed_version(pinned, None, "checkout") == "v1"

    def test_promotion_patch(self):
        patch = promotion_patch(stable(), version="v2", image="reg/checkout:v2", container="checkout")
        assert patch == {"metadata": {"resourceVersion": "42"},
                         "spec": {"template": {"metadata": {"labels": {"version": "v2"}},
                                               "spec": {"containers": [{"name": "checkout",
                                                                        "image": "reg/checkout:v2"}]}}}}
        pinned = promotion_patch(stable(version_in_selector=True), version="v2", image="x:v2", container="checkout")
        assert "metadata" not in pinned["spec"]["template"]
