"""The webhook receiver: verify, dedupe, validate, then start a release run.

Every hook request goes through the same gates, cheapest first, so an unauthenticated caller
costs as little as possible and learns nothing about the configuration:

1. rate limit per source (route + client address)             -> 429 + Retry-After
2. declared body size over the cap                             -> 413 (body never read)
3. signature headers absent                                    -> 401 "signature missing"
4. body read in chunks, counted, aborted over the cap          -> 413
5. signature / token / timestamp window wrong, source disabled -> 401 "signature invalid"
6. delivery id malformed, body not a JSON object               -> 400
7. event not allowed, or allowed but not a release             -> 202 {"ignored": ...}
8. payload unmappable or not a valid release spec              -> 422 {"fields": [...]}
9. start the run with idempotency key "<source>:<delivery>"    -> 202 new / 200 duplicate
   (no such deployment: 422; orchestrator unreachable or slow: 503 + Retry-After)

``/hooks/alertmanager`` passes the same gates (authentication: ``Authorization: Bearer <token>``),
then starts one rollback run per firing, allow-listed alert of a released service (see
:mod:`canaryflow.webhook.alertmanager`): 202 when a run started, 200 when every run already
existed, 202 ``{"ignored": [...]}`` when no alert asked for one, 422 naming a service that has no
release on record in the alert's environment (the other alerts still start their rollbacks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from canaryflow.errors import ConfigError
from canaryflow.spec import validate_spec
from canaryflow.webhook import signatures
from canaryflow.webhook.alertmanager import IgnoredAlert, RollbackRequest, map_alerts
from canaryflow.webhook.config import SOURCES, WebhookConfig, WebhookSecrets, resolve_secrets
from canaryflow.webhook.mapping import (ReleaseRequest, Ignored, build_spec, map_generic, map_github,
                                        map_gitlab)
from canaryflow.webhook.ratelimit import TokenBucketLimiter
from canaryflow.webhook.replay import ReplayGuard
from canaryflow.webhook.starter import (DeploymentNotFound, PrefectRunStarter, ReleaseLookup, RunRejected,
                                        RunStarter, StartedRun, StarterUnavailable, StartRequest)

log = logging.getLogger("canaryflow.webhook")

DELIVERY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
DELIVERY_HEADERS = {
    "github": ("x-github-delivery",),
    "gitlab": ("idempotency-key", "x-gitlab-event-uuid"),
    "generic": ("x-canaryflow-delivery",),
    "alertmanager": (),  # none: each alert carries its own key (fingerprint + startsAt)
}
SIGNATURE_HEADERS = {
    "github": ("x-hub-signature-256",),
    "gitlab": ("x-gitlab-token",),
    "generic": ("x-canaryflow-signature", "x-canaryflow-timestamp"),
    "alertmanager": ("authorization",),
}
RETRY_LATER_SECONDS = 5


def _error(status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


class _Reject(Exception):
    def __init__(self, response: Response, log_reason: str) -> None:
        self.response = response
        self.log_reason = log_reason


@dataclass
class _Verified:
    body: bytes
    replay_material: bytes


class Receiver:
    def __init__(self, config: WebhookConfig, secrets: WebhookSecrets, starter: RunStarter, *,
                 base_spec: dict[str, Any], clock: Callable[[], float] = time.time,
                 releases: ReleaseLookup | None = None) -> None:
        self.config = config
        self.secrets = secrets
        self.starter = starter
        self.releases = releases
        self.base_spec = base_spec
        self.clock = clock
        self.limiter = TokenBucketLimiter(config.rate_limit_per_second, config.rate_limit_burst)
        self.replays = ReplayGuard(config.replay_cache_seconds)
        self._locks: dict[str, list[Any]] = {}  # idempotency key -> [lock, users]

    # --- gates -------------------------------------------------------------------------------------

    def _rate_limit(self, source: str, client: str) -> None:
        wait = self.limiter.acquire(f"{source}|{client}")
        if wait > 0:
            raise _Reject(_error(429, "rate limit exceeded",
                                 headers={"Retry-After": TokenBucketLimiter.retry_after_header(wait)}),
                          "rate limited")

    def _declared_size(self, request: Request) -> None:
        declared = request.headers.get("content-length")
        if declared is None:
            return
        if not declared.isascii() or not declared.strip().isdigit():
            raise _Reject(_error(400, "invalid Content-Length"), "invalid Content-Length")
        if int(declared) > self.config.max_body_bytes:
            raise _Reject(self._too_large(), f"declared body of {int(declared)} bytes over the cap")

    def _too_large(self) -> JSONResponse:
        # The rest of the body stays unread: close the connection rather than reuse a dirty stream.
        return _error(413, f"body larger than {self.config.max_body_bytes} bytes",
                      headers={"Connection": "close"})

    async def _read_body(self, request: Request) -> bytes:
        cap, size, chunks = self.config.max_body_bytes, 0, []
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise _Reject(self._too_large(), f"streamed body over the cap of {cap} bytes")
                chunks.append(chunk)
        except ClientDisconnect:
            raise _Reject(_error(400, "client disconnected"), "client disconnected") from None
        return b"".join(chunks)

    def _headers_present(self, source: str, request: Request) -> None:
        if not all(request.headers.get(name) for name in SIGNATURE_HEADERS[source]):
            raise _Reject(_error(401, signatures.Outcome.MISSING.value), "signature headers missing")

    def _verify(self, source: str, request: Request, body: bytes) -> _Verified:
        secret, headers = self.secrets.get(source), request.headers
        if source == "github":
            check = signatures.verify_github(secret, headers.get("x-hub-signature-256"), body)
            material = headers.get("x-hub-signature-256", "").strip().lower().encode()
        elif source == "gitlab":
            check = signatures.verify_gitlab(secret, headers.get("x-gitlab-token"))
            material = body
        elif source == "alertmanager":
            check = signatures.verify_bearer(secret, headers.get("authorization"))
            material = body
        else:
            check = signatures.verify_generic(
                secret, headers.get("x-canaryflow-timestamp"), headers.get("x-canaryflow-signature"), body,
                now=self.clock(), tolerance=self.config.timestamp_tolerance_seconds)
            material = headers.get("x-canaryflow-signature", "").strip().lower().encode()
        if not check.ok:
            raise _Reject(_error(401, check.outcome.value), check.reason)
        return _Verified(body=body, replay_material=material)

    def _delivery(self, source: str, request: Request, verified: _Verified) -> str:
        for name in DELIVERY_HEADERS[source]:
            value = request.headers.get(name)
            if value:
                if not DELIVERY_PATTERN.match(value):
                    raise _Reject(_error(400, f"invalid delivery id in {name} (1-128 of [A-Za-z0-9._:-])"),
                                  "invalid delivery id")
                return value
        # No delivery header: the signed material identifies the request, so a resend still dedupes.
        return "sha256-" + ReplayGuard.fingerprint(source, verified.replay_material)[:32]

    @staticmethod
    def _payload(source: str, request: Request, body: bytes) -> dict[str, Any]:
        """JSON whatever the Content-Type says (curl's default is form-encoded); GitHub's optional
        form-encoded delivery (``payload=<json>``) is unwrapped on the GitHub route."""
        try:
            text = body.decode("utf-8")
            form = request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
            if source == "github" and form and text.startswith("payload="):
                text = parse_qs(text, strict_parsing=True)["payload"][0]
            payload = json.loads(text)
        except (UnicodeDecodeError, ValueError, KeyError):
            raise _Reject(_error(400, "body is not valid JSON"), "malformed JSON") from None
        if not isinstance(payload, dict):
            raise _Reject(_error(400, "body must be a JSON object"), "JSON body is not an object")
        return payload

    def _map(self, source: str, request: Request, payload: dict[str, Any]) -> ReleaseRequest | Ignored | None:
        """None means: answered without a release (GitHub ping)."""
        cfg = self.config
        if source == "github":
            event = request.headers.get("x-github-event", "")
            if not event:
                raise _Reject(_error(400, "missing X-GitHub-Event header"), "no event header")
            if event == "ping":
                return None
            if event not in cfg.github_events:
                return Ignored(f"GitHub event {event!r} is not in the allow-list")
            return map_github(event, payload, workflows=cfg.github_workflows,
                              allow_overrides=cfg.allow_spec_overrides)
        if source == "gitlab":
            event = request.headers.get("x-gitlab-event", "")
            if not event:
                raise _Reject(_error(400, "missing X-Gitlab-Event header"), "no event header")
            if event not in cfg.gitlab_events:
                return Ignored(f"GitLab event {event!r} is not in the allow-list")
            return map_gitlab(event, payload)
        return map_generic(payload, allow_overrides=cfg.allow_spec_overrides)

    # --- the endpoint ------------------------------------------------------------------------------

    async def handle(self, source: str, request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        try:
            self._rate_limit(source, client)
            self._declared_size(request)
            self._headers_present(source, request)
            verified = self._verify(source, request, await self._read_body(request))
            delivery = self._delivery(source, request, verified)
            payload = self._payload(source, request, verified.body)
            if source == "alertmanager":
                return await self._rollbacks(delivery, payload)
            try:
                mapped = self._map(source, request, payload)
                if mapped is None:
                    return JSONResponse({"pong": True}, status_code=200)
                if isinstance(mapped, Ignored):
                    log.info("%s delivery %s ignored: %s", source, delivery, mapped.reason)
                    return JSONResponse({"ignored": mapped.reason, "delivery": delivery}, status_code=202)
                spec = build_spec(mapped, self.base_spec)
            except ConfigError as exc:
                raise _Reject(_error(422, str(exc), fields=list(exc.fields)),
                              f"unmappable payload ({', '.join(exc.fields)})") from None
            return await self._start(source, delivery, verified, mapped, spec)
        except _Reject as rejected:
            log.warning("%s webhook from %s answered %s: %s", source, client,
                        rejected.response.status_code, rejected.log_reason)
            return rejected.response

    @staticmethod
    def _unavailable(exc: BaseException) -> _Reject:
        return _Reject(_error(503, "orchestrator unavailable, retry later",
                              headers={"Retry-After": str(RETRY_LATER_SECONDS)}),
                       str(exc) or "Prefect API too slow")

    async def _start_serialized(self, start: StartRequest) -> StartedRun:
        """Concurrent requests with one idempotency key reach the orchestrator one at a time."""
        key = start.idempotency_key
        entry = self._locks.setdefault(key, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                return await asyncio.wait_for(self.starter.start(start), self.config.start_timeout_seconds)
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._locks.pop(key, None)

    # --- Alertmanager: firing alerts roll services back ---------------------------------------------

    async def _release_spec(self, alert: RollbackRequest) -> dict[str, Any] | None:
        if self.releases is None:
            raise self._unavailable(StarterUnavailable("no release lookup configured"))
        try:
            spec = await asyncio.wait_for(self.releases.latest_release_spec(alert.service, alert.environment),
                                          self.config.start_timeout_seconds)
        except (StarterUnavailable, asyncio.TimeoutError) as exc:
            raise self._unavailable(exc) from None
        if spec is None:
            return None
        try:
            return validate_spec(spec).model_dump(mode="json")
        except ConfigError:
            raise _Reject(_error(422, f"the release of {alert.service!r} ({alert.environment}) on record has "
                                      "no valid spec", fields=["spec"]),
                          f"invalid release spec on record for {alert.service}") from None

    async def _rollbacks(self, delivery: str, payload: dict[str, Any]) -> Response:
        try:
            mapped = map_alerts(payload, allowed=self.config.rollback_alerts)
        except ConfigError as exc:
            raise _Reject(_error(422, str(exc), fields=list(exc.fields)), "unmappable Alertmanager payload") from None
        ignored = [item.as_dict() for item in mapped if isinstance(item, IgnoredAlert)]
        runs: list[dict[str, Any]] = []
        unreleased: list[str] = []
        deployment = self.config.rollback_deployment
        for alert in (item for item in mapped if isinstance(item, RollbackRequest)):
            spec = await self._release_spec(alert)
            if spec is None:
                unreleased.append(f"{alert.service} ({alert.environment})")
                continue
            start = StartRequest(
                deployment=deployment, parameters={"spec": spec, "reason": "alert", "detail": alert.detail},
                idempotency_key=alert.idempotency_key, run_name=f"rollback/{alert.service}/{alert.environment}",
                tags=("webhook", "source:alertmanager", f"alert:{alert.alertname}", f"service:{alert.service}",
                      f"environment:{alert.environment}"))
            try:
                started = await self._start_serialized(start)
            except DeploymentNotFound:
                raise _Reject(_error(422, f"no rollback deployment {deployment!r}", fields=["rollback_deployment"]),
                              f"deployment {deployment} not found") from None
            except RunRejected as exc:
                raise _Reject(_error(422, str(exc), fields=["spec"]), "rollback parameters refused") from None
            except (StarterUnavailable, asyncio.TimeoutError) as exc:
                raise self._unavailable(exc) from None
            log.warning("alertmanager delivery %s: %s rollback run %s for %s (%s) on %s", delivery,
                        "existing" if started.duplicate else "started", started.flow_run_id, alert.service,
                        alert.environment, alert.alertname)
            runs.append({"flow_run_id": started.flow_run_id, "flow_run_name": started.flow_run_name,
                         "ui_url": started.ui_url, "duplicate": started.duplicate,
                         "idempotency_key": alert.idempotency_key, "alertname": alert.alertname,
                         "fingerprint": alert.fingerprint, "service": alert.service,
                         "environment": alert.environment})
        body: dict[str, Any] = {"runs": runs, "ignored": ignored, "deployment": deployment, "delivery": delivery}
        if ignored:
            log.info("alertmanager delivery %s: %d alert(s) ignored", delivery, len(ignored))
        if unreleased:
            log.warning("alertmanager delivery %s: no release on record for %s", delivery, ", ".join(unreleased))
            return JSONResponse({"error": f"no release on record for {', '.join(unreleased)}",
                                 "fields": ["labels.service"], **body}, status_code=422)
        new = any(not run["duplicate"] for run in runs)
        return JSONResponse(body, status_code=200 if runs and not new else 202)

    async def _start(self, source: str, delivery: str, verified: _Verified, mapped: ReleaseRequest,
                     spec: Any) -> Response:
        fingerprint = ReplayGuard.fingerprint(source, verified.replay_material)
        key = self.replays.key_for(fingerprint) or f"{source}:{delivery}"
        deployment = self.config.deployment_name(environment=spec.environment.value, service=spec.service)
        start = StartRequest(
            deployment=deployment, parameters={"spec": spec.model_dump(mode="json")}, idempotency_key=key,
            tags=("webhook", f"source:{source}", f"service:{spec.service}", f"environment:{spec.environment.value}"),
            run_name=spec.run_name)
        try:
            started = await self._start_serialized(start)
        except DeploymentNotFound:
            raise _Reject(_error(422, f"no deployment {deployment!r} for environment "
                                      f"{spec.environment.value!r}", fields=["environment"]),
                          f"deployment {deployment} not found") from None
        except RunRejected as exc:
            raise _Reject(_error(422, str(exc), fields=["spec"]), "run parameters refused") from None
        except (StarterUnavailable, asyncio.TimeoutError) as exc:
            raise self._unavailable(exc) from None
        self.replays.remember(fingerprint, key)
        log.info("%s delivery %s: %s flow run %s (%s) for %s %s -> %s", source, delivery,
                 "existing" if started.duplicate else "started", started.flow_run_id, started.flow_run_name,
                 spec.service, spec.version, spec.environment.value)
        return JSONResponse({
            "flow_run_id": started.flow_run_id, "flow_run_name": started.flow_run_name,
            "ui_url": started.ui_url, "duplicate": started.duplicate, "delivery": delivery,
            "idempotency_key": key, "deployment": deployment, "service": spec.service,
            "version": spec.version, "environment": spec.environment.value, "image": mapped.image,
        }, status_code=200 if started.duplicate else 202)


async def _not_found(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": "not found"}, status_code=404)


async def _not_allowed(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": "method not allowed"}, status_code=405, headers=exc.headers)


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected %s while handling %s", type(exc).__name__, request.url.path)
    return JSONResponse({"error": "internal error"}, status_code=500)


def create_app(config: WebhookConfig | None = None, *, starter: RunStarter | None = None,
               secrets: WebhookSecrets | None = None, clock: Callable[[], float] = time.time,
               releases: ReleaseLookup | None = None) -> Starlette:
    """The ASGI app. ``secrets`` default to :func:`resolve_secrets` (environment, then Secret blocks);
    ``starter`` defaults to the Prefect API, ``releases`` (where alert rollbacks find a service's
    release spec) to the starter. Raises :class:`ConfigError` on a bad base spec or block."""
    config = config or WebhookConfig()
    secrets = secrets if secrets is not None else resolve_secrets(config)
    starter = starter or PrefectRunStarter()
    if releases is None and hasattr(starter, "latest_release_spec"):
        releases = starter  # type: ignore[assignment]
    receiver = Receiver(config, secrets, starter, base_spec=config.load_base_spec(), clock=clock,
                        releases=releases)
    for source, enabled in secrets.enabled().items():
        if not enabled:
            log.warning("%s webhook disabled: no secret configured; /hooks/%s answers 401", source, source)

    def endpoint(source: str) -> Callable[[Request], Any]:
        async def hook(request: Request) -> Response:
            return await receiver.handle(source, request)

        hook.__name__ = f"hook_{source}"
        return hook

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = [Route(f"/hooks/{source}", endpoint(source), methods=["POST"]) for source in SOURCES]
    routes.append(Route("/healthz", healthz, methods=["GET"]))
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        close = getattr(receiver.starter, "aclose", None)
        if close is not None:
            await close()

    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={404: _not_found, 405: _not_allowed, Exception: _internal})
    app.state.receiver = receiver
    return app
