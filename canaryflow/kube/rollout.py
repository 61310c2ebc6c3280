"""Rollout logic of ``kubectl``, as pure functions over Deployment and ReplicaSet dicts.

``rollout_status`` decides exactly as ``kubectl rollout status`` does (``DeploymentStatusViewer``);
``undo_target`` chooses what ``kubectl rollout undo`` (``DeploymentRollbacker``) would put back.
Both take the API's JSON (camelCase dicts), so they are tested without a cluster.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
POD_TEMPLATE_HASH = "pod-template-hash"
TIMED_OUT_REASON = "ProgressDeadlineExceeded"

#: Deployment annotations ``kubectl rollout undo`` keeps from the Deployment, never copies from the ReplicaSet.
ANNOTATIONS_TO_SKIP = frozenset({
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
})


class ProgressDeadlineExceeded(Exception):
    """The Deployment's Progressing condition says ``ProgressDeadlineExceeded``: the rollout is stuck."""


class UndoRefused(Exception):
    """``kubectl rollout undo`` would refuse too: paused Deployment, or no previous revision."""


def _name(deployment: dict[str, Any]) -> str:
    return (deployment.get("metadata") or {}).get("name", "")


def rollout_status(deployment: dict[str, Any]) -> tuple[bool, str]:
    """``(done, message)`` for one Deployment; raises ``ProgressDeadlineExceeded`` when it is stuck.

    Same order of checks as kubectl: an unobserved spec is never judged, then the deadline, then
    updated, old and available replicas. Like kubectl, an absent ``spec.replicas`` skips the first
    replica check.
    """
    name = _name(deployment)
    metadata, spec = deployment.get("metadata") or {}, deployment.get("spec") or {}
    status = deployment.get("status") or {}
    if int(metadata.get("generation") or 0) > int(status.get("observedGeneration") or 0):
        return False, "Waiting for deployment spec update to be observed..."
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == TIMED_OUT_REASON:
            raise ProgressDeadlineExceeded(f'deployment "{name}" exceeded its progress deadline')
    updated = int(status.get("updatedReplicas") or 0)
    replicas = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    wanted = spec.get("replicas")
    if wanted is not None and updated < int(wanted):
        return False, (f'Waiting for deployment "{name}" rollout to finish: '
                       f"{updated} out of {wanted} new replicas have been updated...")
    if replicas > updated:
        return False, (f'Waiting for deployment "{name}" rollout to finish: '
                       f"{replicas - updated} old replicas are pending termination...")
    if available < updated:
        return False, (f'Waiting for deployment "{name}" rollout to finish: '
                       f"{available} of {updated} updated replicas are available...")
    return True, f'deployment "{name}" successfully rolled out'


def revision(obj: dict[str, Any]) -> int | None:
    """The ``deployment.kubernetes.io/revision`` of an object: 0 when absent (as kubectl reads it),
    None when it is not a number (kubectl skips such a ReplicaSet)."""
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION)
    if value is None:
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """``matchLabels`` and ``matchExpressions`` of a LabelSelector against a label set."""
    if not selector:
        return False  # an empty selector selects nothing for a Deployment's ReplicaSets
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def owned_replicasets(deployment: dict[str, Any], replicasets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ReplicaSets the Deployment controls: selected by its selector and, where UIDs are known,
    owned by it (``ownerReferences`` with ``controller: true``)."""
    uid = (deployment.get("metadata") or {}).get("uid")
    selector = (deployment.get("spec") or {}).get("selector") or {}
    owned = []
    for rs in replicasets:
        meta = rs.get("metadata") or {}
        if uid:
            controllers = [ref for ref in meta.get("ownerReferences") or [] if ref.get("controller")]
            if not any(ref.get("uid") == uid for ref in controllers):
                continue
        if not _selector_matches(selector, meta.get("labels") or {}):
            continue
        owned.append(rs)
    return owned


def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(template)
    labels = (template.get("metadata") or {}).get("labels")
    if labels is not None:
        labels.pop(POD_TEMPLATE_HASH, None)
    return template


def templates_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Pod templates equal apart from ``pod-template-hash`` (kubectl's ``equalIgnoreHash``)."""
    return json.dumps(_without_hash(a), sort_keys=True) == json.dumps(_without_hash(b), sort_keys=True)


@dataclass(frozen=True)
class UndoPlan:
    """What ``kubectl rollout undo`` would write. ``skipped``: the template already matches."""

    revision: int
    template: dict[str, Any]
    annotations: dict[str, str]
    skipped: bool

    def json_patch(self) -> list[dict[str, Any]]:
        """The JSON patch kubectl sends: replace ``/spec/template`` and ``/metadata/annotations``."""
        return [
            {"op": "replace", "path": "/spec/template", "value": self.template},
            {"op": "replace", "path": "/metadata/annotations", "value": self.annotations},
        ]


def undo_target(deployment: dict[str, Any], replicasets: list[dict[str, Any]], to_revision: int = 0) -> UndoPlan:
    """The ReplicaSet ``kubectl rollout undo`` goes back to, and what it writes.

    ``to_revision=0`` takes the previous revision: the highest revision below the latest one.
    Refuses (``UndoRefused``) a paused Deployment and a Deployment with no such revision.
    """
    name = _name(deployment)
    if (deployment.get("spec") or {}).get("paused"):
        raise UndoRefused(f'deployment "{name}" is paused; resume it first with '
                          "'kubectl rollout resume' and try again")
    chosen: dict[str, Any] | None = None
    latest_revision, previous_revision = 0, -1
    latest: dict[str, Any] | None = None
    for rs in owned_replicasets(deployment, replicasets):
        rev = revision(rs)
        if rev is None:
            continue
        if to_revision:
            if rev == to_revision:
                chosen = rs
                break
            continue
        if rev > latest_revision:
            previous_revision, chosen = latest_revision, latest
            latest_revision, latest = rev, rs
        elif rev > previous_revision:
            previous_revision, chosen = rev, rs
    if chosen is None:
        if to_revision:
            raise UndoRefused(f'unable to find specified revision {to_revision} in history of deployment "{name}"')
        raise UndoRefused(f'no rollout history found for deployment "{name}"')
    template = _without_hash((chosen.get("spec") or {}).get("template") or {})
    current = (deployment.get("spec") or {}).get("template") or {}
    deployment_annotations = (deployment.get("metadata") or {}).get("annotations") or {}
    annotations = {k: v for k, v in deployment_annotations.items() if k in ANNOTATIONS_TO_SKIP}
    annotations.update({k: v for k, v in ((chosen.get("metadata") or {}).get("annotations") or {}).items()
                        if k not in ANNOTATIONS_TO_SKIP})
    return UndoPlan(revision=revision(chosen) or 0, template=template, annotations=annotations,
                    skipped=templates_equal(template, current))
