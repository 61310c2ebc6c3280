"""A data plane for the Kubernetes API emulator: its state mirrored into a local platform controller.

The emulator is a control plane only: its Deployments have no pods and its routes carry no traffic.
``Dataplane`` plays kubelet and mesh for one service. A background thread reads the emulator's
objects and drives the local controller (``canaryflow.local.controller``) through its admin API,
so real processes serve real traffic that a real Prometheus scrapes:

- a canary Deployment appears: its image tag (``registry.example.com/checkout:v2`` -> ``v2``) is
  started as the local canary. Until that process answers ``/ready``, the canary's image is held in
  ``kube.stuck_images``, so the emulator reports its pods ready only once the process serving them
  is (an image the test itself put there stays stuck);
- the router's weight is copied into the controller's weights (no lease: the emulator is the
  authority): ``replicas`` = canary ready replicas / all ready replicas, ``istio`` = the canary
  subset's share of the VirtualService route, ``gateway-api`` = the canary backendRef's share of
  the HTTPRoute rule;
- the stable Deployment finishes rolling out the canary's version: the controller promotes;
- the canary Deployment goes away otherwise: the controller rolls back.

The emulator is read directly (not through its HTTP API), so the bridge shows up neither in the
audit log nor in RBAC decisions.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any

import httpx

from .emulator import KubeEmulator

ISTIO = "networking.istio.io/v1beta1"
GATEWAY = "gateway.networking.k8s.io/v1"


def image_tag(image: str) -> str | None:
    name, _, tag = image.rpartition(":")
    return tag if name and "/" not in tag and "@" not in image else None


def _ready(deployment: dict[str, Any] | None) -> int:
    return int(((deployment or {}).get("status") or {}).get("readyReplicas", 0))


def rolled_out(deployment: dict[str, Any]) -> bool:
    """Every replica of the Deployment's current template is available (``kubectl rollout status``)."""
    spec, status = deployment["spec"], deployment.get("status") or {}
    replicas = int(spec.get("replicas", 1))
    return (status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 1)
            and status.get("updatedReplicas", 0) >= replicas
            and status.get("availableReplicas", 0) >= replicas
            and status.get("replicas", 0) <= replicas)


def _share(canary: int, total: int) -> int:
    return 0 if total <= 0 else int(100 * canary / total + 0.5)


class Dataplane:
    """Mirror one service's stable/canary Deployments and route into a local controller.

    Use as a context manager (the thread starts on enter and is joined on exit). ``errors`` keeps
    whatever went wrong on the thread; ``check()`` raises if anything did.
    """

    def __init__(
        self, kube: KubeEmulator, controller_url: str, *, router: str, container: str = "checkout",
        deployment: str = "checkout", canary_deployment: str = "checkout-canary",
        virtual_service: str = "checkout", host: str = "checkout", stable_subset: str = "stable",
        canary_subset: str = "canary", http_route: str = "shop", stable_service: str = "checkout",
        canary_service: str = "checkout-canary", interval: float = 0.1,
    ) -> None:
        if router not in ("replicas", "istio", "gateway-api"):
            raise ValueError(f"unknown router {router!r}")
        self.kube = kube
        self.router = router
        self.container = container
        self.deployment = deployment
        self.canary_deployment = canary_deployment
        self.virtual_service, self.host = virtual_service, host
        self.stable_subset, self.canary_subset = stable_subset, canary_subset
        self.http_route, self.stable_service, self.canary_service = http_route, stable_service, canary_service
        self.interval = interval
        self.errors: list[str] = []
        self.actions: list[tuple[str, Any]] = []  # what the bridge asked the controller, in order
        self._held: set[str] = set()  # images this bridge keeps unready in the emulator
        self._client = httpx.Client(base_url=controller_url.rstrip("/") + "/-/", timeout=10)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kube-dataplane", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> Dataplane:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        self._release_all()
        self._client.close()

    def __enter__(self) -> Dataplane:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def check(self) -> None:
        if self.errors:
            raise AssertionError("data-plane bridge failed:\n" + "\n".join(self.errors))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception:  # keep mirroring; the test reads .errors
                self.errors.append(traceback.format_exc())
            self._stop.wait(self.interval)

    # -- one pass ----------------------------------------------------------------------------------
    def _deployment(self, name: str) -> dict[str, Any] | None:
        return self.kube.get("apps/v1", "deployments", self.kube.namespace, name)

    def _image(self, deployment: dict[str, Any]) -> str:
        containers = deployment["spec"]["template"]["spec"].get("containers") or []
        chosen = next((c for c in containers if c.get("name") == self.container), containers[0] if containers else {})
        return chosen.get("image", "")

    def _version(self, deployment: dict[str, Any]) -> str | None:
        return image_tag(self._image(deployment))

    def _call(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        response = self._client.request(method, path, json=json)
        if response.status_code >= 400:
            raise RuntimeError(f"controller {method} /-/{path} -> {response.status_code}: {response.text}")
        self.actions.append((path, json))
        return response.json()

    def sync(self) -> None:
        state = self._client.get("state").raise_for_status().json()
        local_stable = state["stable"]["version"]
        local_canary = state["canary"]
        stable, canary = self._deployment(self.deployment), self._deployment(self.canary_deployment)

        if local_canary is not None and stable is not None and rolled_out(stable) \
                and self._version(stable) == local_canary["version"]:
            self._call("POST", "promote")  # the stable Deployment now runs what the canary ran
            return
        if canary is None:
            self._release_all()
            if local_canary is not None or state["canary_weight"]:
                self._call("POST", "rollback")
            return

        version = self._version(canary)
        if version is None or version == local_stable:
            return  # the tail of a promotion: the canary Deployment still exists, serving stable's version
        if local_canary is None or local_canary["version"] != version:
            self._hold(canary)
            self._call("POST", "canary", {"version": version})
            return
        if local_canary["ready"]:
            self._release_all()
        weight = self.weight(stable, canary)
        if weight != state["canary_weight"] and (weight == 0 or local_canary["ready"]):
            self._call("PUT", "weights", {"canary_weight": weight, "lease_seconds": None})

    # -- readiness gate ----------------------------------------------------------------------------
    def _hold(self, canary: dict[str, Any]) -> None:
        """Keep the canary's pods unready in the emulator until the local process is ready. Only the
        service container's image: sidecars are shared with the stable Deployment."""
        image = self._image(canary)
        if _ready(canary) or image in self.kube.stuck_images:
            return  # reported ready already (un-readying it would be wrong), or stuck by the test
        self._held.add(image)
        self.kube.stuck_images.add(image)

    def _release_all(self) -> None:
        for image in list(self._held):
            self.kube.stuck_images.discard(image)
            self._held.discard(image)

    # -- weights -----------------------------------------------------------------------------------
    def weight(self, stable: dict[str, Any] | None, canary: dict[str, Any]) -> int:
        """The share of users the emulator's objects send to the canary, in percent."""
        if self.router == "replicas":
            return _share(_ready(canary), _ready(stable) + _ready(canary))
        if self.router == "istio":
            return self._istio_weight()
        return self._gateway_weight()

    def _istio_weight(self) -> int:
        vs = self.kube.get(ISTIO, "virtualservices", self.kube.namespace, self.virtual_service)
        for rule in ((vs or {}).get("spec") or {}).get("http") or []:
            route = rule.get("route") or []
            ours = [d for d in route if (d.get("destination") or {}).get("host") == self.host
                    and (d.get("destination") or {}).get("subset") in (self.stable_subset, self.canary_subset)]
            if not ours:
                continue
            if len(route) == 1:  # a lone destination takes everything, whatever its weight says
                return 100 if route[0]["destination"].get("subset") == self.canary_subset else 0
            canary = sum(int(d.get("weight", 0)) for d in ours
                         if d["destination"].get("subset") == self.canary_subset)
            return _share(canary, sum(int(d.get("weight", 0)) for d in route))
        return 0

    def _gateway_weight(self) -> int:
        route = self.kube.get(GATEWAY, "httproutes", self.kube.namespace, self.http_route)
        for rule in ((route or {}).get("spec") or {}).get("rules") or []:
            refs = rule.get("backendRefs") or []
            if not any(r.get("name") in (self.stable_service, self.canary_service) for r in refs):
                continue
            canary = sum(int(r.get("weight", 1)) for r in refs if r.get("name") == self.canary_service)
            return _share(canary, sum(int(r.get("weight", 1)) for r in refs))
        return 0
