"""A deployment controller, enough of one for rollout status, undo and stuck rollouts to be real.

What the pipeline reads after it changes a Deployment is produced here, on a background thread, by
the same rules as kube-controller-manager:
- a pod-template change finds or creates the ReplicaSet for that template (`<deploy>-<hash>`, label
  `pod-template-hash`, owner reference, `deployment.kubernetes.io/revision` = highest + 1); going
  back to an old template re-uses its ReplicaSet and gives it the new highest revision, recording the
  old one in `deployment.kubernetes.io/revision-history`;
- status converges `convergence_seconds` after the change: observedGeneration, replica counts,
  old ReplicaSets scaled to 0, Available/Progressing conditions;
- a template with an image in `stuck_images` never becomes available; once
  `progressDeadlineSeconds` have passed since the rollout started, Progressing turns False with
  reason ProgressDeadlineExceeded, while the old ReplicaSets keep serving;
- `spec.paused` stops rollouts (scaling still applies);
- old ReplicaSets beyond `revisionHistoryLimit` are deleted once a rollout completes.
Pods are not modelled: ReplicaSet status counts stand in for them. Intermediate rolling-update
steps are not modelled either: the new ReplicaSet gets all its replicas at once and the old ones
keep theirs until the rollout completes (so `replicas > updatedReplicas` while it is in progress).
"""

from __future__ import annotations

import copy
import json
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

from .resources import find
from .store import Obj, Store, now_iso

DEPLOYMENTS = find("apps", "v1", "deployments")
REPLICASETS = find("apps", "v1", "replicasets")
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
HASH_LABEL = "pod-template-hash"
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: dict[str, Any]) -> str:
    """FNV-1a over the template, safe-encoded like the real controller (`5d8f7c9b4`-style)."""
    h = 0x811C9DC5
    for byte in json.dumps(template, sort_keys=True, separators=(",", ":")).encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE[ord(ch) % len(_SAFE)] for ch in str(h))


def _without_hash(template: dict[str, Any] | None) -> dict[str, Any]:
    template = copy.deepcopy(template or {})
    labels = (template.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return template


def _revision(obj: Obj) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _images(template: dict[str, Any]) -> set[str]:
    spec = template.get("spec") or {}
    return {c.get("image", "") for key in ("containers", "initContainers") for c in spec.get(key) or []}


def _scaled(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * total / 100
        return int(-(-exact // 1)) if round_up else int(exact // 1)
    return int(value or 0)


def _compact(status: dict[str, Any]) -> dict[str, Any]:
    """Zero counts are omitted, as Go's `omitempty` does on the real server."""
    return {k: v for k, v in status.items() if v not in (0, None, [])}


@dataclass
class _Progress:
    rs_name: str
    started: float  # when the rollout began; the progress deadline counts from here
    settle_at: float  # when the new ReplicaSet's pods count as available
    replicas: int  # the desired count settle_at refers to
    base_available: int  # pods of the new ReplicaSet already available when the change began


class DeploymentController:
    def __init__(
        self, store: Store, convergence_seconds: float, stuck_images: set[str], interval: float = 0.05
    ) -> None:
        self.store = store
        self.convergence = convergence_seconds
        self.stuck_images = stuck_images
        self.interval = interval
        self.errors: list[str] = []
        self._progress: dict[str, _Progress] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kube-emulator-controller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.reconcile_all()
            except Exception:  # keep ticking; tests can inspect .errors
                self.errors.append(traceback.format_exc())

    def reconcile_all(self) -> None:
        with self.store.lock:
            deployments = self.store.items(DEPLOYMENTS, None)
            for deployment in deployments:
                self.reconcile(deployment)
            live = {d["metadata"]["uid"] for d in deployments}
            for uid in list(self._progress):
                if uid not in live:
                    del self._progress[uid]

    # ------------------------------------------------------------------------------ one deployment
    def reconcile(self, deployment: Obj, *, settled: bool = False) -> None:
        """Bring one Deployment's ReplicaSets and status forward; `settled` treats it as long done."""
        with self.store.lock:
            meta = deployment["metadata"]
            current = self.store.read(DEPLOYMENTS, meta["namespace"], meta["name"])
            if current is None:
                return
            self._reconcile(current, settled)

    def _reconcile(self, deployment: Obj, settled: bool) -> None:
        now = time.monotonic()
        meta, spec = deployment["metadata"], deployment.get("spec") or {}
        uid, ns = meta["uid"], meta["namespace"]
        desired = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        owned = [
            rs
            for rs in self.store.items(REPLICASETS, ns)
            if any(
                ref.get("uid") == uid and ref.get("controller") for ref in rs["metadata"].get("ownerReferences") or []
            )
        ]
        top = max((_revision(rs) for rs in owned), default=0)
        match = next((rs for rs in owned if _without_hash(rs["spec"].get("template")) == _without_hash(template)), None)
        start = now - self.convergence - 1 if settled else now
        progress = self._progress.get(uid)

        new_rs: Obj | None
        if spec.get("paused"):
            new_rs = max(owned, key=_revision, default=None)
        elif match is None:
            new_rs = self._create_rs(deployment, template, desired, top + 1)
            progress = self._progress[uid] = _Progress(
                new_rs["metadata"]["name"], start, start + self.convergence, desired, 0
            )
        else:
            new_rs = match
            rolled_back = _revision(match) < top
            if rolled_back:
                self._promote(match, top + 1)
            if rolled_back or progress is None or progress.rs_name != match["metadata"]["name"]:
                available = int((match.get("status") or {}).get("availableReplicas", 0))
                if progress is None and not rolled_back:  # state from before this controller saw it
                    start = now - self.convergence - 1
                progress = self._progress[uid] = _Progress(
                    match["metadata"]["name"], start, start + self.convergence, desired, available
                )
        if (
            new_rs is not None
            and progress is not None
            and progress.rs_name == new_rs["metadata"]["name"]
            and progress.replicas != desired
        ):
            available = int((new_rs.get("status") or {}).get("availableReplicas", 0))
            progress.replicas, progress.base_available, progress.settle_at = (
                desired,
                min(available, desired),
                now + self.convergence,
            )

        olds = [rs for rs in owned if new_rs is None or rs["metadata"]["name"] != new_rs["metadata"]["name"]]
        stuck = bool(new_rs is not None and _images(new_rs["spec"].get("template") or {}) & set(self.stuck_images))
        done = new_rs is not None and not stuck and progress is not None and now >= progress.settle_at
        if new_rs is not None:
            if stuck:
                available = 0
            elif done:
                available = desired
            else:
                available = min(progress.base_available if progress else 0, desired)
            new_rs = self._set_rs(new_rs, desired, available)
        if done:
            olds = [self._set_rs(rs, 0, 0) for rs in olds]
            self._prune(olds, int(spec.get("revisionHistoryLimit", 10)))
            olds = [rs for rs in olds if self.store.read(REPLICASETS, ns, rs["metadata"]["name"]) is not None]

        self._write_status(deployment, new_rs, olds, progress, stuck, done, now)

    def _create_rs(self, deployment: Obj, template: dict[str, Any], replicas: int, revision: int) -> Obj:
        meta = deployment["metadata"]
        pod_hash = template_hash(template)
        rs_template = copy.deepcopy(template)
        rs_template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
        selector = copy.deepcopy(deployment["spec"].get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{pod_hash}",
                "labels": dict(rs_template["metadata"]["labels"]),
                "annotations": {REVISION: str(revision), "deployment.kubernetes.io/desired-replicas": str(replicas)},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {"replicas": replicas, "selector": selector, "template": rs_template},
        }
        self.store.fill_new_metadata(REPLICASETS, rs, meta["namespace"])
        return self.store.write(REPLICASETS, rs)

    def _promote(self, rs: Obj, revision: int) -> None:
        """Rollback to an old template: its ReplicaSet takes the next revision, the old one is kept in history."""
        annotations = rs["metadata"].setdefault("annotations", {})
        old = annotations.get(REVISION)
        history = [h for h in (annotations.get(REVISION_HISTORY) or "").split(",") if h] + ([old] if old else [])
        annotations[REVISION] = str(revision)
        annotations[REVISION_HISTORY] = ",".join(history)
        rs.update(self.store.write(REPLICASETS, rs))

    def _set_rs(self, rs: Obj, replicas: int, available: int) -> Obj:
        rs = copy.deepcopy(rs)
        rs["spec"]["replicas"] = replicas
        if replicas:
            rs["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/desired-replicas"] = str(replicas)
        rs["status"] = {"replicas": replicas} | _compact(  # ReplicaSetStatus.replicas is not omitempty
            {
                "fullyLabeledReplicas": replicas,
                "readyReplicas": available,
                "availableReplicas": available,
                "observedGeneration": rs["metadata"].get("generation", 1),
            }
        )
        return self.store.write(REPLICASETS, rs)

    def _prune(self, olds: list[Obj], limit: int) -> None:
        idle = sorted((rs for rs in olds if not rs["spec"].get("replicas")), key=_revision)
        for rs in idle[: max(0, len(idle) - limit)]:
            self.store.delete(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"])

    def _write_status(
        self,
        deployment: Obj,
        new_rs: Obj | None,
        olds: list[Obj],
        progress: _Progress | None,
        stuck: bool,
        done: bool,
        now: float,
    ) -> None:
        spec = deployment.get("spec") or {}
        desired = int(spec.get("replicas", 1))
        sets = ([new_rs] if new_rs else []) + olds
        count = lambda key: sum(int((rs.get("status") or {}).get(key, 0)) for rs in sets)  # noqa: E731
        available = count("availableReplicas")
        rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        max_unavailable = _scaled(rolling.get("maxUnavailable", "25%"), desired, round_up=False) if rolling else 0

        conditions = []
        if available >= desired - max_unavailable:
            conditions.append(("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."))
        else:
            conditions.append(
                ("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
            )
        deadline = float(spec.get("progressDeadlineSeconds", 600))
        if spec.get("paused"):
            conditions.append(("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused"))
        elif new_rs is not None and progress is not None:
            name = new_rs["metadata"]["name"]
            if done:
                conditions.append(
                    (
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        f'ReplicaSet "{name}" has successfully progressed.',
                    )
                )
            elif now - progress.started > deadline:
                conditions.append(
                    (
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        f'ReplicaSet "{name}" has timed out progressing.',
                    )
                )
            else:
                conditions.append(("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{name}" is progressing.'))

        previous = {c.get("type"): c for c in (deployment.get("status") or {}).get("conditions") or []}
        stamp = now_iso()
        rendered = []
        for kind, status, reason, message in conditions:
            old = previous.get(kind) or {}
            same_status = old.get("status") == status
            unchanged = same_status and old.get("reason") == reason and old.get("message") == message
            rendered.append(
                {
                    "type": kind,
                    "status": status,
                    "lastUpdateTime": old.get("lastUpdateTime", stamp) if unchanged else stamp,
                    "lastTransitionTime": old.get("lastTransitionTime", stamp) if same_status else stamp,
                    "reason": reason,
                    "message": message,
                }
            )

        updated = copy.deepcopy(deployment)
        updated["status"] = _compact(
            {
                "observedGeneration": deployment["metadata"].get("generation", 1),
                "replicas": count("replicas"),
                "updatedReplicas": int((new_rs.get("status") or {}).get("replicas", 0)) if new_rs else 0,
                "readyReplicas": count("readyReplicas"),
                "availableReplicas": available,
                "unavailableReplicas": max(0, desired - available),
                "conditions": rendered,
            }
        )
        if new_rs is not None:
            updated["metadata"].setdefault("annotations", {})[REVISION] = str(_revision(new_rs))
        self.store.write(DEPLOYMENTS, updated)
