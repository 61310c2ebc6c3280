"""RBAC from the project's own Role manifest, so tests prove the pipeline works with least privilege.

The rules are read from the `kind: Role` documents of a multi-document YAML file and evaluated as
the RBAC authorizer does: apiGroups, resources (including `deployments/scale` subresources),
verbs, optional resourceNames, `*` wildcards. The Role is treated as bound, through the manifest's
RoleBinding, in the emulator's namespace; anything else (other namespaces, cluster scope) is denied.
A rule with resourceNames cannot allow requests that carry no name (list, watch, create), as on a
real cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_USER = "system:serviceaccount:canaryflow:canaryflow-release"


@dataclass(frozen=True)
class PolicyRule:
    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    resource_names: tuple[str, ...] = ()

    def allows(self, verb: str, api_group: str, resource: str, subresource: str, name: str) -> bool:
        label = f"{resource}/{subresource}" if subresource else resource
        if not ({"*", api_group} & set(self.api_groups)):
            return False
        if not ({"*", label} & set(self.resources)) and not (subresource and f"*/{subresource}" in self.resources):
            return False
        if not ({"*", verb} & set(self.verbs)):
            return False
        if self.resource_names:
            return bool(name) and name in self.resource_names
        return True


@dataclass(frozen=True)
class Rbac:
    rules: tuple[PolicyRule, ...]
    user: str
    namespace: str

    @classmethod
    def from_manifest(cls, path: Path, namespace: str) -> Rbac:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if isinstance(d, dict)]
        roles = [d for d in docs if d.get("kind") == "Role"]
        if not roles:
            raise ValueError(f"{path} has no kind: Role document")
        rules = tuple(_rule(r) for role in roles for r in role.get("rules") or [])
        return cls(rules=rules, user=_subject(docs), namespace=namespace)

    def allows(self, verb: str, api_group: str, resource: str, subresource: str, namespace: str, name: str) -> bool:
        if namespace != self.namespace:
            return False
        return any(rule.allows(verb, api_group, resource, subresource, name) for rule in self.rules)


def _rule(raw: dict[str, Any]) -> PolicyRule:
    as_tuple = lambda key: tuple(str(v) for v in raw.get(key) or ())  # noqa: E731
    return PolicyRule(as_tuple("apiGroups"), as_tuple("resources"), as_tuple("verbs"), as_tuple("resourceNames"))


def _subject(docs: list[dict[str, Any]]) -> str:
    """The service account the RoleBinding names, as the authenticator would call it."""
    for doc in docs:
        if doc.get("kind") != "RoleBinding":
            continue
        for subject in doc.get("subjects") or []:
            if subject.get("kind") == "ServiceAccount":
                ns = subject.get("namespace") or (doc.get("metadata") or {}).get("namespace") or "default"
                return f"system:serviceaccount:{ns}:{subject['name']}"
            if subject.get("kind") == "User":
                return str(subject["name"])
    return DEFAULT_USER
