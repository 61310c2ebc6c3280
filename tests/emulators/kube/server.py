"""The HTTP face of the emulator: Kubernetes REST paths, verbs, auth, RBAC, faults, audit, watch.

Every request goes through the same gate in the order a real API server applies them where it
matters to callers: authentication (401) -> authorization (403) -> injected faults -> the store.
A fault therefore never lets a write through, and a forbidden request never reaches a fault.
Handlers are async and the store calls are short critical sections, so one uvicorn loop serves the
synchronous official client, and long-lived watch streams, without blocking.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from . import resources
from .faults import Faults
from .rbac import Rbac
from .resources import Resource
from .selectors import field_matcher, label_matcher
from .status import (
    ApiError,
    bad_request,
    forbidden,
    injected,
    method_not_allowed,
    not_found,
    resource_not_served,
    unauthorized,
)
from .store import Event, Obj, Store

PUBLIC_PATHS = {"/version", "/healthz", "/livez", "/readyz"}
VERSION_INFO = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass(frozen=True)
class AuditEntry:
    """One request as the audit log would record it (api_group "" is the core group)."""

    verb: str
    api_group: str
    api_version: str
    resource: str
    subresource: str
    namespace: str
    name: str
    status: int
    path: str
    content_type: str = ""


@dataclass
class _Target:
    verb: str
    res: Resource | None
    group: str
    version: str
    plural: str
    namespace: str
    name: str
    subresource: str


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _error(exc: ApiError) -> Response:
    return _json(exc.body(), exc.code, exc.headers)


class KubeApi:
    def __init__(
        self,
        store: Store,
        faults: Faults,
        token: str,
        rbac: Rbac | None,
        record: Callable[[AuditEntry], None],
    ) -> None:
        self.store = store
        self.faults = faults
        self.token = token
        self.rbac = rbac
        self.record = record
        self.stopping = threading.Event()
        self.app = Starlette(
            routes=[Route("/{path:path}", self.handle, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])]
        )

    # ------------------------------------------------------------------------------- entry point
    async def handle(self, request: Request) -> Response:
        path = "/" + request.path_params["path"].strip("/")
        target = self._parse(request.method, path, request.query_params)
        body_bytes = await request.body()
        content_type = request.headers.get("content-type", "")
        name = target.name if target else ""
        if target and target.verb == "create" and body_bytes:
            try:
                name = ((json.loads(body_bytes) or {}).get("metadata") or {}).get("name", "") or ""
            except (ValueError, AttributeError):
                name = ""
        try:
            response = await self._gated(request, path, target, name, body_bytes, content_type)
        except ApiError as exc:
            response = _error(exc)
        except Exception as exc:  # an emulator bug: answer like the API server would, and keep it in the audit
            response = _error(ApiError(500, "InternalError", f"Internal error occurred: {type(exc).__name__}: {exc}"))
        self.record(
            AuditEntry(
                verb=target.verb if target else request.method.lower(),
                api_group=target.group if target else "",
                api_version=target.version if target else "",
                resource=target.plural if target else "",
                subresource=target.subresource if target else "",
                namespace=target.namespace if target else "",
                name=name,
                status=response.status_code,
                path=path,
                content_type=content_type,
            )
        )
        return response

    async def _gated(
        self, request: Request, path: str, target: _Target | None, name: str, body: bytes, content_type: str
    ) -> Response:
        if path not in PUBLIC_PATHS:
            header = request.headers.get("authorization", "")
            if not hmac.compare_digest(header.encode(), f"Bearer {self.token}".encode()):
                raise unauthorized()
        if target is None:
            return self._discovery(path, request)
        if target.res is None:
            raise resource_not_served()
        if self.rbac is not None and not self.rbac.allows(
            target.verb, target.group, target.plural, target.subresource, target.namespace, target.name
        ):
            label = f"{target.plural}/{target.subresource}" if target.subresource else target.plural
            raise forbidden(target.res, self.rbac.user, target.verb, label, target.namespace, target.name)
        fault = self.faults.take(target.verb, target.plural, target.subresource, name)
        if fault is not None:
            if fault.delay > 0:
                await asyncio.sleep(fault.delay)
            if fault.status:
                raise injected(fault.status, target.res, name, fault.retry_after)
        return await self._dispatch(request, target, body, content_type)

    # ------------------------------------------------------------------------------------ routing
    def _parse(self, method: str, path: str, query: Any) -> _Target | None:
        """Resource requests become a _Target; discovery and other non-resource paths give None."""
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 3 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 4 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = name = subresource = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, plural = rest[1], rest[2]
            name = rest[3] if len(rest) > 3 else ""
            subresource = rest[4] if len(rest) > 4 else ""
            if len(rest) > 5:
                return _Target("get", None, group, version, plural, namespace, name, subresource)
        elif len(rest) == 1:
            plural = rest[0]
        else:
            return _Target(method.lower(), None, group, version, rest[0], "", "", "")
        watching = query.get("watch", "").lower() in ("true", "1")
        verb = {
            "GET": "get" if name else ("watch" if watching else "list"),
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }[method]
        res = resources.find(group, version, plural)
        if res is not None and subresource and subresource not in res.subresources:
            res = None
        return _Target(verb, res, group, version, plural, namespace, name, subresource)

    async def _dispatch(self, request: Request, t: _Target, body: bytes, content_type: str) -> Response:
        res = t.res
        assert res is not None
        q = request.query_params
        dry_run = "All" in q.getlist("dryRun")
        if not t.namespace and t.verb not in ("list", "watch"):
            raise method_not_allowed()
        if t.verb == "get":
            obj = self.store.read(res, t.namespace, t.name)
            if obj is None:
                raise not_found(res, t.name)
            return _json(self.store.scale_of(res, obj) if t.subresource == "scale" else self._present(obj, t))
        if t.verb == "list":
            return _json(self._list(t, q))
        if t.verb == "watch":
            return await self._watch(t, q)
        if t.verb == "deletecollection":
            deleted = [
                self.store.delete(res, t.namespace, o["metadata"]["name"], dry_run=dry_run)
                for o in self._list(t, q)["items"]
            ]
            return _json({**self._list(t, q), "items": [self._present(o, t) for o in deleted]})

        payload = _parse_body(body, required=t.verb != "delete")
        if t.verb == "create":
            if t.name:
                raise method_not_allowed()
            return _json(self._present(self.store.create(res, t.namespace, payload, dry_run=dry_run), t), 201)
        if t.verb == "update":
            result = self.store.replace(res, t.namespace, t.name, payload, subresource=t.subresource, dry_run=dry_run)
            return _json(result if t.subresource == "scale" else self._present(result, t))
        if t.verb == "patch":
            result = self.store.patch(
                res, t.namespace, t.name, content_type, payload, subresource=t.subresource, dry_run=dry_run
            )
            return _json(result if t.subresource == "scale" else self._present(result, t))
        if t.verb == "delete":
            options = payload if isinstance(payload, dict) else {}
            if q.get("propagationPolicy"):
                options["propagationPolicy"] = q["propagationPolicy"]
            deleted = self.store.delete(res, t.namespace, t.name, options, dry_run=dry_run)
            if not res.delete_returns_status:
                return _json(self._present(deleted, t))
            details = {"name": t.name, "kind": res.plural, "uid": deleted["metadata"].get("uid")}
            if res.group:
                details["group"] = res.group
            return _json(
                {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
            )
        raise method_not_allowed()

    # ------------------------------------------------------------------------------ list & watch
    def _matcher(self, q: Any) -> Callable[[Obj], bool]:
        labels, fields = label_matcher(q.get("labelSelector")), field_matcher(q.get("fieldSelector"))
        return lambda obj: labels(obj) and fields(obj)

    def _list(self, t: _Target, q: Any) -> dict[str, Any]:
        assert t.res is not None
        match = self._matcher(q)
        with self.store.lock:
            items = [self._present(o, t) for o in self.store.items(t.res, t.namespace or None) if match(o)]
            rv = self.store.resource_version
        return {
            "kind": f"{t.res.kind}List",
            "apiVersion": t.res.api_version(t.version),
            "metadata": {"resourceVersion": str(rv)},
            "items": items,
        }

    async def _watch(self, t: _Target, q: Any) -> Response:
        res = t.res
        assert res is not None
        match = self._matcher(q)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()

        def listener(event: Event | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, event)
            except RuntimeError:  # loop already closed during shutdown
                pass

        since = q.get("resourceVersion") or ""
        opening: list[str] = []
        try:
            with self.store.lock:
                if since in ("", "0"):
                    opening = [
                        _line("ADDED", self._present(o, t))
                        for o in self.store.items(res, t.namespace or None)
                        if match(o)
                    ]
                    backlog = self.store.subscribe(listener, None)
                else:
                    if not since.isdigit():
                        raise bad_request(f'invalid resource version "{since}"')
                    backlog = self.store.subscribe(listener, int(since))
        except ApiError as exc:  # a too-old resourceVersion is an ERROR event on a 200 stream
            return StreamingResponse(iter([_line("ERROR", exc.body())]), media_type="application/json")
        opening += [line for line in (self._event_line(e, t, match) for e in backlog) if line]
        timeout = float(q.get("timeoutSeconds") or 1800)

        async def stream() -> AsyncIterator[str]:
            try:
                for line in opening:
                    yield line
                deadline = loop.time() + timeout
                while not self.stopping.is_set():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        event = await asyncio.wait_for(queue.get(), remaining)
                    except TimeoutError:
                        break
                    if event is None:
                        break
                    line = self._event_line(event, t, match)
                    if line:
                        yield line
            finally:
                self.store.unsubscribe(listener)

        return StreamingResponse(stream(), media_type="application/json")

    def _event_line(self, event: Event, t: _Target, match: Callable[[Obj], bool]) -> str | None:
        _, kind, res, obj, previous = event
        if res is not t.res or (t.namespace and obj["metadata"].get("namespace") != t.namespace):
            return None
        now_in, was_in = match(obj), previous is not None and match(previous)
        if kind == "DELETED":
            kind = "DELETED" if (now_in or was_in) else ""
        elif kind == "ADDED":
            kind = "ADDED" if now_in else ""
        else:
            kind = "MODIFIED" if now_in and was_in else "ADDED" if now_in else "DELETED" if was_in else ""
        return _line(kind, self._present(obj, t)) if kind else None

    # ---------------------------------------------------------------------------------- helpers
    @staticmethod
    def _present(obj: Obj, t: _Target) -> Obj:
        """Objects come back in the version that was asked for (one storage, many versions)."""
        assert t.res is not None
        return {**obj, "apiVersion": t.res.api_version(t.version), "kind": t.res.kind}

    def _discovery(self, path: str, request: Request) -> Response:
        if path in ("/version",):
            return _json(VERSION_INFO)
        if path in ("/healthz", "/livez", "/readyz"):
            return Response("ok", media_type="text/plain")
        if path == "/api":
            server = f"{request.url.hostname}:{request.url.port}"
            return _json(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}],
                }
            )
        if path == "/apis":
            return _json(
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [_group(g, v) for g, v in resources.groups().items()],
                }
            )
        parts = [p for p in path.split("/") if p]
        if len(parts) == 2 and parts[0] == "apis" and parts[1] in resources.groups():
            return _json({"kind": "APIGroup", "apiVersion": "v1", **_group(parts[1], resources.groups()[parts[1]])})
        if parts == ["api", "v1"]:
            return _json(_resource_list("", "v1"))
        if len(parts) == 3 and parts[0] == "apis" and parts[2] in resources.groups().get(parts[1], ()):
            return _json(_resource_list(parts[1], parts[2]))
        raise resource_not_served()


def _line(kind: str, obj: Obj) -> str:
    return json.dumps({"type": kind, "object": obj}) + "\n"


def _parse_body(body: bytes, *, required: bool) -> Any:
    if not body:
        if required:
            raise bad_request("the request body is required")
        return None
    try:
        return json.loads(body)
    except ValueError as exc:
        raise bad_request(f"the body of the request is not valid JSON: {exc}") from exc


def _group(name: str, versions: tuple[str, ...]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": listed, "preferredVersion": listed[0]}


def _resource_list(group: str, version: str) -> dict[str, Any]:
    verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    out: list[dict[str, Any]] = []
    for res in resources.RESOURCES:
        if res.group != group or version not in res.versions:
            continue
        out.append(
            {"name": res.plural, "singularName": res.singular, "namespaced": True, "kind": res.kind, "verbs": verbs}
        )
        for sub in res.subresources:
            entry = {
                "name": f"{res.plural}/{sub}",
                "singularName": "",
                "namespaced": True,
                "kind": res.kind,
                "verbs": ["get", "patch", "update"],
            }
            if sub == "scale":
                entry.update(group="autoscaling", version="v1", kind="Scale")
            out.append(entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": out,
    }
