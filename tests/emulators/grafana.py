"""A Grafana HTTP API emulator: a real HTTP server on 127.0.0.1 for the parts canaryflow uses.

Starlette served by uvicorn in a background thread (so synchronous clients do not block its loop).
It keeps what Grafana keeps for these calls and answers as Grafana does:

- ``GET /api/health`` (no token needed, as in Grafana).
- ``POST /api/dashboards/db``: a new uid is version 1 with an id; an existing uid needs the posted
  ``dashboard.version`` to equal the current one unless ``overwrite`` (else 412 ``version-mismatch``);
  every save is a new version with its message.
- ``GET /api/dashboards/uid/{uid}`` → ``{dashboard, meta}``; 404 for an unknown uid.
- ``GET /api/dashboards/uid/{uid}/versions``: the Grafana 11.6+/12 object shape
  ``{versions, continueToken}`` (paged by ``limit``/``continueToken``), or the older plain list
  (``versions_shape = "list"``).
- ``POST /api/dashboards/uid/{uid}/restore {"version": N}``: a *new* version with the content of
  version N and the message ``Restored from version N``.
- ``POST/GET /api/annotations`` (filters ``dashboardUID``, ``tags`` — all must match —, ``limit``).

Bearer tokens: unknown or missing → 401; a token with the Viewer role → 403 on every write.
Faults (``fail_next``, ``fail_all``, ``delay``) are applied before any state changes.
"""

from __future__ import annotations

import copy
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class _Version:
    version: int
    model: dict[str, Any]
    message: str
    created: str
    restored_from: int = 0
    parent_version: int = 0


@dataclass
class _Dashboard:
    id: int
    uid: str
    folder_uid: str | None
    versions: list[_Version] = field(default_factory=list)  # oldest first

    @property
    def current(self) -> _Version:
        return self.versions[-1]


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "dashboard"


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class GrafanaEmulator:
    """Start with ``with GrafanaEmulator() as g:``; ``g.url`` is the base URL, ``g.token`` an Editor token."""

    def __init__(self, *, token: str = "glsa_editor_token_0123456789",
                 viewer_token: str = "glsa_viewer_token_0123456789") -> None:
        self.token = token
        self.viewer_token = viewer_token
        self.roles: dict[str, str] = {token: "Editor", viewer_token: "Viewer"}
        self.versions_shape = "object"  # or "list" (Grafana up to 11.x)
        self.page_size: int | None = None  # force pagination of the object shape
        self.delay = 0.0  # seconds before answering anything
        self._fail_remaining = 0
        self._fail_status = 500
        self._fail_all: int | None = None
        self.dashboards: dict[str, _Dashboard] = {}
        self.annotations: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status) answered
        self.authorizations: list[str] = []  # raw Authorization headers received, for assertions
        self._lock = threading.Lock()
        self._next_id = 1
        self._next_annotation = 1
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- control -----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, count: int, status: int = 500) -> None:
        with self._lock:
            self._fail_remaining, self._fail_status = count, status

    def fail_all(self, status: int | None = 500) -> None:
        """Answer every request with ``status`` (``None`` to stop)."""
        with self._lock:
            self._fail_all = status

    def dashboard(self, uid: str) -> dict[str, Any]:
        """The current model of a stored dashboard (a copy)."""
        with self._lock:
            return copy.deepcopy(self.dashboards[uid].current.model)

    def history(self, uid: str) -> list[dict[str, Any]]:
        """Version history, oldest first: ``{version, message, restoredFrom, model}``."""
        with self._lock:
            return [{"version": v.version, "message": v.message, "restoredFrom": v.restored_from,
                     "model": copy.deepcopy(v.model)} for v in self.dashboards[uid].versions]

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> GrafanaEmulator:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app(), log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="grafana-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("Grafana emulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> GrafanaEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP --------------------------------------------------------------------------------------

    def app(self) -> Starlette:
        def gated(handler: Any) -> Any:
            async def endpoint(request: Request) -> Response:
                response = await self._gate(request)
                if response is None:
                    response = await handler(request)
                with self._lock:
                    self.requests.append((request.method, request.url.path, response.status_code))
                return response
            return endpoint

        return Starlette(routes=[
            Route("/api/health", gated(self._health), methods=["GET"]),
            Route("/api/dashboards/db", gated(self._save), methods=["POST"]),
            Route("/api/dashboards/uid/{uid}", gated(self._get), methods=["GET"]),
            Route("/api/dashboards/uid/{uid}/versions", gated(self._versions), methods=["GET"]),
            Route("/api/dashboards/uid/{uid}/restore", gated(self._restore), methods=["POST"]),
            Route("/api/annotations", gated(self._annotations), methods=["GET", "POST"]),
        ])

    async def _gate(self, request: Request) -> Response | None:
        """Faults first (before any state changes), then authentication and authorisation."""
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        with self._lock:
            header = request.headers.get("authorization", "")
            if header:
                self.authorizations.append(header)
            status = self._fail_all
            if status is None and self._fail_remaining > 0:
                self._fail_remaining -= 1
                status = self._fail_status
        if status is not None:
            return JSONResponse({"message": "Internal Server Error (injected)"}, status_code=status)
        if request.url.path == "/api/health":
            return None
        token = header[7:] if header.startswith("Bearer ") else None
        role = self.roles.get(token) if token else None
        if role is None:
            return JSONResponse({"message": "Unauthorized"}, status_code=401)
        if request.method in WRITE_METHODS and role == "Viewer":
            return JSONResponse({"accessErrorId": "ACE0000000001", "message": "You'll need additional "
                                 "permissions to perform this action.", "title": "Access denied"}, status_code=403)
        return None

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"commit": "emulator", "database": "ok", "version": "11.6.0-emulator"})

    async def _save(self, request: Request) -> Response:
        try:
            body = await request.json()
            model = dict(body["dashboard"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"message": "bad request data"}, status_code=400)
        if not model.get("title"):
            return JSONResponse({"message": "Dashboard title cannot be empty", "status": "empty-name"},
                                status_code=400)
        overwrite = bool(body.get("overwrite"))
        with self._lock:
            uid = model.get("uid") or f"emu{self._next_id:06d}"
            existing = self.dashboards.get(uid)
            if existing is None:
                stored = _Dashboard(id=self._next_id, uid=uid, folder_uid=body.get("folderUid"))
                self._next_id += 1
                self.dashboards[uid] = stored
                version = 1
            else:
                if not overwrite and model.get("version") != existing.current.version:
                    return JSONResponse({"message": "The dashboard has been changed by someone else",
                                         "status": "version-mismatch"}, status_code=412)
                stored, version = existing, existing.current.version + 1
                if body.get("folderUid") is not None:
                    stored.folder_uid = body["folderUid"]
            model.update(id=stored.id, uid=uid, version=version)
            parent = stored.versions[-1].version if stored.versions else 0
            stored.versions.append(_Version(version, model, str(body.get("message") or ""), _now_iso(),
                                            parent_version=parent))
            return JSONResponse(self._saved(stored))

    def _saved(self, stored: _Dashboard) -> dict[str, Any]:
        slug = _slug(stored.current.model.get("title", ""))
        return {"id": stored.id, "uid": stored.uid, "url": f"/d/{stored.uid}/{slug}", "status": "success",
                "version": stored.current.version, "slug": slug}

    async def _get(self, request: Request) -> Response:
        uid = request.path_params["uid"]
        with self._lock:
            stored = self.dashboards.get(uid)
            if stored is None:
                return JSONResponse({"message": "Dashboard not found"}, status_code=404)
            current = stored.current
            slug = _slug(current.model.get("title", ""))
            meta = {"type": "db", "canSave": True, "canEdit": True, "slug": slug, "url": f"/d/{uid}/{slug}",
                    "version": current.version, "folderUid": stored.folder_uid or "",
                    "created": stored.versions[0].created, "updated": current.created}
            return JSONResponse({"dashboard": copy.deepcopy(current.model), "meta": meta})

    async def _versions(self, request: Request) -> Response:
        uid = request.path_params["uid"]
        with self._lock:
            stored = self.dashboards.get(uid)
            if stored is None:
                return JSONResponse({"message": "Dashboard not found"}, status_code=404)
            entries = [{"id": stored.id * 1000 + v.version, "dashboardId": stored.id, "uid": uid,
                        "parentVersion": v.parent_version, "restoredFrom": v.restored_from,
                        "version": v.version, "created": v.created, "createdBy": "sa-canaryflow",
                        "message": v.message} for v in reversed(stored.versions)]
        limit = int(request.query_params.get("limit") or 0) or None
        if self.versions_shape == "list":
            return JSONResponse(entries[:limit] if limit else entries)
        size = min(x for x in (limit, self.page_size, len(entries) or 1) if x)
        offset = int(request.query_params.get("continueToken") or 0)
        page = entries[offset:offset + size]
        more = offset + size < len(entries)
        return JSONResponse({"continueToken": str(offset + size) if more else "", "versions": page})

    async def _restore(self, request: Request) -> Response:
        uid = request.path_params["uid"]
        try:
            wanted = int((await request.json())["version"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"message": "bad request data"}, status_code=400)
        with self._lock:
            stored = self.dashboards.get(uid)
            if stored is None:
                return JSONResponse({"message": "Dashboard not found"}, status_code=404)
            source = next((v for v in stored.versions if v.version == wanted), None)
            if source is None:
                return JSONResponse({"message": "Dashboard version not found"}, status_code=404)
            version = stored.current.version + 1
            model = copy.deepcopy(source.model)
            model["version"] = version
            stored.versions.append(_Version(version, model, f"Restored from version {wanted}", _now_iso(),
                                            restored_from=wanted, parent_version=stored.current.version))
            return JSONResponse(self._saved(stored))

    async def _annotations(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                body = await request.json()
                text = str(body["text"])
            except (ValueError, KeyError, TypeError):
                return JSONResponse({"message": "bad request data"}, status_code=400)
            with self._lock:
                dashboard_uid = body.get("dashboardUID")
                stored = self.dashboards.get(dashboard_uid) if dashboard_uid else None
                if dashboard_uid and stored is None:
                    return JSONResponse({"message": "Dashboard not found"}, status_code=404)
                now = int(time.time() * 1000)
                start = int(body.get("time") or now)
                annotation = {"id": self._next_annotation, "dashboardUID": dashboard_uid or "",
                              "dashboardId": stored.id if stored else 0, "panelId": int(body.get("panelId") or 0),
                              "time": start, "timeEnd": int(body.get("timeEnd") or start),
                              "tags": [str(t) for t in body.get("tags") or []], "text": text,
                              "created": now, "updated": now}
                self._next_annotation += 1
                self.annotations.append(annotation)
            return JSONResponse({"message": "Annotation added", "id": annotation["id"]})
        params = request.query_params
        tags = set(params.getlist("tags"))
        dashboard_uid = params.get("dashboardUID")
        limit = int(params.get("limit") or 100)
        with self._lock:
            found = [copy.deepcopy(a) for a in self.annotations
                     if (not dashboard_uid or a["dashboardUID"] == dashboard_uid) and tags <= set(a["tags"])]
        found.sort(key=lambda a: (a["time"], a["id"]), reverse=True)
        return JSONResponse(found[:limit])
