"""deployments/kubernetes/rbac.yaml is exactly what the platform needs: every call a release makes is
allowed, and every verb the Role grants is used by some release path (least privilege)."""

from __future__ import annotations

import pytest

from canaryflow.errors import PlatformError
from canaryflow.kube.client import KubeApi
from canaryflow.kube.lease import Holder
from canaryflow.reconcile import Liveness, Reconciler
from tests.emulators.kube import KubeEmulator

from .conftest import NS, RBAC_MANIFEST, deployment, make_platform, seed_all, user_weight


def release(kube: KubeEmulator, router: str, version: str, *, outcome: str) -> None:
    platform = make_platform(kube, router, version=version)
    try:
        assert platform.stable_version() is not None
        platform.deploy(version)
        platform.wait_ready(timeout=10)
        for weight in (10, 50, 100):
            platform.set_weight(weight)
            assert platform.get_weight() == weight
            if outcome == "rollback" and weight == 50:
                platform.rollback()
                return
        if outcome == "interrupted":
            kube.faults.add(verb="delete", resource="deployments", name="checkout-canary", status=500, times=None)
            with pytest.raises(PlatformError):
                platform.promote()
            kube.faults.clear()
            platform.rollback()
            return
        platform.promote()
    finally:
        platform.close()


class Dead:
    def liveness(self, run_id: str) -> tuple[Liveness, str]:
        return Liveness.DEAD, "Crashed"


def crashed(kube: KubeEmulator, router: str, version: str) -> None:
    """A release dies at 50 % with a 1-second lease; canary-reconcile (same Role) restores stable."""
    platform = make_platform(kube, router, version=version,
                             platform_options={"holder": Holder("5f0c6a1e-0d55-4c3b-9f61-0e7a3b8d2c44", "w:1")})
    platform.deploy(version)
    platform.wait_ready(timeout=10)
    platform.set_weight(50, lease_seconds=0.001)
    platform.close()
    client = kube.api_client()
    try:
        report = Reconciler(Dead()).run([KubeApi(client, namespace=NS, backoff_base=0.01)])
    finally:
        client.close()
    assert [o.restored for o in report.outcomes] == [True], [o.line() for o in report.outcomes]
    assert user_weight(kube, router) == 0 and deployment(kube, "checkout-canary") is None


def test_release_paths_use_exactly_the_role():
    with KubeEmulator(namespace=NS, role_manifest=RBAC_MANIFEST, convergence_seconds=0.1) as kube:
        seed_all(kube)
        versions = iter(f"v{n}" for n in range(2, 20))
        for router in ("replicas", "istio", "gateway-api"):
            release(kube, router, next(versions), outcome="promote")
            release(kube, router, next(versions), outcome="rollback")
            release(kube, router, next(versions), outcome="interrupted")
            assert user_weight(kube, router) == 0 and deployment(kube, "checkout-canary") is None
            crashed(kube, router, next(versions))

        audit = kube.audit
        refused = {(e.verb, e.resource, e.subresource, e.name) for e in audit if e.status == 403}
        assert refused == set(), f"calls the Role refuses: {refused}"
        used = {(e.api_group, f"{e.resource}/{e.subresource}" if e.subresource else e.resource, e.verb) for e in audit}

        rules = kube.rbac_rules
        assert rules
        granted = {(group, resource, verb) for rule in rules for group in rule.api_groups
                   for resource in rule.resources for verb in rule.verbs}
        assert not any("*" in item for triple in granted for item in triple), "no wildcards in the Role"
        assert granted - used == set(), f"granted but never used by a release: {sorted(granted - used)}"
        assert used - granted == set(), f"used but not granted: {sorted(used - granted)}"
