"""Shared mechanics of routers that edit a routing object's spec (VirtualService, HTTPRoute).

Every write is a read-modify-write: a JSON merge patch carrying the ``resourceVersion`` read, so
a concurrent writer makes it fail with 409 and ``KubeApi.update`` re-reads and tries again. The
original spec is kept in the ``canaryflow.dev/original-spec`` annotation of the object itself, and
the release's traffic lease (``canaryflow.kube.lease``) travels in the same write as the weight, so
a weight is never on the cluster without the lease that lets the reconciler take it back.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from canaryflow.errors import PlatformError
from canaryflow.kube.client import KubeApi
from canaryflow.kube.lease import REMOVE_LEASE, has_lease
from canaryflow.kube.routers.base import ORIGINAL_SPEC_ANNOTATION, LeaseStamp


def merge_patch_between(current: Any, wanted: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``current`` into ``wanted``: removed keys become
    null, changed maps recurse, anything else is replaced whole. ``{}`` when they are equal."""
    if not isinstance(current, dict) or not isinstance(wanted, dict):
        return copy.deepcopy(wanted)
    patch: dict[str, Any] = {}
    for key in current:
        if key not in wanted:
            patch[key] = None
    for key, value in wanted.items():
        if key not in current:
            patch[key] = copy.deepcopy(value)
        elif current[key] != value:
            if isinstance(value, dict) and isinstance(current[key], dict):
                patch[key] = merge_patch_between(current[key], value)
            else:
                patch[key] = copy.deepcopy(value)
    return patch


def check_weight(weight: int) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise ValueError(f"canary weight must be an integer percentage 0..100, not {weight!r}")
    return weight


class RecordedSpecRouter:
    """Base of the VirtualService and HTTPRoute routers. Subclasses give the object coordinates
    and two pure functions: ``apply_weight(spec, weight) -> spec`` and ``read_weight(spec) -> int``."""

    name = ""
    group = ""
    version = ""
    plural = ""
    kind = ""

    def __init__(self, *, api: KubeApi, object_name: str) -> None:
        self.api = api
        self.object_name = object_name

    # pure parts, per router
    def apply_weight(self, spec: dict[str, Any], weight: int) -> dict[str, Any]:
        raise NotImplementedError

    def read_weight(self, spec: dict[str, Any]) -> int:
        raise NotImplementedError

    # cluster parts
    def read(self) -> dict[str, Any]:
        return self.api.get_custom(self.group, self.version, self.plural, self.kind, self.object_name)

    def _write(self, obj: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        patch.setdefault("metadata", {})["resourceVersion"] = obj["metadata"].get("resourceVersion")
        return self.api.patch_custom(self.group, self.version, self.plural, self.kind, self.object_name, patch)

    def _update(self, change: Any) -> dict[str, Any]:
        return self.api.update(self.read, change, self._write)

    def _apply(self, spec: dict[str, Any], weight: int) -> dict[str, Any]:
        try:
            return self.apply_weight(spec, weight)
        except LookupError as exc:
            raise PlatformError(f'{self.kind} "{self.object_name}": {exc}', operation=self.api.operation) from None

    def prepare(self) -> None:
        def change(obj: dict[str, Any]) -> dict[str, Any] | None:
            annotations = obj["metadata"].get("annotations") or {}
            spec = obj.get("spec") or {}
            if ORIGINAL_SPEC_ANNOTATION in annotations:  # recorded by an earlier attempt: keep the original
                return None
            wanted = self._apply(spec, 0)
            return {"metadata": {"annotations": {ORIGINAL_SPEC_ANNOTATION: json.dumps(spec, sort_keys=True)}},
                    "spec": merge_patch_between(spec, wanted)}

        self._update(change)

    def set_weight(self, weight: int, *, lease: LeaseStamp | None = None) -> None:
        weight = check_weight(weight)

        def change(obj: dict[str, Any]) -> dict[str, Any] | None:
            spec = obj.get("spec") or {}
            # Checked on every (re-)read: after a 409 the lease may be gone, and then nothing is written.
            stamp = lease(obj["metadata"].get("annotations") or {}) if lease is not None else {}
            wanted = self._apply(spec, weight)
            if wanted == spec and not stamp:
                return None
            patch: dict[str, Any] = {"spec": merge_patch_between(spec, wanted)}
            if stamp:
                patch["metadata"] = {"annotations": stamp}
            return patch

        self._update(change)

    def get_weight(self) -> int:
        spec = self.read().get("spec") or {}
        try:
            return self.read_weight(spec)
        except LookupError as exc:
            raise PlatformError(f'{self.kind} "{self.object_name}": {exc}', operation=self.api.operation) from None

    def restore(self) -> None:
        def change(obj: dict[str, Any]) -> dict[str, Any] | None:
            annotations = obj["metadata"].get("annotations") or {}
            spec = obj.get("spec") or {}
            recorded = annotations.get(ORIGINAL_SPEC_ANNOTATION)
            if recorded is None:  # nothing recorded (never prepared, or restored already): weight 0 if split
                patch: dict[str, Any] = (
                    {"metadata": {"annotations": dict(REMOVE_LEASE)}} if has_lease(annotations) else {})
                try:
                    if self.read_weight(spec) != 0:
                        patch["spec"] = merge_patch_between(spec, self._apply(spec, 0))
                except LookupError:
                    pass
                return patch or None
            try:
                original = json.loads(recorded)
            except ValueError:
                raise PlatformError(f'{self.kind} "{self.object_name}": annotation {ORIGINAL_SPEC_ANNOTATION} '
                                    "is not valid JSON; restore the spec by hand",
                                    operation=self.api.operation) from None
            return {"metadata": {"annotations": {ORIGINAL_SPEC_ANNOTATION: None, **REMOVE_LEASE}},
                    "spec": merge_patch_between(spec, original)}

        self._update(change)
