"""The embedded local platform, seen from the release flow: a client of the local controller.

The controller (``canaryflow.local.controller``) owns the processes and the weighted proxy, so a
promoted version outlives the flow run that released it, just as a Deployment outlives kubectl.
One controller can run several services; every call names this client's service in its path
(``/-/services/<service>/...``), so a release can only ever touch its own service.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from canaryflow.errors import PlatformError, RolloutStuck, safe_url


class LocalPlatform:
    name = "local"
    after_failed_rollback = ("the controller's traffic lease returns users to stable when it expires; "
                             "the canary process stays until `canaryflow rollback` succeeds")

    def __init__(
        self, controller_url: str, *, service: str, transport: httpx.BaseTransport | None = None,
        poll_interval: float = 0.2,
    ) -> None:
        base = controller_url.rstrip("/")
        # Messages name the controller without any user and password its URL carries.
        self.controller_url = safe_url(base)
        self.service = service
        self._poll = poll_interval
        self._client = httpx.Client(base_url=f"{base}/-/services/{service}/", timeout=10, transport=transport)

    def close(self) -> None:
        self._client.close()

    def _call(self, operation: str, method: str, path: str, json: Any = None) -> Any:
        try:
            response = self._client.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise PlatformError(f"local controller at {self.controller_url} unreachable ({type(exc).__name__})",
                                operation=operation, transient=True) from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            # The controller answers {"error": ...}; a proxy in front of it may answer anything.
            detail = body.get("error", response.text) if isinstance(body, dict) else response.text
            raise PlatformError(f"HTTP {response.status_code}: {detail}", operation=operation,
                                transient=response.status_code >= 500)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise PlatformError(f"HTTP {response.status_code} without a JSON body (not the local controller?)",
                                operation=operation, transient=True) from None

    def state(self) -> dict[str, Any]:
        state = self._call("get_state", "GET", "state")
        if state.get("service") != self.service:
            raise PlatformError(f"controller serves {state.get('service')!r}, not {self.service!r}",
                                operation="get_state")
        return state

    def stable_version(self) -> str | None:
        stable = self.state().get("stable")
        return stable["version"] if stable else None

    def check_version(self, version: str) -> None:
        known = self.state().get("versions")
        if known is not None and version not in known:
            raise PlatformError(f"unknown version {version!r}; the catalogue has: {', '.join(known)}",
                                operation="check_version")

    def canary_problem(self) -> str | None:
        # Only a dead process counts: a missed readiness probe on a busy machine is not a crash.
        canary = self.state().get("canary")
        if canary is None:
            return "the canary is gone"
        if canary.get("exit_code") is not None:
            return f"canary {canary['version']} exited with code {canary['exit_code']}"
        return None

    def deploy(self, version: str) -> None:
        self._call("deploy", "POST", "canary", json={"version": version})

    def wait_ready(self, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            canary = self.state().get("canary")
            if canary is None:
                raise RolloutStuck("no canary is deployed")
            if canary.get("exit_code") is not None:
                raise RolloutStuck(f"canary {canary['version']} exited with code {canary['exit_code']} "
                                   "before becoming ready")
            if canary.get("ready"):
                return
            if time.monotonic() >= deadline:
                raise RolloutStuck(f"canary {canary['version']} not ready after {timeout:.0f}s")
            time.sleep(self._poll)

    def canary_url(self) -> str:
        canary = self.state().get("canary")
        if canary is None:
            raise PlatformError("no canary is deployed", operation="canary_url")
        return canary["url"]

    def set_weight(self, weight: int, *, lease_seconds: float | None = None) -> None:
        self._call("set_weight", "PUT", "weights", json={"canary_weight": weight, "lease_seconds": lease_seconds})

    def get_weight(self) -> int:
        return int(self.state()["canary_weight"])

    def promote(self) -> None:
        self._call("promote", "POST", "promote")

    def rollback(self) -> None:
        self._call("rollback", "POST", "rollback")
