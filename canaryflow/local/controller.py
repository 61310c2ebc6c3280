"""Platform controller: weighted reverse proxy, admin API and process supervisor.

This single process plays the role a service mesh plus deployment controller
plays in a cluster: it runs the stable and canary service processes, splits
user traffic between them, and exposes a small admin API under ``/-/`` for
the release pipeline. Traffic splitting is deterministic (smooth weighted
round robin) so a 10 % weight means exactly one request in ten, which keeps
tests and analysis free of sampling noise. A weight can carry a lease, so a
crashed orchestrator can never leave users on a canary indefinitely.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from canaryflow.local import procs
from canaryflow.local.catalog import Catalog, UnknownVersionError, load_catalog, resolve_catalog_path

STABLE, CANARY = "stable", "canary"
POLL_INTERVAL_S = 0.2
HISTORY_LIMIT = 1000
# Headers that describe a single hop and must not be forwarded (RFC 9110 7.6.1),
# plus those the proxy recomputes itself.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length",
})


class SmoothWeightedSplit:
    """Deterministic stable/canary split (nginx-style smooth weighted round robin).

    With canary weight ``w`` every aligned window of 100 picks contains exactly
    ``w`` canary picks, spread evenly (10 % is 1 of every 10). Changing the
    weight restarts the sequence so the new ratio holds from the next pick.
    """

    def __init__(self, canary_weight: int = 0) -> None:
        self.set_weight(canary_weight)

    @property
    def weight(self) -> int:
        return self._weight

    def set_weight(self, canary_weight: int) -> None:
        if not 0 <= canary_weight <= 100:
            raise ValueError(f"canary weight must be within 0..100, got {canary_weight}")
        self._weight = canary_weight
        self._stable_current = 0
        self._canary_current = 0

    def pick(self) -> str:
        self._stable_current += 100 - self._weight
        self._canary_current += self._weight
        if self._canary_current > self._stable_current:
            self._canary_current -= 100
            return CANARY
        self._stable_current -= 100
        return STABLE


class TrafficPolicy:
    """Canary weight with optional lease and a history of changes.

    Pure logic with an injectable clock so lease expiry is unit-testable
    without sleeping; the controller calls :meth:`expire_lease` periodically
    and before every routing decision.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.split = SmoothWeightedSplit()
        self.lease_expires_at: Optional[float] = None
        self.history: deque[dict] = deque(maxlen=HISTORY_LIMIT)

    @property
    def weight(self) -> int:
        return self.split.weight

    def set_weight(self, weight: int, reason: str, lease_seconds: Optional[float] = None) -> None:
        """Set the weight; a positive ``lease_seconds`` makes it revert unless renewed."""
        if lease_seconds is not None and lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
        if weight != self.split.weight:
            self.split.set_weight(weight)
        now = self._clock()
        self.lease_expires_at = now + lease_seconds if weight > 0 and lease_seconds else None
        self.history.append({"t": now, "canary_weight": weight, "reason": reason})

    def expire_lease(self) -> bool:
        """Revert to weight 0 if the lease ran out; True when that happened now."""
        if self.lease_expires_at is None or self._clock() < self.lease_expires_at:
            return False
        self.set_weight(0, "lease_expired")
        return True

    def pick(self) -> str:
        self.expire_lease()
        return self.split.pick()


@dataclass
class Track:
    """One supervised service process (the stable or the canary)."""

    version: str
    port: int
    proc: subprocess.Popen
    ready: bool = False
    exit_code: Optional[int] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def check_exit(self) -> bool:
        """Record the exit code if the process died; True while it is alive."""
        code = self.proc.poll()
        if code is not None:
            self.exit_code, self.ready = code, False
        return code is None

    def to_json(self) -> dict:
        return {"version": self.version, "url": self.url, "pid": self.proc.pid,
                "ready": self.ready, "exit_code": self.exit_code}


class AdminError(Exception):
    """An admin request that cannot be honoured; carries the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Controller:
    """Owns the tracks, the traffic policy and the targets file."""

    def __init__(self, *, service: str, catalog: Catalog, catalog_path: Path,
                 log_dir: Path, targets_file: Optional[Path] = None,
                 slot_ports: Sequence[int] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self.service = service
        self.catalog = catalog
        self.catalog_path = catalog_path
        self.log_dir = log_dir
        self.targets_file = targets_file
        # Two fixed ports that stable and canary take turns on. Prometheus learns them once at
        # start; a target that appears later waits for service discovery's 5 s update cycle,
        # which would blind the first seconds of every canary.
        self.slot_ports = tuple(slot_ports)
        self.policy = TrafficPolicy(clock)
        self.routed = {STABLE: 0, CANARY: 0}
        self.stable: Optional[Track] = None
        self.canary: Optional[Track] = None
        self.lock = asyncio.Lock()

    # -- processes ---------------------------------------------------------

    def spawn(self, version: str) -> Track:
        """Start a service process for ``version`` (must run on the main thread)."""
        self.catalog.version(version)
        port = self._free_slot()
        args = procs.python_module(
            "canaryflow.local.service", "--version", version, "--port", port,
            "--catalog", self.catalog_path, "--service", self.service)
        log = self.log_dir / f"{self.service}-{version}-{port}.log"
        return Track(version, port, procs.spawn(args, log_path=log, env=procs.python_env()))

    def _free_slot(self) -> int:
        if not self.slot_ports:
            return procs.free_port()
        taken = {t.port for t in self.tracks()}
        free = [p for p in self.slot_ports if p not in taken]
        if not free:
            raise AdminError(409, "both service slots are in use")
        return free[0]

    def start_stable(self, version: str, timeout: float) -> None:
        """Spawn the stable version and block until it is ready, or raise."""
        track = self.spawn(version)
        try:
            procs.wait_http(track.url + "/ready", timeout, proc=track.proc)
        except BaseException:
            procs.stop(track.proc)
            raise
        track.ready = True
        self.stable = track
        self.write_targets()

    def tracks(self) -> list[Track]:
        return [t for t in (self.stable, self.canary) if t is not None]

    def shutdown(self) -> None:
        """Stop every child; idempotent so both lifespan and finally can call it."""
        procs.stop_all([t.proc for t in self.tracks()])
        for track in self.tracks():
            track.check_exit()

    def write_targets(self) -> None:
        """Rewrite the Prometheus file_sd targets atomically (temp file + rename)."""
        if self.targets_file is None:
            return
        if self.slot_ports:  # fixed targets; the version label comes from the metrics themselves
            groups = [{"targets": [f"127.0.0.1:{p}" for p in self.slot_ports],
                       "labels": {"service": self.service}}]
        else:
            groups = [
                {"targets": [f"127.0.0.1:{t.port}"],
                 "labels": {"service": self.service, "track": name, "version": t.version}}
                for name, t in ((STABLE, self.stable), (CANARY, self.canary)) if t is not None
            ]
        fd, tmp = tempfile.mkstemp(dir=self.targets_file.parent, prefix=".targets-")
        with os.fdopen(fd, "w") as fh:
            json.dump(groups, fh)
        os.replace(tmp, self.targets_file)

    # -- readiness ---------------------------------------------------------

    async def probe(self, client: httpx.AsyncClient, track: Track) -> None:
        if not track.check_exit():
            return
        try:
            resp = await client.get(track.url + "/ready", timeout=1.0)
            track.ready = resp.status_code == 200
        except httpx.HTTPError:
            track.ready = False

    async def poll_forever(self, client: httpx.AsyncClient) -> None:
        """Background loop: lease expiry and readiness of every child."""
        while True:
            self.policy.expire_lease()
            await asyncio.gather(*(self.probe(client, t) for t in self.tracks()))
            await asyncio.sleep(POLL_INTERVAL_S)

    # -- routing -----------------------------------------------------------

    def route(self) -> Track:
        """Choose the backend for one request and count it."""
        name = self.policy.pick()
        if name == CANARY and self.canary is None:
            name = STABLE
        self.routed[name] += 1
        return self.canary if name == CANARY else self.stable

    # -- admin operations --------------------------------------------------

    def state(self) -> dict:
        """Everything a client needs; ``versions`` lets it refuse an unknown version up front."""
        self.policy.expire_lease()
        return {
            "service": self.service,
            "versions": self.catalog.names,
            "stable": self.stable.to_json() if self.stable else None,
            "canary": self.canary.to_json() if self.canary else None,
            "canary_weight": self.policy.weight,
            "lease_expires_at": self.policy.lease_expires_at,
            "routed": dict(self.routed),
            "history": list(self.policy.history),
        }

    async def _retire(self, track: Track) -> None:
        await asyncio.to_thread(procs.stop, track.proc)
        track.check_exit()

    async def deploy_canary(self, version: str) -> dict:
        try:
            self.catalog.version(version)
        except UnknownVersionError as err:
            raise AdminError(400, str(err)) from None
        if version == self.stable.version:
            raise AdminError(400, f"version {version!r} is already the stable version")
        async with self.lock:
            if self.canary is not None:
                if self.policy.weight:
                    self.policy.set_weight(0, "canary_replaced")
                old, self.canary = self.canary, None
                await self._retire(old)
            self.canary = self.spawn(version)
            self.write_targets()
            return self.canary.to_json()

    async def set_weight(self, client: httpx.AsyncClient, weight: int,
                         lease_seconds: Optional[float]) -> dict:
        async with self.lock:
            if weight > 0:
                if self.canary is None:
                    raise AdminError(409, "no canary deployed")
                if not self.canary.ready:
                    await self.probe(client, self.canary)
                if not self.canary.ready:
                    raise AdminError(409, f"canary {self.canary.version!r} is not ready"
                                          f" (exit_code={self.canary.exit_code})")
            self.policy.set_weight(weight, "set", lease_seconds)
            return self.state()

    async def promote(self) -> dict:
        async with self.lock:
            if self.canary is None:
                raise AdminError(409, "no canary to promote")
            old, self.stable, self.canary = self.stable, self.canary, None
            self.policy.set_weight(0, "promote")
            self.write_targets()
            await self._retire(old)
            return self.state()

    async def rollback(self) -> dict:
        async with self.lock:
            if self.canary is not None or self.policy.weight:
                self.policy.set_weight(0, "rollback")
            if self.canary is not None:
                old, self.canary = self.canary, None
                self.write_targets()
                await self._retire(old)
            return self.state()


async def _json_body(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise AdminError(400, "request body must be JSON") from None
    if not isinstance(body, dict):
        raise AdminError(400, "request body must be a JSON object")
    return body


def _parse_weights(body: dict) -> tuple[int, Optional[float]]:
    unknown = set(body) - {"canary_weight", "lease_seconds"}
    if unknown:
        raise AdminError(400, f"unknown fields: {sorted(unknown)}")
    weight = body.get("canary_weight")
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise AdminError(400, "canary_weight must be an integer within 0..100")
    lease = body.get("lease_seconds")
    if lease is not None and (isinstance(lease, bool) or not isinstance(lease, (int, float)) or lease <= 0):
        raise AdminError(400, "lease_seconds must be a positive number or null")
    return weight, lease


def build_app(controller: Controller) -> Starlette:
    """Starlette app: admin API under /-/ and the proxy for everything else."""
    shared: dict = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=128)
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
            shared["client"] = client
            poller = asyncio.create_task(controller.poll_forever(client))
            try:
                yield
            finally:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
                controller.shutdown()

    def admin(handler):
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except AdminError as err:
                return JSONResponse({"error": str(err)}, status_code=err.status)
        return endpoint

    async def healthz(_: Request) -> Response:
        return JSONResponse({"ok": True})

    async def state(_: Request) -> Response:
        return JSONResponse(controller.state())

    async def canary(request: Request) -> Response:
        version = (await _json_body(request)).get("version")
        if not isinstance(version, str) or not version:
            raise AdminError(400, "body must be {\"version\": NAME}")
        return JSONResponse(await controller.deploy_canary(version), status_code=201)

    async def weights(request: Request) -> Response:
        weight, lease = _parse_weights(await _json_body(request))
        return JSONResponse(await controller.set_weight(shared["client"], weight, lease))

    async def promote(_: Request) -> Response:
        return JSONResponse(await controller.promote())

    async def rollback(_: Request) -> Response:
        return JSONResponse(await controller.rollback())

    async def not_found(request: Request) -> Response:
        return JSONResponse({"error": f"no admin endpoint {request.url.path}"}, status_code=404)

    async def proxy(request: Request) -> Response:
        track = controller.route()
        url = track.url + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        headers = [(k, v) for k, v in request.headers.raw if k.decode("latin-1").lower() not in HOP_BY_HOP]
        try:
            upstream = await shared["client"].request(
                request.method, url, headers=headers, content=await request.body())
        except httpx.HTTPError as err:
            return JSONResponse({"error": "bad gateway", "backend": track.url,
                                 "detail": f"{type(err).__name__}: {err}"}, status_code=502)
        response = Response(upstream.content, status_code=upstream.status_code)
        skip = HOP_BY_HOP | {"content-encoding"}
        response.raw_headers.extend(
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in upstream.headers.multi_items() if k.lower() not in skip)
        return response

    all_methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(lifespan=lifespan, routes=[
        Route("/-/healthz", healthz),
        Route("/-/state", state),
        Route("/-/canary", admin(canary), methods=["POST"]),
        Route("/-/weights", admin(weights), methods=["PUT"]),
        Route("/-/promote", admin(promote), methods=["POST"]),
        Route("/-/rollback", admin(rollback), methods=["POST"]),
        Route("/-/{rest:path}", not_found, methods=all_methods),
        Route("/{path:path}", proxy, methods=all_methods),
    ])


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Run the local platform controller.")
    parser.add_argument("--service", default=None, help="service name (default: from catalogue)")
    parser.add_argument("--stable", required=True, help="version to run as stable")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--catalog", type=Path, default=None)
    parser.add_argument("--targets-file", type=Path, default=None)
    parser.add_argument("--slot-ports", default="", help="two fixed ports, e.g. 9101,9102")
    parser.add_argument("--log-dir", type=Path, default=None, help="service logs (default: temp dir)")
    parser.add_argument("--ready-timeout", type=float, default=30.0)
    args = parser.parse_args(argv)

    catalog_path = resolve_catalog_path(args.catalog)
    catalog = load_catalog(catalog_path)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="canaryflow-services-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    controller = Controller(
        service=args.service or catalog.service, catalog=catalog, catalog_path=catalog_path,
        log_dir=log_dir, targets_file=args.targets_file.resolve() if args.targets_file else None,
        slot_ports=[int(p) for p in args.slot_ports.split(",") if p])
    try:
        controller.start_stable(args.stable, args.ready_timeout)
    except (UnknownVersionError, RuntimeError, TimeoutError) as err:
        print(f"controller: cannot start stable version: {err}", file=sys.stderr)
        return 1
    config = uvicorn.Config(build_app(controller), host="127.0.0.1", port=args.port,
                            log_level="warning", access_log=False, timeout_graceful_shutdown=3)
    try:
        uvicorn.Server(config).run()
    finally:
        controller.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
