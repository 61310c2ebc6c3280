"""The Kubernetes platform: the canary as a Deployment ``<deployment>-canary``, traffic by a router.

- ``deploy`` builds the canary from the stable Deployment with the new image (labels
  ``version=<new>``, ``track=canary``); the router first records the original routing with 0% to
  the canary. ``wait_ready`` follows the canary's rollout as ``kubectl rollout status`` does.
- ``set_weight`` moves users with the router (``replicas``, ``istio`` or ``gateway-api``).
- ``promote`` gives the stable Deployment the canary's image, waits for its rollout, returns all
  traffic to stable (now the new version) and deletes the canary.
- ``rollback`` sends traffic to stable first, then removes the canary. If the stable Deployment
  already runs the new version (a promotion was interrupted), it is first undone as
  ``kubectl rollout undo`` would, and waited for, before traffic moves back to it.

Traffic leases: ``set_weight(..., lease_seconds=)`` writes the release's lease (flow run id,
holder, RFC 3339 expiry: ``canaryflow.kube.lease``) onto the object carrying the split — the
VirtualService / HTTPRoute, or the canary Deployment for the replicas router — in the same
resourceVersion-guarded write as the weight, and renews it each round. A SIGKILLed worker runs no
crash hook; ``canaryflow reconcile`` (the ``canary-reconcile`` deployment) then restores stable once
the lease has expired and no live run holds it. If a renewal finds its lease gone, the reconciler
took over: ``LeaseLost`` ends the release (an abort), the weight is not written again. Rolling back
by hand works from the cluster's own state too (original routing in an annotation of the routing
object, total replicas and version on the canary Deployment), so any later process can do it.
"""

from __future__ import annotations

import logging
import re
import string
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from canaryflow.errors import ConfigError, PlatformError, RolloutStuck
from canaryflow.kube import routers
from canaryflow.kube.client import MERGE_PATCH, STRATEGIC_MERGE_PATCH, KubeApi, KubeConflict, KubeNotFound, api_client
from canaryflow.kube.lease import (
    Holder,
    check_renewal,
    current_holder,
    new_lease,
    rfc3339,
    utcnow,
)
from canaryflow.kube.rollout import ProgressDeadlineExceeded, UndoRefused, undo_target
from canaryflow.kube.routers._recorded import merge_patch_between
from canaryflow.kube.target import KubernetesTarget
from canaryflow.kube.workloads import (
    VERSION_ANNOTATION,
    Workloads,
    build_canary,
    canary_update_patch,
    deployed_version,
    pick_container,
    promotion_patch,
    with_tag,
)

if TYPE_CHECKING:
    from canaryflow.settings import Settings
    from canaryflow.spec import ReleaseSpec

log = logging.getLogger(__name__)

#: What Kubernetes accepts as a label value; the canary carries ``version=<version>``.
LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)")


class KubernetesPlatform:
    name = "kubernetes"

    def __init__(
        self, api: KubeApi, *, service: str, version: str, target: KubernetesTarget,
        rollout_timeout: float = 300.0, poll_interval: float = 1.0, scale_timeout: float = 45.0,
        clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
        environment: str | None = None, holder: Holder | None = None, now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.api = api
        self.environment = environment
        self._holder = holder
        self._now = now
        self._lease_seconds: float | None = None
        #: Expiry of the lease this release wrote last (None: it holds none on the cluster).
        self.lease_expires: datetime | None = None
        self.service = service
        self.version = version
        self.target = target
        self.namespace = api.namespace
        self.rollout_timeout = rollout_timeout
        self.stable_name = target.deployment_name(service)
        self.canary_name = target.canary_deployment_name(service)
        self.workloads = Workloads(api, stable=self.stable_name, canary=self.canary_name,
                                   poll_interval=poll_interval, scale_timeout=scale_timeout, clock=clock, sleep=sleep)
        self.router = self._router()

    @classmethod
    def from_settings(cls, settings: Settings, spec: ReleaseSpec, **options: Any) -> KubernetesPlatform:
        if spec.kubernetes is None:
            raise ConfigError("platform kubernetes needs the spec's kubernetes section", fields=("kubernetes",))
        client = api_client(kubeconfig=settings.kubeconfig, context=settings.kube_context,
                            in_cluster=settings.kube_in_cluster)
        api = KubeApi(client, namespace=spec.namespace, **{k: options.pop(k) for k in list(options)
                                                          if k in ("retries", "backoff_base", "backoff_max",
                                                                   "conflict_retries", "request_timeout")})
        options.setdefault("rollout_timeout", spec.ready_timeout_seconds)
        return cls(api, service=spec.service, version=spec.version, target=spec.kubernetes,
                   environment=spec.environment.value, **options)

    def _router(self) -> routers.TrafficRouter:
        t, service = self.target, self.service
        if t.router == "replicas":
            return routers.create("replicas", workloads=self.workloads, total_replicas=t.total_replicas)
        if t.router == "istio":
            return routers.create("istio", api=self.api, virtual_service=t.virtual_service, host=t.host,
                                  stable_subset=t.stable_subset, canary_subset=t.canary_subset)
        return routers.create(t.router, api=self.api, http_route=t.http_route,
                              stable_service=t.stable_service_name(service),
                              canary_service=t.canary_service_name(service))

    def close(self) -> None:
        self.api.close()

    # -- reading -----------------------------------------------------------------------------------

    def _template_values(self, version: str) -> dict[str, str]:
        return {"service": self.service, "version": version, "namespace": self.namespace,
                "deployment": self.stable_name}

    def stable_version(self) -> str | None:
        with self.api.doing("stable_version"):
            return deployed_version(self.workloads.get_stable(), self.target.container, self.service)

    def canary_url(self) -> str:
        return string.Template(self.target.canary_url).safe_substitute(self._template_values(self.version))

    def get_weight(self) -> int:
        with self.api.doing("get_weight"):
            return self.router.get_weight()

    def check_version(self, version: str) -> None:
        if not LABEL_VALUE.fullmatch(version):
            raise PlatformError(f"version {version!r} cannot be a Kubernetes label value (at most 63 letters, "
                                "digits, '-', '_' or '.', starting and ending with a letter or digit)",
                                operation="check_version")
        with self.api.doing("check_version"):
            try:
                self._image(self.workloads.get_stable(), version)
            except (KeyError, ValueError) as exc:
                raise PlatformError(f"cannot build the image reference for {version!r}: {exc}",
                                    operation="check_version") from None

    def canary_problem(self) -> str | None:
        with self.api.doing("canary_problem"):
            canary = self.workloads.find_canary()
        if canary is None:
            return f'canary deployment "{self.canary_name}" is gone'
        wanted = int((canary.get("spec") or {}).get("replicas", 1))
        available = int((canary.get("status") or {}).get("availableReplicas") or 0)
        if wanted > 0 and available == 0:
            return f'canary deployment "{self.canary_name}" has no available replica (0 of {wanted})'
        return None

    # -- the release -------------------------------------------------------------------------------

    def _image(self, stable: dict[str, Any], version: str) -> tuple[str, str]:
        container = pick_container(stable, self.target.container, self.service)
        if self.target.image:
            image = string.Template(self.target.image).substitute(self._template_values(version))
        else:
            image = with_tag(container.get("image") or "", version)
        return container["name"], image

    def deploy(self, version: str) -> None:
        with self.api.doing("deploy"):
            stable = self.workloads.get_stable()
            container, image = self._image(stable, version)
            stable_replicas = int(stable["spec"].get("replicas", 1))
            total = self.target.total_replicas or (stable_replicas if stable_replicas > 0 else self.workloads.total())
            replicas = 1 if self.target.router == "replicas" else total
            wanted = build_canary(stable, name=self.canary_name, version=version, image=image,
                                  container=container, replicas=replicas, total=total)
            self.router.prepare()  # routing recorded, canary at 0%, before any canary pod exists
            try:
                self.api.create_deployment(wanted)
                log.info('created canary deployment "%s" (%s)', self.canary_name, version)
                return
            except KubeConflict:  # a canary is already there (a retried deploy or a leftover): update it
                pass

            def change(current: dict[str, Any]) -> dict[str, Any] | None:
                same = ((current["metadata"].get("annotations") or {}).get(VERSION_ANNOTATION) == version
                        and pick_container(current, container, self.service).get("image") == image)
                return None if same else canary_update_patch(current, wanted)

            self.api.update(lambda: self.api.get_deployment(self.canary_name), change,
                            lambda _obj, patch: self.api.patch_deployment(self.canary_name, patch,
                                                                          content_type=MERGE_PATCH))

    def wait_ready(self, *, timeout: float) -> None:
        with self.api.doing("wait_ready"):
            try:
                self.workloads.wait_rollout(self.canary_name, timeout)
            except ProgressDeadlineExceeded as exc:
                raise RolloutStuck(f"{exc} (canary {self.version})") from None
            except TimeoutError as exc:
                raise RolloutStuck(f'canary deployment "{self.canary_name}" not ready after {timeout:.0f}s: '
                                   f"{exc}") from None
            except KubeNotFound:
                raise RolloutStuck(f'no canary is deployed (deployment "{self.canary_name}" not found in '
                                   f'namespace "{self.namespace}")') from None

    def set_weight(self, weight: int, *, lease_seconds: float | None = None) -> None:
        """Move ``weight`` percent of users to the canary, writing or renewing the traffic lease when
        ``lease_seconds`` is given. Raises ``LeaseLost`` when the reconciler took the lease back."""
        with self.api.doing("set_weight"):
            self._write_weight(weight, lease_seconds)

    # -- the lease ---------------------------------------------------------------------------------

    @property
    def holder(self) -> Holder:
        if self._holder is None:
            self._holder = current_holder()
        return self._holder

    def release_facts(self) -> dict[str, Any]:
        """What the reconciler needs to roll back as this release would."""
        return {"service": self.service, "version": self.version, "environment": self.environment,
                "target": self.target.model_dump(mode="json", exclude_none=True)}

    def _stamp(self, lease_seconds: float | None) -> Callable[[dict[str, str]], dict[str, str]] | None:
        held = self.lease_expires is not None
        if lease_seconds is None and not held:
            return None
        pending: list[datetime] = []

        def stamp(annotations: dict[str, str]) -> dict[str, str]:
            now = self._now()
            check_renewal(annotations, mine=self.holder, held=held, now=now, operation=self.api.operation)
            if lease_seconds is None:
                return {}  # nothing to renew, but a lease taken back still stops the write
            lease = new_lease(self.holder, lease_seconds, self.release_facts(), now=now)
            pending[:] = [lease.expires]
            return lease.annotations()

        stamp.pending = pending  # type: ignore[attr-defined]
        return stamp

    def _write_weight(self, weight: int, lease_seconds: float | None) -> None:
        stamp = self._stamp(lease_seconds)
        self.router.set_weight(weight, lease=stamp)
        if stamp is not None and stamp.pending:  # type: ignore[attr-defined]
            self.lease_expires = stamp.pending[-1]  # type: ignore[attr-defined]
            self._lease_seconds = lease_seconds

    @property
    def after_failed_rollback(self) -> str:
        """What the run log says after a failed rollback (``Platform.after_failed_rollback``)."""
        return self.lease_note()

    def lease_note(self) -> str:
        """What protects users if this process cannot roll back now (true for this platform)."""
        if self.lease_expires is None:
            return ("no traffic lease is on the cluster (no user traffic was moved by this run); "
                    "run `canaryflow rollback` to remove the canary")
        return (f"the traffic lease on the cluster expires at {rfc3339(self.lease_expires)}; "
                "canary-reconcile then restores stable")

    def _wait_stable(self, what: str) -> None:
        try:
            self.workloads.wait_rollout(self.stable_name, self.rollout_timeout)
        except ProgressDeadlineExceeded as exc:
            raise PlatformError(f"{what}: {exc}", operation=self.api.operation) from None
        except TimeoutError as exc:
            raise PlatformError(f'{what}: deployment "{self.stable_name}" not rolled out after '
                                f"{self.rollout_timeout:.0f}s: {exc}", operation=self.api.operation) from None

    def promote(self) -> None:
        with self.api.doing("promote"):
            canary = self.workloads.find_canary()
            if canary is None:
                if deployed_version(self.workloads.get_stable(), self.target.container, self.service) == self.version:
                    return  # promoted already (a retried promote)
                raise PlatformError(f'no canary to promote (deployment "{self.canary_name}" not found in '
                                    f'namespace "{self.namespace}")', operation="promote")
            version = (canary["metadata"].get("annotations") or {}).get(VERSION_ANNOTATION) or self.version
            container = pick_container(canary, self.target.container, self.service)
            if self.lease_expires is not None and self._lease_seconds:
                # The promotion renews nothing while the stable Deployment rolls out: cover that wait.
                self._write_weight(self.router.get_weight(), self._lease_seconds + self.rollout_timeout)
            total = self.workloads.total(self.target.total_replicas)

            def change(stable: dict[str, Any]) -> dict[str, Any] | None:
                patch = promotion_patch(stable, version=version, image=container["image"], container=container["name"])
                if self.target.router == "replicas":
                    patch["spec"]["replicas"] = total
                return patch

            self.api.update(self.workloads.get_stable, change,
                            lambda _obj, patch: self.api.patch_deployment(self.stable_name, patch,
                                                                          content_type=STRATEGIC_MERGE_PATCH))
            self._wait_stable("promotion")
            self.router.restore()  # all traffic to stable, which now runs the new version
            self.api.delete_deployment(self.canary_name)
            self.lease_expires = None
            log.info('promoted %s: deployment "%s" updated, canary deleted', version, self.stable_name)

    def _undo_stable(self) -> bool:
        """Undo the stable Deployment's last rollout if it runs the released version. True if undone."""
        stable = self.workloads.get_stable()
        if deployed_version(stable, self.target.container, self.service) != self.version:
            return False
        selector = (stable["spec"].get("selector") or {}).get("matchLabels") or {}
        try:
            plan = undo_target(stable, self.api.list_replicasets(selector))
        except UndoRefused as exc:
            raise PlatformError(f"cannot undo the interrupted promotion: {exc}", operation="rollback") from None
        if plan.skipped:
            return False

        def change(current: dict[str, Any]) -> dict[str, Any] | None:
            meta = current["metadata"]
            return {"metadata": {"resourceVersion": meta.get("resourceVersion"),
                                 "annotations": merge_patch_between(meta.get("annotations") or {}, plan.annotations)},
                    "spec": {"template": merge_patch_between(current["spec"]["template"], plan.template)}}

        self.api.update(self.workloads.get_stable, change,
                        lambda _obj, patch: self.api.patch_deployment(self.stable_name, patch,
                                                                      content_type=MERGE_PATCH))
        log.warning('rolled deployment "%s" back to revision %d', self.stable_name, plan.revision)
        return True

    def rollback(self) -> None:
        """Traffic to stable first, then the canary goes. Idempotent; works from the cluster's state."""
        with self.api.doing("rollback"):
            if self._undo_stable():  # interrupted promotion: stable must serve the old version again first
                if self.target.router == "replicas":
                    self.workloads.scale(self.stable_name, self.workloads.total(self.target.total_replicas))
                self._wait_stable("rollback")
            try:
                self.router.restore()
            except PlatformError:
                # Traffic could not be moved (e.g. RBAC refused the scale): the canary must still go,
                # or users keep reaching it. Less capacity beats serving a version being rolled back.
                self.api.delete_deployment(self.canary_name)
                raise
            self.api.delete_deployment(self.canary_name)
            self.lease_expires = None
