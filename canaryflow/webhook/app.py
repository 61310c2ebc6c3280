"""The webhook receiver: verify, dedupe, validate, then start a release run.

Every hook request goes through the same gates, cheapest first, so an unauthenticated caller
costs as little as possible and learns nothing about the configuration:

0. request head over the cap                                   -> 431
1. rate limit per source (route + client address)             -> 429 + Retry-After
2. declared body size over the cap                             -> 413 (body never read)
3. signature headers absent                                    -> 401 "signature missing"
4. body read in chunks, counted, aborted over the cap          -> 413; not all in within the
   body deadline                                               -> 408 (connection closed)
5. signature / token / timestamp window wrong, source disabled -> 401 "signature invalid"
6. delivery id malformed; body not a strict JSON object (too   -> 400
   deep, NaN/Infinity, out-of-range numbers, lone surrogates)
7. event not allowed, or allowed but not a release             -> 202 {"ignored": ...}
8. payload unmappable (a field missing or of the wrong type,   -> 422 {"fields": [...]}
   image not an OCI reference) or not a valid release spec
9. start the run with idempotency key "<source>:<digest of the -> 202 new / 200 duplicate
   signed material>" (:mod:`canaryflow.webhook.replay`)
   (no such deployment: 422; orchestrator unreachable or slow: 503 + Retry-After)

Everything a delivery could make fail is checked before step 9, and every answer is JSON with
non-ASCII text escaped, so a run is never created for a request that then is not answered 2xx
(a failed answer makes CI retry). Nothing a signed payload holds can raise past the gates: a 500
means a bug in the receiver.

``/hooks/fleet`` passes the same gates with the generic route's signature scheme (its own secret),
then starts one run of the fleet deployment (:mod:`flows.fleet`) for the services and version the
payload names (:func:`canaryflow.webhook.mapping.map_fleet`; 422 naming the field otherwise, or
when the release deployment of the fleet's environment does not exist).

Every answer that started (or found) a release or fleet run carries ``status_url`` and
``status_token``: ``GET /hooks/runs/{flow_run_id}`` with ``Authorization: Bearer <token>`` tells a CI
job how the run ended and the exit code to leave with (:mod:`canaryflow.webhook.status`); 401 for a
wrong token, 404 for no such run, 503 + Retry-After when the orchestrator cannot be read.

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
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from canaryflow.errors import ConfigError
from canaryflow.fleet import plan_waves
from canaryflow.spec import validate_spec
from canaryflow.webhook import signatures
from canaryflow.webhook.alertmanager import IgnoredAlert, RollbackRequest, map_alerts
from canaryflow.webhook.config import SOURCES, WebhookConfig, WebhookSecrets, resolve_secrets
from canaryflow.webhook.mapping import (
    Ignored,
    ReleaseRequest,
    build_spec,
    map_fleet,
    map_generic,
    map_github,
    map_gitlab,
)
from canaryflow.webhook.payload import PayloadRefused, parse_object
from canaryflow.webhook.ratelimit import TokenBucketLimiter
from canaryflow.webhook.replay import Reservations, signed_key
from canaryflow.webhook.starter import (
    DeploymentNotFound,
    PrefectRunStarter,
    ReleaseLookup,
    RunRejected,
    RunStarter,
    StartedRun,
    StarterUnavailable,
    StartRequest,
)
from canaryflow.webhook.status import POLL_SECONDS, RunLookup, bearer, is_run_id, status_body, status_token, token_valid

log = logging.getLogger("canaryflow.webhook")

DELIVERY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
DELIVERY_HEADERS = {
    "github": ("x-github-delivery",),
    "gitlab": ("idempotency-key", "x-gitlab-event-uuid"),
    "generic": ("x-canaryflow-delivery",),
    "fleet": ("x-canaryflow-delivery",),
    "alertmanager": (),  # none: each alert carries its own key (fingerprint + startsAt)
}
SIGNATURE_HEADERS = {
    "github": ("x-hub-signature-256",),
    "gitlab": ("x-gitlab-token",),
    "generic": ("x-canaryflow-signature", "x-canaryflow-timestamp"),
    "fleet": ("x-canaryflow-signature", "x-canaryflow-timestamp"),
    "alertmanager": ("authorization",),
}
RETRY_LATER_SECONDS = 5


class Answer(JSONResponse):
    """JSON with every non-ASCII character escaped: text a payload supplied (a field name, an
    event, an alert name) is echoed as ``\\uXXXX`` and can never fail to encode. NaN never gets
    this far (the parser refuses it); ``allow_nan=False`` keeps the answer standard JSON."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _error(status: int, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any) -> Answer:
    return Answer({"error": message, **extra}, status_code=status, headers=headers)


class _Reject(Exception):
    def __init__(self, response: Response, log_reason: str) -> None:
        self.response = response
        self.log_reason = log_reason


@dataclass
class _Verified:
    body: bytes
    signed: bytes  # the bytes the signature or token vouches for: what the idempotency key is made of


class Receiver:
    def __init__(self, config: WebhookConfig, secrets: WebhookSecrets, starter: RunStarter, *,
                 base_spec: dict[str, Any], clock: Callable[[], float] = time.time,
                 releases: ReleaseLookup | None = None, runs: RunLookup | None = None) -> None:
        self.config = config
        self.secrets = secrets
        self.starter = starter
        self.releases = releases
        self.runs = runs
        self.base_spec = base_spec
        self.clock = clock
        self.limiter = TokenBucketLimiter(config.rate_limit_per_second, config.rate_limit_burst)
        self.reservations = Reservations()

    # --- gates -------------------------------------------------------------------------------------

    def _head_size(self, request: Request) -> None:
        """h11 caps a head that arrives in pieces; one that arrives whole in a single read is
        measured here."""
        size = sum(len(name) + len(value) + 4 for name, value in request.scope["headers"])
        if size > self.config.max_header_bytes:
            raise _Reject(_error(431, f"request head larger than {self.config.max_header_bytes} bytes",
                                 headers={"Connection": "close"}), f"head of {size} bytes over the cap")

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

    def _too_large(self) -> Answer:
        # The rest of the body stays unread: close the connection rather than reuse a dirty stream.
        return _error(413, f"body larger than {self.config.max_body_bytes} bytes",
                      headers={"Connection": "close"})

    async def _read_body(self, request: Request) -> bytes:
        """Counted and timed: a client that trickles (or never sends) its body is cut off at the
        deadline instead of holding the connection; the unread rest closes the connection."""
        cap, size, chunks = self.config.max_body_bytes, 0, []
        deadline = self.config.body_timeout_seconds
        try:
            async with asyncio.timeout(deadline):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > cap:
                        raise _Reject(self._too_large(), f"streamed body over the cap of {cap} bytes")
                    chunks.append(chunk)
        except ClientDisconnect:
            raise _Reject(_error(400, "client disconnected"), "client disconnected") from None
        except TimeoutError:
            raise _Reject(_error(408, f"body not received within {deadline:g} s", headers={"Connection": "close"}),
                          f"body read deadline ({size} bytes in {deadline:g} s)") from None
        return b"".join(chunks)

    def _headers_present(self, source: str, request: Request) -> None:
        if not all(request.headers.get(name) for name in SIGNATURE_HEADERS[source]):
            raise _Reject(_error(401, signatures.Outcome.MISSING.value), "signature headers missing")

    def _verify(self, source: str, request: Request, body: bytes) -> _Verified:
        """The signed material is taken from what was verified, never from a header's spelling:
        GitHub signs the body, the generic scheme (generic and fleet routes) ``"<timestamp>.<body>"``; GitLab's and
        Alertmanager's tokens sign nothing, so the body is all a replay can reuse."""
        secret, headers = self.secrets.get(source), request.headers
        signed = body
        if source == "github":
            check = signatures.verify_github(secret, headers.get("x-hub-signature-256"), body)
        elif source == "gitlab":
            check = signatures.verify_gitlab(secret, headers.get("x-gitlab-token"))
        elif source == "alertmanager":
            check = signatures.verify_bearer(secret, headers.get("authorization"))
        else:
            timestamp = headers.get("x-canaryflow-timestamp")
            check = signatures.verify_generic(
                secret, timestamp, headers.get("x-canaryflow-signature"), body,
                now=self.clock(), tolerance=self.config.timestamp_tolerance_seconds)
            if check.ok:
                signed = signatures.generic_message(str(timestamp), body)
        if not check.ok:
            raise _Reject(_error(401, check.outcome.value), check.reason)
        return _Verified(body=body, signed=signed)

    def _delivery(self, source: str, request: Request, verified: _Verified) -> str:
        """The sender's name for the delivery, for the answer and the log; unsigned, so it never
        decides whether a run is new."""
        for name in DELIVERY_HEADERS[source]:
            value = request.headers.get(name)
            if value:
                if not DELIVERY_PATTERN.fullmatch(value):
                    raise _Reject(_error(400, f"invalid delivery id in {name} (1-128 of [A-Za-z0-9._:-])"),
                                  "invalid delivery id")
                return value
        return signed_key(source, verified.signed).partition(":")[2]

    def _payload(self, source: str, request: Request, body: bytes) -> dict[str, Any]:
        """Strict JSON whatever the Content-Type says (curl's default is form-encoded); GitHub's
        optional form-encoded delivery (``payload=<json>``) is unwrapped on the GitHub route."""
        try:
            text = body.decode("utf-8")
            form = request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
            if source == "github" and form and text.startswith("payload="):
                text = parse_qs(text, strict_parsing=True)["payload"][0]
        except (UnicodeDecodeError, ValueError, KeyError):
            raise _Reject(_error(400, "body is not valid JSON"), "malformed JSON") from None
        try:
            return parse_object(text, max_depth=self.config.max_json_depth)
        except PayloadRefused as exc:
            raise _Reject(_error(400, str(exc)), f"body refused: {exc}") from None

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
            self._head_size(request)
            self._rate_limit(source, client)
            self._declared_size(request)
            self._headers_present(source, request)
            verified = self._verify(source, request, await self._read_body(request))
            delivery = self._delivery(source, request, verified)
            payload = self._payload(source, request, verified.body)
            if source == "alertmanager":
                return await self._rollbacks(delivery, payload)
            if source == "fleet":
                return await self._fleet(delivery, signed_key(source, verified.signed), payload)
            try:
                mapped = self._map(source, request, payload)
                if mapped is None:
                    return Answer({"pong": True}, status_code=200)
                if isinstance(mapped, Ignored):
                    log.info("%s delivery %s ignored: %s", source, delivery, mapped.reason)
                    return Answer({"ignored": mapped.reason, "delivery": delivery}, status_code=202)
                spec = build_spec(mapped, self.base_spec)
            except ConfigError as exc:
                raise _Reject(_error(422, str(exc), fields=list(exc.fields)),
                              f"unmappable payload ({', '.join(exc.fields)})") from None
            return await self._start(source, delivery, signed_key(source, verified.signed), mapped, spec)
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
        """Concurrent requests with one idempotency key reach the orchestrator one at a time; the
        key is reserved before the run is created, so a copy waits for the first and then finds it."""
        async with self.reservations.hold(start.idempotency_key):
            return await asyncio.wait_for(self.starter.start(start), self.config.start_timeout_seconds)

    async def _created(self, start: StartRequest, *, missing: str, missing_field: str) -> StartedRun:
        """The run, or the answer that explains why not: 422 for no such deployment (``missing``
        names it) or refused parameters, 503 when the orchestrator is down or slow."""
        try:
            return await self._start_serialized(start)
        except DeploymentNotFound:
            raise _Reject(_error(422, missing, fields=[missing_field]),
                          f"deployment {start.deployment} not found") from None
        except RunRejected as exc:
            raise _Reject(_error(422, str(exc), fields=["spec"]), "run parameters refused") from None
        except (TimeoutError, StarterUnavailable) as exc:
            raise self._unavailable(exc) from None

    # --- a started run's outcome, for CI ------------------------------------------------------------

    def _status_of(self, source: str, started: StartedRun) -> dict[str, str]:
        """Where and with what a CI job reads the run's outcome (:mod:`canaryflow.webhook.status`)."""
        secret = self.secrets.get(source)
        if secret is None or self.runs is None:
            return {}
        return {"status_url": f"/hooks/runs/{started.flow_run_id}",
                "status_token": status_token(secret, started.flow_run_id)}

    async def run_status(self, request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        run_id = request.path_params["flow_run_id"]
        try:
            self._head_size(request)
            self._rate_limit("status", client)
            presented = bearer(request.headers.get("authorization"))
            secrets = [secret for secret in (self.secrets.get(source) for source in SOURCES) if secret]
            if not presented or not is_run_id(run_id) or not token_valid(secrets, run_id, presented):
                raise _Reject(_error(401, "status token invalid"), "status token invalid")
            if self.runs is None:
                raise _Reject(_error(404, "no such run"), "no run lookup")
            try:
                seen = await asyncio.wait_for(self.runs.run_status(run_id), self.config.start_timeout_seconds)
            except (TimeoutError, StarterUnavailable) as exc:
                raise self._unavailable(exc) from None
            if seen is None:
                raise _Reject(_error(404, "no such run"), f"no flow run {run_id}")
        except _Reject as rejected:
            log.warning("run status from %s answered %s: %s", client, rejected.response.status_code,
                        rejected.log_reason)
            return rejected.response
        body = status_body(run_id, seen)
        # While the run goes on, say when to ask again; no caching either way (the state moves on).
        headers = {"Cache-Control": "no-store", **({} if body["ended"] else {"Retry-After": str(POLL_SECONDS)})}
        return Answer(body, headers=headers)

    # --- fleet releases: one version to many services ----------------------------------------------

    async def _deployment_exists(self, name: str) -> bool:
        check = getattr(self.starter, "has_deployment", None)
        if check is None:
            return True  # a starter that cannot tell: the fleet run reports it
        try:
            return bool(await asyncio.wait_for(check(name), self.config.start_timeout_seconds))
        except (TimeoutError, StarterUnavailable) as exc:
            raise self._unavailable(exc) from None

    async def _fleet(self, delivery: str, key: str, payload: dict[str, Any]) -> Response:
        try:
            fleet = map_fleet(payload, self.base_spec, allow_overrides=self.config.allow_spec_overrides,
                              max_services=self.config.max_fleet_services)
        except ConfigError as exc:
            raise _Reject(_error(422, str(exc), fields=list(exc.fields)),
                          f"unmappable fleet payload ({', '.join(exc.fields)})") from None
        environment, releases = fleet.environment, fleet.deployment_name
        if not await self._deployment_exists(releases):
            raise _Reject(_error(422, f"no deployment {releases!r} for environment {environment!r}",
                                 fields=["environment"]), f"deployment {releases} not found")
        deployment = self.config.fleet_deployment
        start = StartRequest(
            deployment=deployment, parameters={"spec": fleet.model_dump(mode="json")}, idempotency_key=key,
            tags=("webhook", "source:fleet", "fleet", f"version:{fleet.version}", f"environment:{environment}"),
            run_name=f"fleet/{fleet.version}/{environment}/{len(fleet.services)}-services")
        started = await self._created(start, missing=f"no fleet deployment {deployment!r}",
                                      missing_field="fleet_deployment")
        log.info("fleet delivery %s: %s flow run %s (%s) for %d services -> %s %s", delivery,
                 "existing" if started.duplicate else "started", started.flow_run_id, started.flow_run_name,
                 len(fleet.services), fleet.version, environment)
        return Answer({
            "flow_run_id": started.flow_run_id, "flow_run_name": started.flow_run_name,
            "ui_url": started.ui_url, "duplicate": started.duplicate, "delivery": delivery,
            **self._status_of("fleet", started),
            "idempotency_key": key, "deployment": deployment, "release_deployment": releases,
            "version": fleet.version, "environment": environment, "services": fleet.services,
            "waves": plan_waves(fleet.services, fleet.waves),
        }, status_code=200 if started.duplicate else 202)

    # --- Alertmanager: firing alerts roll services back ---------------------------------------------

    async def _release_spec(self, alert: RollbackRequest) -> dict[str, Any] | None:
        if self.releases is None:
            raise self._unavailable(StarterUnavailable("no release lookup configured"))
        try:
            spec = await asyncio.wait_for(self.releases.latest_release_spec(alert.service, alert.environment),
                                          self.config.start_timeout_seconds)
        except (TimeoutError, StarterUnavailable) as exc:
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
            mapped = map_alerts(payload, allowed=self.config.rollback_alerts, max_alerts=self.config.max_alerts)
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
            started = await self._created(start, missing=f"no rollback deployment {deployment!r}",
                                          missing_field="rollback_deployment")
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
            return _error(422, f"no release on record for {', '.join(unreleased)}", fields=["labels.service"], **body)
        new = any(not run["duplicate"] for run in runs)
        return Answer(body, status_code=200 if runs and not new else 202)

    async def _start(self, source: str, delivery: str, key: str, mapped: ReleaseRequest, spec: Any) -> Response:
        deployment = self.config.deployment_name(environment=spec.environment.value, service=spec.service)
        start = StartRequest(
            deployment=deployment, parameters={"spec": spec.model_dump(mode="json")}, idempotency_key=key,
            tags=("webhook", f"source:{source}", f"service:{spec.service}", f"environment:{spec.environment.value}"),
            run_name=spec.run_name)
        started = await self._created(start, missing=f"no deployment {deployment!r} for environment "
                                                     f"{spec.environment.value!r}", missing_field="environment")
        log.info("%s delivery %s: %s flow run %s (%s) for %s %s -> %s", source, delivery,
                 "existing" if started.duplicate else "started", started.flow_run_id, started.flow_run_name,
                 spec.service, spec.version, spec.environment.value)
        return Answer({
            "flow_run_id": started.flow_run_id, "flow_run_name": started.flow_run_name,
            "ui_url": started.ui_url, "duplicate": started.duplicate, "delivery": delivery,
            **self._status_of(source, started),
            "idempotency_key": key, "deployment": deployment, "service": spec.service,
            "version": spec.version, "environment": spec.environment.value, "image": mapped.image,
        }, status_code=200 if started.duplicate else 202)


async def _not_found(request: Request, exc: Exception) -> Answer:
    return _error(404, "not found")


async def _not_allowed(request: Request, exc: Exception) -> Answer:
    headers = exc.headers if isinstance(exc, HTTPException) else None  # Allow: the methods the route takes
    return _error(405, "method not allowed", headers=headers)


async def _internal(request: Request, exc: Exception) -> Answer:
    log.error("unexpected %s while handling %s", type(exc).__name__, request.url.path)
    return _error(500, "internal error")


def create_app(config: WebhookConfig | None = None, *, starter: RunStarter | None = None,
               secrets: WebhookSecrets | None = None, clock: Callable[[], float] = time.time,
               releases: ReleaseLookup | None = None, runs: RunLookup | None = None) -> Starlette:
    """The ASGI app. ``secrets`` default to :func:`resolve_secrets` (environment, then Secret blocks);
    ``starter`` defaults to the Prefect API, ``releases`` (where alert rollbacks find a service's
    release spec) to the starter. Raises :class:`ConfigError` on a bad base spec or block."""
    config = config or WebhookConfig()
    secrets = secrets if secrets is not None else resolve_secrets(config)
    starter = starter or PrefectRunStarter()
    if releases is None and hasattr(starter, "latest_release_spec"):
        releases = starter  # type: ignore[assignment]
    if runs is None and hasattr(starter, "run_status"):
        runs = starter  # type: ignore[assignment]
    receiver = Receiver(config, secrets, starter, base_spec=config.load_base_spec(), clock=clock,
                        releases=releases, runs=runs)
    for source, enabled in secrets.enabled().items():
        if not enabled:
            log.warning("%s webhook disabled: no secret configured; /hooks/%s answers 401", source, source)

    def endpoint(source: str) -> Callable[[Request], Any]:
        async def hook(request: Request) -> Response:
            return await receiver.handle(source, request)

        hook.__name__ = f"hook_{source}"
        return hook

    async def healthz(request: Request) -> Response:
        return Answer({"status": "ok"})

    routes = [Route(f"/hooks/{source}", endpoint(source), methods=["POST"]) for source in SOURCES]
    routes.append(Route("/hooks/runs/{flow_run_id}", receiver.run_status, methods=["GET"]))
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
