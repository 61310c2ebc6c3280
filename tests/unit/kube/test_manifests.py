"""The Kubernetes manifests: the worker references secrets, never holds them, and runs least-privileged."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
WORKER = ROOT / "deployments" / "kubernetes" / "worker.yaml"
SECRETISH = re.compile(r"TOKEN|AUTH|PASSWORD|SECRET|KEY", re.IGNORECASE)


def docs():
    return {d["kind"]: d for d in yaml.safe_load_all(WORKER.read_text()) if d}


def test_worker_deployment_runs_a_kubernetes_pool_worker_as_its_service_account():
    manifests = docs()
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == manifests["ServiceAccount"]["metadata"]["name"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[:3] == ["prefect", "worker", "start"] and args[args.index("--type") + 1] == "kubernetes"
    settings = manifests["ConfigMap"]["data"]
    assert settings["PREFECT_API_URL"].startswith("http")
    assert settings["CANARYFLOW_KUBE_IN_CLUSTER"] == "true"
    assert {"configMapRef": {"name": manifests["ConfigMap"]["metadata"]["name"]}} in container["envFrom"]


def test_no_secret_is_inline():
    manifests = docs()
    assert "Secret" not in manifests
    assert not [k for k in manifests["ConfigMap"]["data"] if SECRETISH.search(k)]
    env = manifests["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    for var in env:
        if SECRETISH.search(var["name"]):
            assert "value" not in var and "secretKeyRef" in var["valueFrom"], var["name"]


def test_worker_role_is_namespaced_and_without_wildcards():
    manifests = docs()
    role = manifests["Role"]
    assert role["metadata"]["namespace"] == manifests["Deployment"]["metadata"]["namespace"]
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        assert "secrets" not in rule["resources"]
    binding = manifests["RoleBinding"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == manifests["ServiceAccount"]["metadata"]["name"]
