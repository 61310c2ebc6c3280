"""The stable and canary Deployments of one release: pure builders and a small helper that waits.

The canary is always its own Deployment ``<deployment>-canary``, built from the stable one with
the new image and the labels ``version=<new>`` and ``track=canary``; the stable Deployment is only
written at promotion (new image) or when undoing an interrupted promotion.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

from canaryflow.errors import PlatformError
from canaryflow.kube.client import MERGE_PATCH, STRATEGIC_MERGE_PATCH, KubeApi
from canaryflow.kube.rollout import POD_TEMPLATE_HASH, ProgressDeadlineExceeded, rollout_status

VERSION_LABEL = "version"
TRACK_LABEL = "track"
ANNOTATION_PREFIX = "canaryflow.dev/"
TOTAL_ANNOTATION = ANNOTATION_PREFIX + "total-replicas"
WEIGHT_ANNOTATION = ANNOTATION_PREFIX + "weight"
VERSION_ANNOTATION = ANNOTATION_PREFIX + "version"
STABLE_ANNOTATION = ANNOTATION_PREFIX + "stable-deployment"

_SERVER_FIELDS = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
                  "ownerReferences", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "finalizers")


def split_replicas(total: int, weight: int) -> tuple[int, int]:
    """``(stable, canary)`` replicas for a canary ``weight`` percent of ``total``.

    Rounds half up; any weight above 0 gives the canary at least one replica, any weight below
    100 keeps at least one stable replica (with ``total == 1`` both run one), 100 gives the canary
    everything and 0 gives stable everything.
    """
    if total < 1:
        raise ValueError("total replicas must be at least 1")
    if not 0 <= weight <= 100:
        raise ValueError("weight is a percentage between 0 and 100")
    if weight == 0:
        return total, 0
    if weight == 100:
        return 0, total
    if total == 1:
        return 1, 1
    canary = min(total - 1, max(1, math.floor(total * weight / 100 + 0.5)))
    return total - canary, canary


def replicas_weight(stable: int, canary: int) -> int:
    """The percentage of replicas the canary runs (the share of traffic a shared Service gives it)."""
    total = stable + canary
    return 0 if total == 0 or canary == 0 else math.floor(100 * canary / total + 0.5)


def image_tag(image: str) -> str | None:
    """The tag of an image reference (``registry:5000/app:v1`` -> ``v1``); None for none or a digest."""
    if "@" in image:
        return None
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return None
    return tag


def with_tag(image: str, tag: str) -> str:
    """``image`` with its tag (or digest) replaced by ``tag``."""
    base = image.split("@", 1)[0]
    if image_tag(base) is not None:
        base = base.rpartition(":")[0]
    return f"{base}:{tag}"


def pick_container(deployment: dict[str, Any], wanted: str | None, service: str) -> dict[str, Any]:
    """The container a release updates: ``wanted`` by name, else the one named like the service,
    else the first."""
    containers = deployment["spec"]["template"]["spec"].get("containers") or []
    name = deployment["metadata"]["name"]
    if not containers:
        raise PlatformError(f'deployment "{name}" has no containers', operation="deploy")
    if wanted is not None:
        for c in containers:
            if c.get("name") == wanted:
                return c
        raise PlatformError(f'deployment "{name}" has no container "{wanted}" '
                            f"(has: {', '.join(c.get('name', '?') for c in containers)})", operation="deploy")
    return next((c for c in containers if c.get("name") == service), containers[0])


def version_pinned(deployment: dict[str, Any]) -> bool:
    """True when the selector matches on ``version`` (then the template label cannot change)."""
    selector = deployment["spec"].get("selector") or {}
    return VERSION_LABEL in (selector.get("matchLabels") or {}) or any(
        e.get("key") == VERSION_LABEL for e in selector.get("matchExpressions") or [])


def deployed_version(deployment: dict[str, Any], container: str | None, service: str) -> str | None:
    """The version a Deployment runs: its pod template's ``version`` label (when canaryflow maintains
    it, i.e. the selector does not pin it), else its container's image tag."""
    labels = (deployment["spec"]["template"].get("metadata") or {}).get("labels") or {}
    if labels.get(VERSION_LABEL) and not version_pinned(deployment):
        return labels[VERSION_LABEL]
    image = pick_container(deployment, container, service).get("image") or ""
    return image_tag(image) or labels.get(VERSION_LABEL)


def build_canary(stable: dict[str, Any], *, name: str, version: str, image: str, container: str,
                 replicas: int, total: int) -> dict[str, Any]:
    """A canary Deployment from the stable one: same pod template but the image, labelled
    ``version=<version>``/``track=canary`` (selector too, so the two never share pods)."""
    meta = stable["metadata"]
    spec = copy.deepcopy(stable["spec"])
    spec.pop("paused", None)
    spec["replicas"] = replicas
    selector = spec.setdefault("selector", {})
    match = dict(selector.get("matchLabels") or {})
    if VERSION_LABEL in match:
        match[VERSION_LABEL] = version
    match[TRACK_LABEL] = "canary"
    selector["matchLabels"] = match
    template = spec["template"]
    tmeta = template.setdefault("metadata", {})
    labels = dict(tmeta.get("labels") or {})
    labels.pop(POD_TEMPLATE_HASH, None)
    labels.update({VERSION_LABEL: version, TRACK_LABEL: "canary"})
    tmeta["labels"] = labels
    for c in template["spec"]["containers"]:
        if c.get("name") == container:
            c["image"] = image
    deployment_labels = dict(meta.get("labels") or {})
    deployment_labels.update({VERSION_LABEL: version, TRACK_LABEL: "canary"})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace"),
            "labels": deployment_labels,
            "annotations": {TOTAL_ANNOTATION: str(total), VERSION_ANNOTATION: version,
                            STABLE_ANNOTATION: meta["name"], WEIGHT_ANNOTATION: "0"},
        },
        "spec": spec,
    }


def promotion_patch(stable: dict[str, Any], *, version: str, image: str, container: str) -> dict[str, Any]:
    """Strategic-merge patch giving the stable Deployment the new image (containers merge by name,
    sidecars untouched) and its ``version`` label, guarded by the read ``resourceVersion``."""
    template: dict[str, Any] = {"spec": {"containers": [{"name": container, "image": image}]}}
    if not version_pinned(stable):
        template["metadata"] = {"labels": {VERSION_LABEL: version}}
    return {"metadata": {"resourceVersion": stable["metadata"].get("resourceVersion")},
            "spec": {"template": template}}


def canary_update_patch(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """Merge patch turning an existing canary Deployment (a leftover) into ``wanted``."""
    return {
        "metadata": {"resourceVersion": current["metadata"].get("resourceVersion"),
                     "labels": wanted["metadata"]["labels"], "annotations": wanted["metadata"]["annotations"]},
        "spec": {"replicas": wanted["spec"]["replicas"], "template": wanted["spec"]["template"]},
    }


class Workloads:
    """Reads, scales and waits on the stable and canary Deployments of one release."""

    def __init__(self, api: KubeApi, *, stable: str, canary: str, poll_interval: float = 1.0,
                 scale_timeout: float = 45.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.api = api
        self.stable = stable
        self.canary = canary
        self.poll_interval = poll_interval
        self.scale_timeout = scale_timeout
        self._clock = clock
        self._sleep = sleep

    def get_stable(self) -> dict[str, Any]:
        return self.api.get_deployment(self.stable)

    def find_canary(self) -> dict[str, Any] | None:
        return self.api.find_deployment(self.canary)

    def total(self, configured: int | None = None) -> int:
        """Total replicas: configured, else recorded on the canary at deploy, else the stable's."""
        if configured:
            return configured
        canary = self.find_canary()
        recorded = ((canary or {}).get("metadata", {}).get("annotations") or {}).get(TOTAL_ANNOTATION)
        if recorded and recorded.isdigit() and int(recorded) > 0:
            return int(recorded)
        return max(1, int(self.get_stable()["spec"].get("replicas", 1)))

    def scale(self, name: str, replicas: int) -> None:
        self.api.scale_deployment(name, replicas)

    def wait_rollout(self, name: str, timeout: float) -> dict[str, Any]:
        """Poll until ``rollout_status`` says done. Raises ``ProgressDeadlineExceeded`` as kubectl does
        and ``TimeoutError`` after ``timeout`` seconds."""
        deadline = self._clock() + timeout
        while True:
            deployment = self.api.get_deployment(name)
            done, message = rollout_status(deployment)
            if done:
                return deployment
            if self._clock() >= deadline:
                raise TimeoutError(message)
            self._sleep(self.poll_interval)

    def scale_and_wait(self, name: str, replicas: int) -> None:
        """Scale, then wait until the Deployment serves that many available replicas."""
        self.scale(name, replicas)
        try:
            self.wait_rollout(name, self.scale_timeout)
        except (TimeoutError, ProgressDeadlineExceeded) as exc:
            raise PlatformError(f'deployment "{name}" did not reach {replicas} available replicas: {exc}',
                                operation=self.api.operation) from None

    def set_canary_annotation(self, key: str, value: str) -> None:
        def change(obj: dict[str, Any]) -> dict[str, Any] | None:
            if (obj["metadata"].get("annotations") or {}).get(key) == value:
                return None
            return {"metadata": {"resourceVersion": obj["metadata"].get("resourceVersion"),
                                 "annotations": {key: value}}}

        self.api.update(lambda: self.api.get_deployment(self.canary), change,
                        lambda obj, patch: self.api.patch_deployment(self.canary, patch,
                                                                     content_type=STRATEGIC_MERGE_PATCH))

    def stamp_canary(self, stamp: Callable[[dict[str, str]], dict[str, str]]) -> None:
        """Write the annotations ``stamp`` returns for the canary as just (re-)read; on a 409 it is
        asked again, so it can refuse (raise) when what it guards changed meanwhile."""
        def change(obj: dict[str, Any]) -> dict[str, Any] | None:
            annotations = stamp(obj["metadata"].get("annotations") or {})
            if not annotations:
                return None
            return {"metadata": {"resourceVersion": obj["metadata"].get("resourceVersion"),
                                 "annotations": annotations}}

        self.api.update(lambda: self.api.get_deployment(self.canary), change,
                        lambda obj, patch: self.api.patch_deployment(self.canary, patch, content_type=MERGE_PATCH))
