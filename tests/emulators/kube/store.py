"""Object storage with the API server's write semantics: resourceVersion, generation, conflicts.

The pipeline's correctness leans on these rules (re-read and retry on 409, wait while
generation > observedGeneration), so they are enforced here for every write path alike:
- one global resourceVersion counter; every effective write bumps it, a no-op write does not;
- a write carrying a stale `metadata.resourceVersion` is a 409 Conflict;
- `metadata.generation` bumps only when something outside metadata/status changes;
- on kinds with a status subresource, writes to the main resource keep the stored status and
  writes to `/status` change nothing but status;
- deleting an owner deletes its dependents at once (background propagation without the delay).
All methods are thread-safe: the HTTP loop and the controller thread share one re-entrant lock.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from . import patch as patching
from .resources import RESOURCES, Resource
from .selectors import selector_matches, selector_string
from .status import ApiError, already_exists, bad_request, conflict, gone, invalid, not_found

Obj = dict[str, Any]
Event = tuple[int, str, Resource, Obj, Obj | None]  # (rv, ADDED|MODIFIED|DELETED, res, object, previous)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(obj: Obj) -> dict[str, Any]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    return meta


def _payload(obj: Obj) -> Obj:
    """Everything generation cares about: the object minus metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _same(a: Obj, b: Obj) -> bool:
    strip = lambda o: {**o, "metadata": {k: v for k, v in (o.get("metadata") or {}).items() if k != "resourceVersion"}}  # noqa: E731
    return strip(a) == strip(b)


def _default_deployment(obj: Obj) -> None:
    """The few defaults the controller and rollout logic depend on (no pod-template defaulting)."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        strategy.setdefault("type", "RollingUpdate")
        strategy.setdefault("rollingUpdate", {}).setdefault("maxSurge", "25%")
        strategy["rollingUpdate"].setdefault("maxUnavailable", "25%")


def _validate_workload(res: Resource, obj: Obj, old: Obj | None) -> None:
    """Selector rules of apps/v1 workloads: required, must match the template, immutable."""
    name = _meta(obj).get("name", "")
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    if not selector or not selector_string(selector):
        raise invalid(res, name, "spec.selector", "Required value")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selector_matches(selector, labels):
        raise invalid(
            res, name, "spec.template.metadata.labels", "Invalid value: `selector` does not match template `labels`"
        )
    if old is not None and (old.get("spec") or {}).get("selector") != selector:
        raise invalid(res, name, "spec.selector", "field is immutable")


class Store:
    def __init__(self, history: int = 5000) -> None:
        self.lock = threading.RLock()
        self._objects: dict[tuple[str, str, str, str], Obj] = {}
        self._rv = 0
        self._history: deque[Event] = deque(maxlen=history)
        self._listeners: list[Callable[[Event | None], None]] = []

    # ----------------------------------------------------------------- plain reads and raw writes
    @property
    def resource_version(self) -> int:
        return self._rv

    def read(self, res: Resource, namespace: str, name: str) -> Obj | None:
        with self.lock:
            obj = self._objects.get((res.group, res.plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def items(self, res: Resource, namespace: str | None) -> list[Obj]:
        with self.lock:
            found = [
                copy.deepcopy(obj)
                for (group, plural, ns, _), obj in self._objects.items()
                if group == res.group and plural == res.plural and (namespace is None or ns == namespace)
            ]
        return sorted(found, key=lambda o: (_meta(o).get("namespace", ""), _meta(o).get("name", "")))

    def _commit(self, res: Resource, obj: Obj, event: str, previous: Obj | None) -> Obj:
        self._rv += 1
        meta = _meta(obj)
        meta["resourceVersion"] = str(self._rv)
        obj.setdefault("apiVersion", res.api_version())
        obj.setdefault("kind", res.kind)
        key = (res.group, res.plural, meta["namespace"], meta["name"])
        if event == "DELETED":
            self._objects.pop(key, None)
        else:
            self._objects[key] = copy.deepcopy(obj)
        self._emit((self._rv, event, res, copy.deepcopy(obj), previous))
        return obj

    def write(self, res: Resource, obj: Obj) -> Obj:
        """Store as given (controller and seeding): bumps resourceVersion only if something changed."""
        with self.lock:
            meta = _meta(obj)
            current = self._objects.get((res.group, res.plural, meta["namespace"], meta["name"]))
            if current is not None and _same(current, obj):
                return copy.deepcopy(current)
            return self._commit(
                res, copy.deepcopy(obj), "ADDED" if current is None else "MODIFIED", copy.deepcopy(current)
            )

    def fill_new_metadata(self, res: Resource, obj: Obj, namespace: str) -> None:
        meta = _meta(obj)
        meta["namespace"] = namespace
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_iso())
        meta.setdefault("generation", 1)
        obj["apiVersion"] = obj.get("apiVersion") or res.api_version()
        obj["kind"] = res.kind

    # ----------------------------------------------------------------------------- watch support
    def subscribe(self, listener: Callable[[Event | None], None], since: int | None) -> list[Event]:
        """Register a listener; returns the stored events newer than `since` (410 if too old)."""
        with self.lock:
            backlog: list[Event] = []
            if since is not None:
                oldest = self._history[0][0] if self._history else self._rv + 1
                if since < oldest - 1 and since < self._rv:
                    raise gone(str(since), oldest - 1)
                backlog = [e for e in self._history if e[0] > since]
            self._listeners.append(listener)
            return backlog

    def unsubscribe(self, listener: Callable[[Event | None], None]) -> None:
        with self.lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def close_watchers(self) -> None:
        with self.lock:
            for listener in list(self._listeners):
                listener(None)

    def _emit(self, event: Event) -> None:
        self._history.append(event)
        for listener in list(self._listeners):
            listener(event)

    # ------------------------------------------------------------------------- API write semantics
    def create(self, res: Resource, namespace: str, body: Obj, *, dry_run: bool = False) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        obj = copy.deepcopy(body)
        meta = _meta(obj)
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            else:
                raise invalid(res, "", "metadata.name", "Required value: name or generateName is required")
        for key in ("uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp"):
            meta.pop(key, None)
        if res.has_status:  # status is the controller's: ignored on create (built-ins answer `status: {}`)
            obj.pop("status", None)
            if res.builtin:
                obj["status"] = {}
        with self.lock:
            if (res.group, res.plural, namespace, meta["name"]) in self._objects:
                raise already_exists(res, meta["name"])
            self._prepare(res, obj, None)
            self.fill_new_metadata(res, obj, namespace)
            if dry_run:
                return obj
            return self._commit(res, obj, "ADDED", None)

    def replace(
        self, res: Resource, namespace: str, name: str, body: Obj, *, subresource: str = "", dry_run: bool = False
    ) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        with self.lock:
            current = self._require(res, namespace, name)
            if subresource == "scale":
                return self._write_scale(res, current, body, dry_run)
            given_rv = _meta(body).get("resourceVersion")
            if not given_rv and not res.builtin:
                raise invalid(
                    res, name, "metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update"
                )
            return self._update(res, current, copy.deepcopy(body), subresource, dry_run)

    def patch(
        self,
        res: Resource,
        namespace: str,
        name: str,
        content_type: str,
        body: Any,
        *,
        subresource: str = "",
        dry_run: bool = False,
    ) -> Obj:
        with self.lock:
            current = self._require(res, namespace, name)
            if subresource == "scale":
                patched = patching.apply(content_type, self.scale_of(res, current), body, builtin=True)
                return self._write_scale(res, current, patched, dry_run)
            patched = patching.apply(content_type, current, body, builtin=res.builtin)
            if not isinstance(patched, dict):
                raise bad_request("the patch did not produce an object")
            return self._update(res, current, patched, subresource, dry_run)

    def delete(
        self, res: Resource, namespace: str, name: str, options: Obj | None = None, *, dry_run: bool = False
    ) -> Obj:
        options = options or {}
        with self.lock:
            current = self._require(res, namespace, name)
            pre = options.get("preconditions") or {}
            meta = _meta(current)
            if (pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion")) or (
                pre.get("uid") and pre["uid"] != meta.get("uid")
            ):
                raise conflict(res, name)
            if dry_run:
                return current
            self._delete_tree(res, current, orphan=options.get("propagationPolicy") == "Orphan")
            return current

    # ---------------------------------------------------------------------------------- helpers
    def _require(self, res: Resource, namespace: str, name: str) -> Obj:
        current = self._objects.get((res.group, res.plural, namespace, name))
        if current is None:
            raise not_found(res, name)
        return copy.deepcopy(current)

    def _prepare(self, res: Resource, obj: Obj, old: Obj | None) -> None:
        if res.kind == "Deployment":
            _default_deployment(obj)
        if res.kind in ("Deployment", "ReplicaSet"):
            _validate_workload(res, obj, old)

    def _update(self, res: Resource, current: Obj, new: Obj, subresource: str, dry_run: bool) -> Obj:
        name = _meta(current)["name"]
        meta = _meta(new)
        if meta.get("name", name) != name:
            raise bad_request(
                f'the name of the object ({meta.get("name")}) does not match the name on the URL ({name})'
            )
        if meta.get("namespace", _meta(current)["namespace"]) != _meta(current)["namespace"]:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        if meta.get("resourceVersion") and meta["resourceVersion"] != _meta(current)["resourceVersion"]:
            raise conflict(res, name)
        if subresource == "status":
            result = copy.deepcopy(current)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
        else:
            result = new
            if res.has_status:
                if "status" in current:
                    result["status"] = copy.deepcopy(current["status"])
                else:
                    result.pop("status", None)
            keep = {
                k: _meta(current)[k]
                for k in ("uid", "creationTimestamp", "generation", "namespace", "name")
                if k in _meta(current)
            }
            meta.update(keep)
            self._prepare(res, result, current)
            if _payload(result) != _payload(current):
                meta["generation"] = int(_meta(current).get("generation", 1)) + 1
        result["apiVersion"] = current.get("apiVersion", res.api_version())
        result["kind"] = res.kind
        if _same(result, current):
            return current
        if dry_run:
            return result
        return self._commit(res, result, "MODIFIED", current)

    def scale_of(self, res: Resource, obj: Obj) -> Obj:
        """The autoscaling/v1 Scale view of a workload."""
        meta = _meta(obj)
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta
            },
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
            "status": {
                "replicas": (obj.get("status") or {}).get("replicas", 0),
                "selector": selector_string((obj.get("spec") or {}).get("selector")),
            },
        }

    def _write_scale(self, res: Resource, current: Obj, scale: Obj, dry_run: bool) -> Obj:
        name = _meta(current)["name"]
        given_rv = _meta(scale).get("resourceVersion")
        if given_rv and given_rv != _meta(current)["resourceVersion"]:
            raise conflict(res, name)
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise invalid(
                res, name, "spec.replicas", f"Invalid value: {replicas!r}: must be greater than or equal to 0"
            )
        updated = copy.deepcopy(current)
        updated.setdefault("spec", {})["replicas"] = replicas
        _meta(updated).pop("resourceVersion", None)
        result = self._update(res, current, updated, "", dry_run)
        return self.scale_of(res, result)

    def _delete_tree(self, res: Resource, obj: Obj, *, orphan: bool) -> None:
        uid = _meta(obj).get("uid")
        self._commit(res, copy.deepcopy(obj), "DELETED", copy.deepcopy(obj))
        for (group, plural, _, _), child in list(self._objects.items()):
            refs = _meta(child).get("ownerReferences") or []
            if not any(ref.get("uid") == uid for ref in refs):
                continue
            child_res = next(r for r in RESOURCES if r.group == group and r.plural == plural)
            if orphan:
                updated = copy.deepcopy(child)
                _meta(updated)["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                self._commit(child_res, updated, "MODIFIED", copy.deepcopy(child))
            else:
                self._delete_tree(child_res, copy.deepcopy(child), orphan=False)


__all__ = ["ApiError", "Event", "Obj", "Store", "now_iso"]
