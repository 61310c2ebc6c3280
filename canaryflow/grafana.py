"""Grafana as the place releases are shown: dashboards with their version history, and annotations.

Built on httpx, like the Prometheus source, so tests can swap the network (``transport=``) and
every answer maps onto one exception tree:

- ``GrafanaAuthError`` — 401/403: the token is missing, invalid, or lacks a permission.
- ``GrafanaNotFound`` — 404 (an unknown dashboard or version).
- ``GrafanaConflict`` — 412 that a re-read could not resolve (version mismatch, name exists).
- ``GrafanaUnavailable`` — 5xx, timeouts and connection errors, after bounded retries with backoff.
- ``GrafanaError`` — anything else Grafana refused (400, 422, a body that is not JSON, ...).

The service-account token is a ``SecretStr`` that is revealed only while a request is signed:
it never appears in ``repr``, log records or exception messages, which are built from the
operation, the HTTP status and Grafana's own ``message`` field only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
from pydantic import SecretStr

from canaryflow.errors import CanaryflowError, safe_url

log = logging.getLogger(__name__)

#: Bound on pages followed when Grafana paginates the version history with a ``continueToken``.
MAX_VERSION_PAGES = 20


class GrafanaError(CanaryflowError):
    """Grafana refused or failed ``operation``; ``status`` is the HTTP status, if there was one."""

    def __init__(self, message: str, *, operation: str, status: int | None = None) -> None:
        super().__init__(f"grafana {operation}: {message}")
        self.operation = operation
        self.status = status


class GrafanaAuthError(GrafanaError):
    """401/403: the token is missing, invalid, or lacks the permission the operation needs."""


class GrafanaNotFound(GrafanaError):
    """404: no such dashboard (or dashboard version)."""


class GrafanaConflict(GrafanaError):
    """412 that survived one re-read: someone else keeps changing the dashboard, or the name is taken."""


class GrafanaUnavailable(GrafanaError):
    """5xx, timeouts or connection errors, after every retry."""


@dataclass(frozen=True)
class Dashboard:
    """A dashboard as stored in Grafana: its JSON model and the version that model has."""

    uid: str
    version: int
    model: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DashboardVersion:
    """One entry of a dashboard's version history."""

    version: int
    message: str = ""
    created: str = ""
    created_by: str = ""
    restored_from: int = 0
    parent_version: int = 0


class _BearerToken(httpx.Auth):
    """Signs each request at send time, so the token is not kept in the client's default headers."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        yield request

    def __repr__(self) -> str:
        return "_BearerToken(**********)"


class GrafanaClient:
    """The parts of the Grafana HTTP API a release uses. Synchronous; close it (or use ``with``)."""

    def __init__(
        self,
        url: str,
        *,
        token: SecretStr | str | None = None,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        retries: int = 3,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.url = safe_url(url.rstrip("/"))
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        secret = token if isinstance(token, SecretStr) or token is None else SecretStr(token)
        self._has_token = bool(secret and secret.get_secret_value())
        auth: httpx.Auth | None = _BearerToken(secret) if self._has_token else None  # type: ignore[arg-type]
        parts = urlsplit(url)
        if parts.username is not None and auth is None:  # basic auth in the URL: keep it out of logged URLs
            auth = httpx.BasicAuth(unquote(parts.username), unquote(parts.password or ""))
        self._client = httpx.Client(
            base_url=self.url, timeout=timeout, transport=transport, auth=auth,
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"GrafanaClient(url={self.url!r}, token={'**********' if self._has_token else None})"

    __str__ = __repr__

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> GrafanaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the API -----------------------------------------------------------------------------------

    def health(self, *, retries: int | None = None) -> dict[str, Any]:
        """``GET /api/health``: ``{"database": "ok", "version": ...}``; raises unless the database is ok."""
        body = self._json("health", "GET", "/api/health", retries=retries)
        if not isinstance(body, dict) or body.get("database", "ok") != "ok":
            raise GrafanaUnavailable(f"unhealthy: database {body.get('database') if isinstance(body, dict) else '?'}",
                                     operation="health", status=200)
        return body

    def get_dashboard(self, uid: str, *, retries: int | None = None) -> Dashboard:
        """``GET /api/dashboards/uid/{uid}``; ``GrafanaNotFound`` if there is none."""
        body = self._json("get_dashboard", "GET", f"/api/dashboards/uid/{quote(uid, safe='')}", retries=retries)
        try:
            model, meta = body["dashboard"], body.get("meta") or {}
            version = int(meta.get("version", model.get("version")))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise GrafanaError("answer has no dashboard model or version", operation="get_dashboard") from None
        return Dashboard(uid=uid, version=version, model=model, meta=meta)

    def versions(self, uid: str, *, limit: int | None = None, retries: int | None = None) -> list[DashboardVersion]:
        """``GET /api/dashboards/uid/{uid}/versions``, newest first.

        Grafana answered a plain JSON list up to 11.x; newer releases answer
        ``{"versions": [...], "continueToken": "..."}`` and page with the token. Both are accepted;
        tokens are followed (at most ``MAX_VERSION_PAGES`` pages) unless ``limit`` is reached.
        """
        path = f"/api/dashboards/uid/{quote(uid, safe='')}/versions"
        found: list[DashboardVersion] = []
        params: dict[str, Any] = {"limit": limit} if limit else {}
        for _ in range(MAX_VERSION_PAGES):
            body = self._json("versions", "GET", path, params=params, retries=retries)
            if isinstance(body, list):
                entries, token = body, ""
            elif isinstance(body, dict) and isinstance(body.get("versions"), list):
                entries, token = body["versions"], body.get("continueToken") or ""
            else:
                raise GrafanaError("answer is neither a list nor {versions: [...]}", operation="versions")
            found.extend(_version(e) for e in entries if isinstance(e, dict))
            if not token or not entries or (limit and len(found) >= limit):
                break
            params = {**params, "continueToken": token}
        found.sort(key=lambda v: v.version, reverse=True)
        return found[:limit] if limit else found

    def upsert_dashboard(self, dashboard: dict[str, Any], *, message: str, folder_uid: str | None = None,
                         overwrite: bool = False, retries: int | None = None) -> dict[str, Any]:
        """``POST /api/dashboards/db``: create, or update the version ``dashboard["version"]`` names.

        On a 412 version mismatch (someone saved the dashboard meanwhile) the current version is
        read and the save is retried once with it; a second mismatch is a ``GrafanaConflict``.
        Returns Grafana's answer: ``{id, uid, url, status, version, slug}``.
        """
        model = dict(dashboard)
        for attempt in (1, 2):
            body: dict[str, Any] = {"dashboard": model, "message": message, "overwrite": overwrite}
            if folder_uid:
                body["folderUid"] = folder_uid
            response = self._request("upsert_dashboard", "POST", "/api/dashboards/db", json=body,
                                     retries=retries, accept=(200, 412))
            if response.status_code == 200:
                return _body(response, "upsert_dashboard")
            answer = _body_or_empty(response)
            status = answer.get("status", "")
            if status != "version-mismatch" or attempt == 2 or not model.get("uid"):
                raise GrafanaConflict(f"{status or 'precondition failed'}: {answer.get('message', '')}".rstrip(": "),
                                      operation="upsert_dashboard", status=412)
            current = self.get_dashboard(model["uid"], retries=retries)
            log.info("dashboard %s changed meanwhile (now version %d); saving again on top of it",
                     model["uid"], current.version)
            model = {**model, "version": current.version, "id": current.model.get("id", model.get("id"))}
        raise AssertionError("unreachable")  # pragma: no cover

    def restore(self, uid: str, version: int, *, retries: int | None = None) -> dict[str, Any]:
        """``POST /api/dashboards/uid/{uid}/restore {"version": N}``: Grafana saves the content of
        version N as a *new* version (history is kept) and answers like a save."""
        return self._json("restore_dashboard", "POST", f"/api/dashboards/uid/{quote(uid, safe='')}/restore",
                          json={"version": int(version)}, retries=retries)

    def annotate(self, *, dashboard_uid: str | None, text: str, tags: Iterable[str] = (),
                 time_ms: int | None = None, time_end_ms: int | None = None,
                 retries: int | None = None) -> int:
        """``POST /api/annotations``; returns the new annotation's id."""
        body: dict[str, Any] = {"text": text, "tags": list(tags),
                                "time": int(time.time() * 1000) if time_ms is None else int(time_ms)}
        if dashboard_uid:
            body["dashboardUID"] = dashboard_uid
        if time_end_ms is not None:
            body["timeEnd"] = int(time_end_ms)
        answer = self._json("annotate", "POST", "/api/annotations", json=body, retries=retries)
        try:
            return int(answer["id"])
        except (KeyError, TypeError, ValueError):
            raise GrafanaError("answer has no annotation id", operation="annotate") from None

    def find_annotations(self, *, dashboard_uid: str | None = None, tags: Iterable[str] = (),
                         limit: int = 100, retries: int | None = None) -> list[dict[str, Any]]:
        """``GET /api/annotations?dashboardUID=&tags=&limit=``: annotations carrying *all* ``tags``."""
        params: list[tuple[str, Any]] = [("limit", limit)]
        if dashboard_uid:
            params.append(("dashboardUID", dashboard_uid))
        params.extend(("tags", t) for t in tags)
        answer = self._json("find_annotations", "GET", "/api/annotations", params=params, retries=retries)
        if not isinstance(answer, list):
            raise GrafanaError("answer is not a list", operation="find_annotations")
        return answer

    # -- transport ---------------------------------------------------------------------------------

    def _json(self, operation: str, method: str, path: str, **kwargs: Any) -> Any:
        return _body(self._request(operation, method, path, **kwargs), operation)

    def _request(self, operation: str, method: str, path: str, *, json: Any = None, params: Any = None,
                 retries: int | None = None, accept: tuple[int, ...] = (200,)) -> httpx.Response:
        """One call with bounded retries on 5xx, timeouts and connection errors."""
        attempts = 1 + (self.retries if retries is None else max(retries, 0))
        problem = ""
        status: int | None = None
        for attempt in range(1, attempts + 1):
            try:
                response = self._client.request(method, path, json=json, params=params)
            except httpx.TimeoutException:
                problem, status = "timed out", None
            except httpx.TransportError as exc:
                problem, status = f"cannot connect ({type(exc).__name__})", None
            else:
                status = response.status_code
                if status in accept:
                    return response
                if status in (401, 403):
                    raise GrafanaAuthError(_auth_message(operation, status), operation=operation, status=status)
                if status == 404:
                    raise GrafanaNotFound(_message(response) or "not found", operation=operation, status=404)
                if status < 500 and status != 429:
                    raise GrafanaError(f"HTTP {status}: {_message(response) or 'refused'}",
                                       operation=operation, status=status)
                problem = f"HTTP {status}"
            if attempt < attempts:
                delay = self.backoff * 2 ** (attempt - 1)
                log.debug("grafana %s: %s; retry %d/%d in %.2fs", operation, problem, attempt, attempts - 1, delay)
                self._sleep(delay)
        raise GrafanaUnavailable(f"{self.url} unavailable after {attempts} attempt(s): {problem}",
                                 operation=operation, status=status)


def _auth_message(operation: str, status: int) -> str:
    if status == 401:
        return (f"HTTP 401: Grafana rejected the service-account token for {operation} "
                "(missing, invalid or expired); set CANARYFLOW_GRAFANA_TOKEN or the Secret block")
    return (f"HTTP 403: the service-account token lacks permission for {operation} "
            "(it needs the Editor role, or dashboards:write and annotations:write on the folder)")


def _message(response: httpx.Response) -> str:
    body = _body_or_empty(response)
    return str(body.get("message", ""))[:200]


def _body_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _body(response: httpx.Response, operation: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise GrafanaError(f"HTTP {response.status_code} without a JSON body", operation=operation,
                           status=response.status_code) from None


def _version(entry: dict[str, Any]) -> DashboardVersion:
    return DashboardVersion(
        version=int(entry.get("version", 0)), message=str(entry.get("message") or ""),
        created=str(entry.get("created") or ""), created_by=str(entry.get("createdBy") or ""),
        restored_from=int(entry.get("restoredFrom") or 0), parent_version=int(entry.get("parentVersion") or 0),
    )
