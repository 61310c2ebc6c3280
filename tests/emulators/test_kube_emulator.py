"""The Kubernetes API emulator, exercised only through the official client and a kubeconfig file.

These tests pin the behaviour the Kubernetes platform code relies on, so a change to the emulator
that would make platform tests pass for the wrong reason shows up here first.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.emulators.kube import KubeEmulator

pytestmark = pytest.mark.timeout(60)

NS = "shop"
RBAC_MANIFEST = Path(__file__).resolve().parents[2] / "deployments" / "kubernetes" / "rbac.yaml"
SA_USER = "system:serviceaccount:canaryflow:canaryflow-release"


def deployment(
    name: str = "checkout", image: str = "shop/checkout:1.0", replicas: int = 3, **spec: Any
) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "env": [{"name": "MODE", "value": "prod"}],
                            "ports": [{"containerPort": 8080}],
                        },
                        {"name": "istio-proxy", "image": "istio/proxyv2:1.22"},
                    ]
                },
            },
            **spec,
        },
    }


def virtual_service(version: str = "v1beta1") -> dict[str, Any]:
    return {
        "apiVersion": f"networking.istio.io/{version}",
        "kind": "VirtualService",
        "metadata": {"name": "checkout", "namespace": NS},
        "spec": {
            "hosts": ["checkout"],
            "http": [
                {
                    "route": [
                        {"destination": {"host": "checkout", "subset": "stable"}, "weight": 100},
                        {"destination": {"host": "checkout", "subset": "canary"}, "weight": 0},
                    ]
                }
            ],
        },
    }


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll until predicate() is truthy; bounded so a broken controller fails instead of hanging."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def rollout_complete(apps: client.AppsV1Api, name: str) -> bool:
    """`kubectl rollout status` logic, as DESIGN.md section 5 states it."""
    d = apps.read_namespaced_deployment(name, NS)
    st = d.status
    if st is None or d.metadata.generation > (st.observed_generation or 0):
        return False
    for cond in st.conditions or []:
        if cond.type == "Progressing" and cond.reason == "ProgressDeadlineExceeded":
            raise AssertionError("rollout exceeded its progress deadline")
    updated = st.updated_replicas or 0
    return not (updated < d.spec.replicas or (st.replicas or 0) > updated or (st.available_replicas or 0) < updated)


def error_body(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    with KubeEmulator(namespace=NS, convergence_seconds=0.3) as emulator:
        yield emulator


@pytest.fixture
def apps(kube: KubeEmulator) -> client.AppsV1Api:
    return client.AppsV1Api(kube.api_client())


@pytest.fixture
def custom(kube: KubeEmulator) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube.api_client())


# --------------------------------------------------------------------------- connection and auth
def test_kubeconfig_points_the_official_client_at_the_emulator(kube: KubeEmulator) -> None:
    config = yaml.safe_load(kube.kubeconfig_path.read_text())
    assert config["current-context"] == "emulator"
    context = config["contexts"][0]["context"]
    assert context["namespace"] == NS
    assert config["clusters"][0]["cluster"]["server"] == kube.url
    assert config["users"][0]["user"]["token"] == kube.token

    api = kube.api_client()
    assert client.VersionApi(api).get_code().git_version.startswith("v1.")
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert {"apps", "networking.istio.io", "gateway.networking.k8s.io"} <= groups
    names = {r.name for r in client.AppsV1Api(api).get_api_resources().resources}
    assert {"deployments", "deployments/scale", "replicasets"} <= names


def test_requests_without_or_with_a_wrong_token_are_401(kube: KubeEmulator) -> None:
    for token in (None, "wrong"):
        configuration = client.Configuration(host=kube.url)
        if token:
            configuration.api_key = {"BearerToken": token}
            configuration.api_key_prefix = {"BearerToken": "Bearer"}
        with client.ApiClient(configuration) as api, pytest.raises(ApiException) as caught:
            client.AppsV1Api(api).list_namespaced_deployment(NS)
        assert caught.value.status == 401
        assert error_body(caught.value)["reason"] == "Unauthorized"
    assert [e.status for e in kube.audit] == [401, 401]


# ------------------------------------------------------------------------------------ CRUD rules
def test_create_read_replace_delete_with_resource_version_rules(kube: KubeEmulator, apps: client.AppsV1Api) -> None:
    created = apps.create_namespaced_deployment(NS, deployment())
    assert created.metadata.uid and created.metadata.generation == 1
    assert kube.audit[-1].verb == "create" and kube.audit[-1].status == 201

    with pytest.raises(ApiException) as caught:
        apps.create_namespaced_deployment(NS, deployment())
    assert caught.value.status == 409 and error_body(caught.value)["reason"] == "AlreadyExists"

    # The controller writes status while a rollout is in progress, which would (realistically) make
    # the read-modify-write below conflict; let it settle so the only conflict is the one made here.
    wait_for(lambda: rollout_complete(apps, "checkout"), what="the first rollout")
    stale = apps.read_namespaced_deployment("checkout", NS)
    fresh = apps.patch_namespaced_deployment("checkout", NS, {"metadata": {"labels": {"team": "shop"}}})
    assert int(fresh.metadata.resource_version) > int(stale.metadata.resource_version)
    assert fresh.metadata.generation == 1, "a metadata-only change must not bump generation"

    stale.spec.replicas = 7
    with pytest.raises(ApiException) as caught:
        apps.replace_namespaced_deployment("checkout", NS, stale)
    assert caught.value.status == 409
    body = error_body(caught.value)
    assert body["reason"] == "Conflict"
    assert body["message"].startswith('Operation cannot be fulfilled on deployments.apps "checkout"')
    assert kube.get("apps/v1", "deployments", NS, "checkout")["spec"]["replicas"] == 3

    current = apps.read_namespaced_deployment("checkout", NS)
    current.spec.replicas = 7
    replaced = apps.replace_namespaced_deployment("checkout", NS, current)
    assert replaced.spec.replicas == 7 and replaced.metadata.generation == 2

    wait_for(lambda: rollout_complete(apps, "checkout"), what="the controller to settle")
    settled = apps.read_namespaced_deployment("checkout", NS)
    same = apps.patch_namespaced_deployment("checkout", NS, {"spec": {"replicas": 7}})
    assert same.metadata.resource_version == settled.metadata.resource_version, "a no-op write is not a write"

    apps.delete_namespaced_deployment("checkout", NS)
    with pytest.raises(ApiException) as caught:
        apps.read_namespaced_deployment("checkout", NS)
    assert caught.value.status == 404
    assert error_body(caught.value)["message"] == 'deployments.apps "checkout" not found'
    assert kube.list("apps/v1", "replicasets", NS) == [], "deleting a Deployment deletes its ReplicaSets"


# ------------------------------------------------------------------------------------- patches
def test_strategic_merge_patch_merges_containers_by_name_and_keeps_the_sidecar(
    kube: KubeEmulator, apps: client.AppsV1Api
) -> None:
    kube.seed(deployment())
    patched = apps.patch_namespaced_deployment(
        "checkout",
        NS,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "app", "image": "shop/checkout:2.0", "env": [{"name": "FLAG", "value": "on"}]}
                        ]
                    }
                }
            }
        },
    )
    containers = patched.spec.template.spec.containers
    assert [(c.name, c.image) for c in containers] == [
        ("app", "shop/checkout:2.0"),
        ("istio-proxy", "istio/proxyv2:1.22"),
    ]
    assert [e.name for e in containers[0].env] == ["MODE", "FLAG"], "env merges by name"
    assert containers[0].ports[0].container_port == 8080
    assert patched.metadata.generation == 2
    assert kube.audit[-1].content_type == "application/strategic-merge-patch+json"

    removed = apps.patch_namespaced_deployment(
        "checkout", NS, {"spec": {"template": {"spec": {"containers": [{"name": "istio-proxy", "$patch": "delete"}]}}}}
    )
    assert [c.name for c in removed.spec.template.spec.containers] == ["app"]


def test_merge_patch_replaces_lists_and_json_patch_applies_operations(
    kube: KubeEmulator, apps: client.AppsV1Api
) -> None:
    kube.seed(deployment())
    merged = apps.patch_namespaced_deployment(
        "checkout",
        NS,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "shop/checkout:2.0"}]}}}},
        _content_type="application/merge-patch+json",
    )
    assert [c.name for c in merged.spec.template.spec.containers] == ["app"], "RFC 7386 replaces lists whole"

    ops = [
        {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "app"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "shop/checkout:3.0"},
    ]
    patched = apps.patch_namespaced_deployment("checkout", NS, ops)
    assert kube.audit[-1].content_type == "application/json-patch+json"
    assert patched.spec.template.spec.containers[0].image == "shop/checkout:3.0"

    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment("checkout", NS, [{"op": "test", "path": "/spec/replicas", "value": 99}])
    assert caught.value.status == 422

    stale_rv = {"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 9}}
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment("checkout", NS, stale_rv)
    assert caught.value.status == 409
    assert kube.get("apps/v1", "deployments", NS, "checkout")["spec"]["replicas"] == 3


def test_custom_resources_share_storage_across_versions_and_reject_strategic_merge(
    kube: KubeEmulator, custom: client.CustomObjectsApi
) -> None:
    created = custom.create_namespaced_custom_object(
        "networking.istio.io", "v1beta1", NS, "virtualservices", virtual_service()
    )
    assert created["metadata"]["resourceVersion"], "create answers 201 with the stored object"
    as_v1 = custom.get_namespaced_custom_object("networking.istio.io", "v1", NS, "virtualservices", "checkout")
    assert as_v1["apiVersion"] == "networking.istio.io/v1"
    assert as_v1["metadata"]["uid"] == created["metadata"]["uid"]

    weights = {"spec": {"http": [{"route": [
        {"destination": {"host": "checkout", "subset": "stable"}, "weight": 90},
        {"destination": {"host": "checkout", "subset": "canary"}, "weight": 10},
    ]}]}}  # fmt: skip
    patched = custom.patch_namespaced_custom_object(
        "networking.istio.io", "v1", NS, "virtualservices", "checkout", weights
    )
    assert kube.audit[-1].content_type == "application/merge-patch+json"
    assert [r["weight"] for r in patched["spec"]["http"][0]["route"]] == [90, 10]
    assert patched["metadata"]["generation"] == 2
    stored = kube.get("networking.istio.io/v1beta1", "virtualservices", NS, "checkout")
    assert [r["weight"] for r in stored["spec"]["http"][0]["route"]] == [90, 10]

    with pytest.raises(ApiException) as caught:
        custom.patch_namespaced_custom_object(
            "networking.istio.io", "v1", NS, "virtualservices", "checkout", weights,
            _content_type="application/strategic-merge-patch+json",
        )  # fmt: skip
    assert caught.value.status == 415

    ops = [{"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 50}]
    custom.patch_namespaced_custom_object(
        "networking.istio.io", "v1", NS, "virtualservices", "checkout", ops, _content_type="application/json-patch+json"
    )
    assert (
        kube.get("networking.istio.io/v1", "virtualservices", NS, "checkout")["spec"]["http"][0]["route"][1]["weight"]
        == 50
    )

    no_rv = virtual_service()
    with pytest.raises(ApiException) as caught:
        custom.replace_namespaced_custom_object(
            "networking.istio.io", "v1beta1", NS, "virtualservices", "checkout", no_rv
        )
    assert caught.value.status == 422, "custom resources need a resourceVersion on update"
    no_rv["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as caught:
        custom.replace_namespaced_custom_object(
            "networking.istio.io", "v1beta1", NS, "virtualservices", "checkout", no_rv
        )
    assert caught.value.status == 409

    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "checkout"},
        "spec": {"rules": [{"backendRefs": [{"name": "checkout-stable", "port": 80, "weight": 100}]}]},
    }
    custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", NS, "httproutes", route)
    got = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", NS, "httproutes", "checkout")
    assert got["spec"]["rules"][0]["backendRefs"][0]["weight"] == 100
    custom.delete_namespaced_custom_object("gateway.networking.k8s.io", "v1", NS, "httproutes", "checkout")
    assert kube.get("gateway.networking.k8s.io/v1", "httproutes", NS, "checkout") is None


def test_scale_subresource_changes_replicas_and_converges(kube: KubeEmulator, apps: client.AppsV1Api) -> None:
    kube.seed(deployment(replicas=2))
    scale = apps.read_namespaced_deployment_scale("checkout", NS)
    assert scale.spec.replicas == 2 and scale.status.selector == "app=checkout"

    scaled = apps.patch_namespaced_deployment_scale("checkout", NS, {"spec": {"replicas": 5}})
    assert scaled.kind == "Scale" and scaled.spec.replicas == 5
    assert kube.audit[-1].subresource == "scale"
    dep = apps.read_namespaced_deployment("checkout", NS)
    assert dep.spec.replicas == 5 and dep.metadata.generation == 2

    with pytest.raises(ApiException) as caught:
        apps.replace_namespaced_deployment_scale("checkout", NS, scale)  # carries the old resourceVersion
    assert caught.value.status == 409

    wait_for(lambda: rollout_complete(apps, "checkout"), what="scale-up to converge")
    dep = apps.read_namespaced_deployment("checkout", NS)
    assert (dep.status.ready_replicas, dep.status.available_replicas, dep.status.observed_generation) == (5, 5, 2)
    rs = kube.list("apps/v1", "replicasets", NS)
    assert [r["spec"]["replicas"] for r in rs] == [5], "scaling keeps the same ReplicaSet"


# ------------------------------------------------------------------------------------ controller
def test_rollout_creates_revisions_converges_and_rollback_reuses_the_old_replicaset(
    kube: KubeEmulator, apps: client.AppsV1Api
) -> None:
    kube.convergence_seconds = 1.0  # wide enough to observe the in-progress state on a busy machine
    kube.seed(deployment())
    assert rollout_complete(apps, "checkout"), "a seeded Deployment starts rolled out"
    (first,) = apps.list_namespaced_replica_set(NS, label_selector="app=checkout").items
    assert first.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert first.metadata.owner_references[0].kind == "Deployment"
    template_hash = first.metadata.labels["pod-template-hash"]
    assert first.metadata.name == f"checkout-{template_hash}"

    apps.patch_namespaced_deployment(
        "checkout",
        NS,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "shop/checkout:2.0"}]}}}},
    )
    in_progress = wait_for(
        lambda: (d := apps.read_namespaced_deployment("checkout", NS)).status.observed_generation == 2 and d,
        what="observedGeneration",
    )
    assert in_progress.status.updated_replicas == 3
    assert in_progress.status.replicas == 6, "old pods keep serving until the new ones are available"
    assert {c.type: c.reason for c in in_progress.status.conditions}["Progressing"] == "ReplicaSetUpdated"

    wait_for(lambda: rollout_complete(apps, "checkout"), what="rollout to complete")
    kube.convergence_seconds = 0.3
    done = apps.read_namespaced_deployment("checkout", NS)
    assert done.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    assert {c.type: c.reason for c in done.status.conditions} == {
        "Available": "MinimumReplicasAvailable",
        "Progressing": "NewReplicaSetAvailable",
    }
    sets = {r.metadata.name: r for r in apps.list_namespaced_replica_set(NS).items}
    assert sets[first.metadata.name].spec.replicas == 0
    (second,) = [r for name, r in sets.items() if name != first.metadata.name]
    assert second.metadata.annotations["deployment.kubernetes.io/revision"] == "2"

    # Undo as `kubectl rollout undo` does it: copy the previous revision's template, minus the hash label.
    template = apps.api_client.sanitize_for_serialization(first.spec.template)
    del template["metadata"]["labels"]["pod-template-hash"]
    apps.patch_namespaced_deployment("checkout", NS, [{"op": "replace", "path": "/spec/template", "value": template}])
    wait_for(lambda: rollout_complete(apps, "checkout"), what="rollback to complete")
    sets = {r.metadata.name: r for r in apps.list_namespaced_replica_set(NS).items}
    assert len(sets) == 2, "rolling back re-uses the old ReplicaSet"
    reused = sets[first.metadata.name]
    assert reused.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    assert reused.metadata.annotations["deployment.kubernetes.io/revision-history"] == "1"
    assert reused.spec.replicas == 3 and sets[second.metadata.name].spec.replicas == 0
    dep = apps.read_namespaced_deployment("checkout", NS)
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "3"


def test_stuck_image_exceeds_the_progress_deadline_while_old_pods_keep_serving(
    kube: KubeEmulator, apps: client.AppsV1Api
) -> None:
    kube.stuck_images.add("shop/checkout:broken")
    kube.seed(deployment(progressDeadlineSeconds=1))
    apps.patch_namespaced_deployment(
        "checkout",
        NS,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "shop/checkout:broken"}]}}}},
    )

    def exceeded() -> Any:
        d = apps.read_namespaced_deployment("checkout", NS)
        progressing = {c.type: c for c in d.status.conditions or []}.get("Progressing")
        return progressing and progressing.reason == "ProgressDeadlineExceeded" and (d, progressing)

    dep, progressing = wait_for(exceeded, timeout=5, what="ProgressDeadlineExceeded")
    assert progressing.status == "False"
    assert dep.status.updated_replicas == 3
    assert dep.status.available_replicas == 3, "the old ReplicaSet still serves"
    new_rs = next(
        r
        for r in apps.list_namespaced_replica_set(NS).items
        if r.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    )
    assert new_rs.spec.replicas == 3 and not new_rs.status.available_replicas
    with pytest.raises(AssertionError, match="progress deadline"):
        rollout_complete(apps, "checkout")


def test_a_paused_deployment_does_not_roll_out(kube: KubeEmulator, apps: client.AppsV1Api) -> None:
    kube.seed(deployment())
    apps.patch_namespaced_deployment("checkout", NS, {"spec": {"paused": True}})
    apps.patch_namespaced_deployment(
        "checkout",
        NS,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "shop/checkout:2.0"}]}}}},
    )
    dep = wait_for(
        lambda: (d := apps.read_namespaced_deployment("checkout", NS)).status.observed_generation == 3 and d,
        what="the paused Deployment to be observed",
    )
    assert {c.type: c.reason for c in dep.status.conditions}["Progressing"] == "DeploymentPaused"
    assert len(apps.list_namespaced_replica_set(NS).items) == 1

    apps.patch_namespaced_deployment("checkout", NS, {"spec": {"paused": False}})
    wait_for(lambda: len(kube.list("apps/v1", "replicasets", NS)) == 2, what="the rollout to resume")


# ---------------------------------------------------------------------------------------- faults
def test_faults_answer_before_any_state_change(
    kube: KubeEmulator, apps: client.AppsV1Api, custom: client.CustomObjectsApi
) -> None:
    kube.seed(deployment())
    before = kube.get("apps/v1", "deployments", NS, "checkout")
    image_patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "shop/checkout:2.0"}]}}}}

    kube.faults.add(verb="patch", resource="deployments", name="checkout", status=409)
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment("checkout", NS, image_patch)
    assert caught.value.status == 409 and error_body(caught.value)["reason"] == "Conflict"
    after = kube.get("apps/v1", "deployments", NS, "checkout")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/checkout:1.0"

    kube.faults.add(verb="create", resource="virtualservices", status=500)
    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object(
            "networking.istio.io", "v1", NS, "virtualservices", virtual_service("v1")
        )
    assert caught.value.status == 500 and error_body(caught.value)["reason"] == "InternalError"
    assert kube.get("networking.istio.io/v1", "virtualservices", NS, "checkout") is None

    rule = kube.faults.add(resource="deployments/scale", status=429, times=2)
    for _ in range(2):
        with pytest.raises(ApiException) as caught:
            apps.patch_namespaced_deployment_scale("checkout", NS, {"spec": {"replicas": 4}})
        assert caught.value.status == 429 and caught.value.headers["Retry-After"] in ("0", "1")
    assert kube.get("apps/v1", "deployments", NS, "checkout")["spec"]["replicas"] == 3
    assert apps.patch_namespaced_deployment_scale("checkout", NS, {"spec": {"replicas": 4}}).spec.replicas == 4
    assert rule.hits == 2, "a rule stops after `times` hits"

    # A slow-only fault: the client gives up, but the write still lands (as on a real cluster), so
    # callers must re-read rather than assume a timed-out write failed. (PATCH is not retried by urllib3.)
    slow = kube.faults.add(verb="patch", resource="deployments/scale", delay=0.6, status=None)
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        apps.patch_namespaced_deployment_scale("checkout", NS, {"spec": {"replicas": 5}}, _request_timeout=0.1)
    wait_for(lambda: kube.get("apps/v1", "deployments", NS, "checkout")["spec"]["replicas"] == 5, what="the slow write")
    assert slow.hits == 1

    kube.faults.add(verb="patch", status=500, times=None)
    kube.faults.clear()
    assert (
        apps.patch_namespaced_deployment("checkout", NS, image_patch).spec.template.spec.containers[0].image
        == "shop/checkout:2.0"
    )


# ------------------------------------------------------------------------------------------ RBAC
def test_rbac_from_the_role_manifest_denies_with_the_real_message() -> None:
    with KubeEmulator(namespace=NS, role_manifest=RBAC_MANIFEST, convergence_seconds=0.3) as kube:
        assert kube.rbac_rules is not None
        assert any(r.resources == ("deployments/scale",) for r in kube.rbac_rules)
        kube.seed(deployment())
        kube.seed(virtual_service())
        api = kube.api_client()
        apps, core, custom = client.AppsV1Api(api), client.CoreV1Api(api), client.CustomObjectsApi(api)

        assert apps.read_namespaced_deployment("checkout", NS).metadata.name == "checkout"
        assert apps.patch_namespaced_deployment_scale("checkout", NS, {"spec": {"replicas": 4}}).spec.replicas == 4
        assert apps.list_namespaced_replica_set(NS).items
        custom.patch_namespaced_custom_object(
            "networking.istio.io", "v1beta1", NS, "virtualservices", "checkout", {"spec": {"hosts": ["checkout"]}}
        )

        def denied(call: Callable[[], Any]) -> str:
            with pytest.raises(ApiException) as caught:
                call()
            assert caught.value.status == 403 and error_body(caught.value)["reason"] == "Forbidden"
            return error_body(caught.value)["message"]

        current = apps.read_namespaced_deployment("checkout", NS)
        assert denied(lambda: apps.replace_namespaced_deployment("checkout", NS, current)) == (
            f'deployments.apps "checkout" is forbidden: User "{SA_USER}" cannot update resource "deployments" '
            f'in API group "apps" in the namespace "shop"'
        )
        assert denied(lambda: apps.patch_namespaced_deployment_status("checkout", NS, {"status": {}})) == (
            f'deployments.apps "checkout" is forbidden: User "{SA_USER}" cannot patch resource "deployments/status" '
            f'in API group "apps" in the namespace "shop"'
        )
        assert denied(lambda: core.list_namespaced_service(NS)) == (
            f'services is forbidden: User "{SA_USER}" cannot list resource "services" '
            f'in API group "" in the namespace "shop"'
        )
        assert 'in the namespace "payments"' in denied(lambda: apps.read_namespaced_deployment("checkout", "payments"))
        assert "at the cluster scope" in denied(lambda: apps.list_deployment_for_all_namespaces())
        assert denied(lambda: apps.delete_namespaced_replica_set("any", NS)).startswith(
            'replicasets.apps "any" is forbidden'
        )
        assert [e.status for e in kube.audit if e.verb == "update"] == [403]


# ------------------------------------------------------------------------------ selectors, watch
def test_label_and_field_selectors(kube: KubeEmulator, apps: client.AppsV1Api) -> None:
    for name, track in (("checkout", "stable"), ("checkout-canary", "canary"), ("cart", None)):
        d = deployment(name)
        d["metadata"]["labels"] = {"app": "checkout" if name != "cart" else "cart"} | (
            {"track": track} if track else {}
        )
        kube.seed(d)

    def names(**kwargs: str) -> list[str]:
        return sorted(d.metadata.name for d in apps.list_namespaced_deployment(NS, **kwargs).items)

    assert names(label_selector="app=checkout") == ["checkout", "checkout-canary"]
    assert names(label_selector="app==checkout,track!=canary") == ["checkout"]
    assert names(label_selector="track in (canary, stable)") == ["checkout", "checkout-canary"]
    assert names(label_selector="track notin (canary)") == ["cart", "checkout"]
    assert names(label_selector="track") == ["checkout", "checkout-canary"]
    assert names(label_selector="!track") == ["cart"]
    assert names(field_selector="metadata.name=cart") == ["cart"]
    assert names(label_selector="app=checkout", field_selector="metadata.name!=checkout") == ["checkout-canary"]
    with pytest.raises(ApiException) as caught:
        apps.list_namespaced_deployment(NS, field_selector="spec.replicas=3")
    assert caught.value.status == 400


def test_watch_streams_events_from_a_resource_version(kube: KubeEmulator, apps: client.AppsV1Api) -> None:
    kube.seed(deployment("cart"))
    start = apps.list_namespaced_deployment(NS, label_selector="app=checkout").metadata.resource_version
    apps.create_namespaced_deployment(NS, deployment())
    apps.patch_namespaced_deployment("checkout", NS, {"spec": {"replicas": 4}})

    seen: list[tuple[str, int]] = []
    stream = watch.Watch()
    for event in stream.stream(
        apps.list_namespaced_deployment, NS, label_selector="app=checkout", resource_version=start, timeout_seconds=5
    ):
        assert event["object"].metadata.name == "checkout", "the selector filters the stream"
        seen.append((event["type"], event["object"].spec.replicas))
        if (event["type"], event["object"].spec.replicas) == ("MODIFIED", 4):
            stream.stop()
    assert seen[0] == ("ADDED", 3)
    assert seen[-1] == ("MODIFIED", 4)
    assert kube.audit[-1].verb == "watch"


def test_seed_and_get_bypass_the_api_and_fill_metadata(kube: KubeEmulator) -> None:
    stored = kube.seed(copy.deepcopy(virtual_service("v1")))
    meta = stored["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["generation"] == 1 and meta["creationTimestamp"]
    assert kube.get("networking.istio.io/v1beta1", "virtualservices", NS, "checkout")["metadata"]["uid"] == meta["uid"]
    assert kube.get("apps/v1", "deployments", NS, "missing") is None
    assert kube.audit == []
