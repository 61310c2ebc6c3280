"""KubeEmulator: a real Kubernetes API endpoint on 127.0.0.1 for tests, reached through a kubeconfig.

Tests talk to it only as the pipeline talks to a cluster — the official client loaded from a
kubeconfig file — so client behaviour (content types, serialization, error mapping) is exercised
rather than mocked. uvicorn runs in a background thread because the official client is synchronous:
a server on the test's own thread would deadlock the first request.
"""

from __future__ import annotations

import copy
import secrets
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
import yaml

from . import resources
from .controller import DeploymentController
from .faults import Faults
from .rbac import PolicyRule, Rbac
from .server import AuditEntry, KubeApi
from .store import Store

CONTEXT = "emulator"


class KubeEmulator:
    def __init__(
        self,
        namespace: str = "default",
        role_manifest: Path | str | None = None,
        convergence_seconds: float = 0.3,
        controller_interval: float = 0.05,
    ) -> None:
        self.namespace = namespace
        self.token = secrets.token_urlsafe(24)
        self.faults = Faults()
        self._stuck_images: set[str] = set()
        self.rbac = Rbac.from_manifest(Path(role_manifest), namespace) if role_manifest else None
        self.store = Store()
        self.controller = DeploymentController(self.store, convergence_seconds, self._stuck_images, controller_interval)
        self._audit: list[AuditEntry] = []
        self._audit_lock = threading.Lock()
        self._api = KubeApi(self.store, self.faults, self.token, self.rbac, self._record)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._tmp: Path | None = None
        self.url = ""
        self.kubeconfig_path = Path()

    # --------------------------------------------------------------------------------- lifecycle
    def start(self) -> KubeEmulator:
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto
        # says TCP, and without it Nagle + delayed ACK add ~40 ms to every response.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._api.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="kube-emulator-http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("kube emulator HTTP server did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}"
        self._tmp = Path(tempfile.mkdtemp(prefix="kube-emulator-"))
        self.kubeconfig_path = self._tmp / "kubeconfig"
        self.kubeconfig_path.write_text(yaml.safe_dump(self.kubeconfig()))
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
        self._api.stopping.set()
        self.store.close_watchers()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------------------- client access
    def kubeconfig(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": CONTEXT, "cluster": {"server": self.url}}],
            "users": [{"name": CONTEXT, "user": {"token": self.token}}],
            "contexts": [
                {"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": self.namespace}}
            ],
            "current-context": CONTEXT,
            "preferences": {},
        }

    def api_client(self) -> Any:
        """An official-client ApiClient built from the kubeconfig file (as the pipeline builds its own)."""
        from kubernetes import config

        return config.new_client_from_config(
            config_file=str(self.kubeconfig_path), context=CONTEXT, persist_config=False
        )

    # ------------------------------------------------------------------------- direct state access
    def seed(self, obj: dict[str, Any], *, settled: bool = True) -> dict[str, Any]:
        """Store an object as-is (no RBAC, no faults). A seeded Deployment is reconciled at once;
        with `settled` (the default) it is already rolled out, as an app running before the test."""
        res = resources.find_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        if res is None:
            raise ValueError(f"the emulator does not serve {obj.get('apiVersion')} {obj.get('kind')}")
        obj = copy.deepcopy(obj)
        namespace = (obj.get("metadata") or {}).get("namespace") or self.namespace
        with self.store.lock:
            self.store.fill_new_metadata(res, obj, namespace)
            self.store._prepare(res, obj, None)
            stored = self.store.write(res, obj)
            if res.kind == "Deployment":
                self.controller.reconcile(stored, settled=settled)
                stored = self.store.read(res, namespace, stored["metadata"]["name"]) or stored
        return stored

    def get(self, api_version: str, kind_plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        res = self._resource(api_version, kind_plural)
        obj = self.store.read(res, namespace, name)
        if obj is not None:
            obj["apiVersion"] = api_version
        return obj

    def list(self, api_version: str, kind_plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        res = self._resource(api_version, kind_plural)
        items = self.store.items(res, namespace)
        for obj in items:
            obj["apiVersion"] = api_version
        return items

    @staticmethod
    def _resource(api_version: str, plural: str) -> resources.Resource:
        group, version = resources.split_api_version(api_version)
        res = resources.find(group, version, plural)
        if res is None:
            raise ValueError(f"the emulator does not serve {api_version} {plural}")
        return res

    @property
    def convergence_seconds(self) -> float:
        """How long a rollout or scale takes to become available; settable between steps of a test."""
        return self.controller.convergence

    @convergence_seconds.setter
    def convergence_seconds(self, seconds: float) -> None:
        self.controller.convergence = seconds

    @property
    def stuck_images(self) -> set[str]:
        """Images whose pods never become ready; mutate it or assign a new set."""
        return self._stuck_images

    @stuck_images.setter
    def stuck_images(self, images: set[str]) -> None:
        if images is not self._stuck_images:
            self._stuck_images.clear()
            self._stuck_images.update(images)

    @property
    def audit(self) -> list[AuditEntry]:
        with self._audit_lock:
            return list(self._audit)

    def clear_audit(self) -> None:
        with self._audit_lock:
            self._audit.clear()

    @property
    def rbac_rules(self) -> tuple[PolicyRule, ...] | None:
        return self.rbac.rules if self.rbac else None

    def _record(self, entry: AuditEntry) -> None:
        with self._audit_lock:
            self._audit.append(entry)
