"""The resource types the emulator serves, and the static facts the API server knows about each.

One table drives routing, discovery, RBAC naming and patch behaviour, so adding a kind is one line.
Versions of one group share storage (Istio serves the same VirtualService as v1alpha3, v1beta1 and
v1), which is why storage is keyed by group + plural and never by version.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    versions: tuple[str, ...]  # first one is the preferred version
    plural: str
    singular: str
    kind: str
    builtin: bool  # built-in kinds accept strategic merge patches; custom resources answer 415
    subresources: tuple[str, ...] = ()
    delete_returns_status: bool = False  # apps/v1 workloads answer DELETE with a Status, others with the object

    @property
    def qualified(self) -> str:
        """The name the API server uses in messages: `deployments.apps`, `services`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def api_version(self, version: str | None = None) -> str:
        version = version or self.versions[0]
        return f"{self.group}/{version}" if self.group else version

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


RESOURCES: tuple[Resource, ...] = (
    Resource("", ("v1",), "services", "service", "Service", True, ("status",)),
    Resource("apps", ("v1",), "deployments", "deployment", "Deployment", True, ("scale", "status"), True),
    Resource("apps", ("v1",), "replicasets", "replicaset", "ReplicaSet", True, ("status",), True),
    Resource(
        "networking.istio.io",
        ("v1", "v1beta1", "v1alpha3"),
        "virtualservices",
        "virtualservice",
        "VirtualService",
        False,
        ("status",),
    ),
    Resource(
        "networking.istio.io",
        ("v1", "v1beta1", "v1alpha3"),
        "destinationrules",
        "destinationrule",
        "DestinationRule",
        False,
        ("status",),
    ),
    Resource(
        "gateway.networking.k8s.io",
        ("v1", "v1beta1"),
        "httproutes",
        "httproute",
        "HTTPRoute",
        False,
        ("status",),
    ),
)


def split_api_version(api_version: str) -> tuple[str, str]:
    """`apps/v1` -> ("apps", "v1"); `v1` -> ("", "v1")."""
    group, _, version = api_version.rpartition("/")
    return group, version


def find(group: str, version: str | None, plural: str) -> Resource | None:
    for res in RESOURCES:
        if res.group == group and res.plural == plural and (version is None or version in res.versions):
            return res
    return None


def find_kind(api_version: str, kind: str) -> Resource | None:
    group, version = split_api_version(api_version)
    for res in RESOURCES:
        if res.group == group and res.kind == kind and version in res.versions:
            return res
    return None


def groups() -> dict[str, tuple[str, ...]]:
    """Group name -> served versions, for /apis discovery (core group excluded)."""
    out: dict[str, tuple[str, ...]] = {}
    for res in RESOURCES:
        if res.group:
            out.setdefault(res.group, res.versions)
    return out
