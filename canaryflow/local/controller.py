"""Platform controller: weighted reverse proxy, admin API and process supervisor.

This single process plays the role a service mesh plus deployment controller
plays in a cluster: it runs the stable and canary service processes, splits
user traffic between them, and exposes a small admin API under ``/-/`` for
the release pipeline. Each request goes to the canary at random with
probability weight/100 (``canaryflow.local.routing``), as a real mesh routes,
so the canary's share of a short window varies the way a judge will meet it.
A weight can carry a lease, so a crashed orchestrator can never leave users
on a canary indefinitely.

Faults that are not a version's own are injected here too, because they
belong to the platform: incidents that hit every running version at once
(``/-/incident``, pushed to each service; see ``canaryflow.local.incidents``)
and a misrouting mesh (``/-/routing``) that gives the canary only a fraction
of the weight the controller reports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from canaryflow.local import procs
from canaryflow.local.catalog import Catalog, UnknownVersionError, load_catalog, resolve_catalog_path
from canaryflow.local.incidents import Incident, IncidentPlan, parse_incident_request, push_incident
from canaryflow.local.mesh import AmbiguousService, Mesh, UnknownService, write_json_atomically
from canaryflow.local.routing import CANARY, STABLE, TrafficPolicy
from canaryflow.local.seeds import add_seed_argument, derive_seed, seed_flag, seeded_rng
from canaryflow.local.services import read_plans

# Headers that describe a single hop and must not be forwarded (RFC 9110 7.6.1),
# plus those the proxy recomputes itself.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length",
})


@dataclass
class Track:
    """One supervised service process (the stable or the canary)."""

    version: str
    port: int
    proc: subprocess.Popen
    ready: bool = False
    exit_code: int | None = None
    # The incident this process last confirmed (a new process has none); pushes to it are serialised
    # so a slow push of an older incident cannot land after a newer one.
    incident: Incident | None = None
    incident_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def check_exit(self) -> bool:
        """Record the exit code if the process died; True while it is alive."""
        code = self.proc.poll()
        if code is not None:
            self.exit_code, self.ready = code, False
        return code is None

    def answers(self, ready: httpx.Response) -> bool:
        """A ready answer from this very process: a program that took the port in its place
        (it was free while no process of ours held it) must never pass for this version."""
        if ready.status_code != 200:
            return False
        try:
            body = ready.json()
        except ValueError:
            return False
        return isinstance(body, dict) and body.get("pid") == self.proc.pid

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
                 log_dir: Path, targets_file: Path | None = None,
                 slot_ports: Sequence[int] = (),
                 clock: Callable[[], float] = time.time,
                 seed: int | None = None) -> None:
        self.service = service
        self.catalog = catalog
        self.catalog_path = catalog_path
        self.log_dir = log_dir
        self.targets_file = targets_file
        # Two fixed ports that stable and canary take turns on. Prometheus learns them once at
        # start; a target that appears later waits for service discovery's 5 s update cycle,
        # which would blind the first seconds of every canary.
        self.slot_ports = tuple(slot_ports)
        self._reservations: list[socket.socket] = []  # sockets holding the slot ports, see reserve_slots
        self._clock = clock
        self.seed = seed
        self._spawned = 0  # numbers each service process's random stream
        self.policy = TrafficPolicy(clock, seeded_rng(seed, "routing"))
        self.incidents = IncidentPlan(catalog.incident, clock=clock)
        self.routed = {STABLE: 0, CANARY: 0}
        self.stable: Track | None = None
        self.canary: Track | None = None
        self.lock = asyncio.Lock()
        # Set by a mesh of several services, which writes one targets file for all of them.
        self.targets_sink: Callable[[], None] | None = None
        self.planned_stable: str | None = None  # the version main() starts as stable

    # -- processes ---------------------------------------------------------

    def spawn(self, version: str) -> Track:
        """Start a service process for ``version`` (must run on the main thread)."""
        self.catalog.version(version)
        port = self._free_slot()
        self._spawned += 1
        args = procs.python_module(
            "canaryflow.local.service", "--version", version, "--port", port,
            "--catalog", self.catalog_path, "--service", self.service,
            *(["--reserved-port"] if self._reservations else []),
            *seed_flag(derive_seed(self.seed, "service", self._spawned, version)))
        log = self.log_dir / f"{self.service}-{version}-{port}.log"
        return Track(version, port, procs.spawn(args, log_path=log, env=procs.python_env()))

    def reserve_slots(self) -> None:
        """Hold both slot ports from the start until shutdown.

        A slot port is chosen when the platform starts but a canary binds it only at its deploy,
        minutes later; meanwhile any program on the machine could take it, and a foreign server
        answering there would be probed, scraped under this service's labels and judged as its
        canary. Held, the port is refused to others; the service listens beside the reservation.
        """
        for port in self.slot_ports:
            try:
                self._reservations.append(procs.reserve_port(port))
            except OSError as err:
                self.release_slots()
                raise RuntimeError(f"service {self.service!r}: slot port {port} is taken: {err}") from None

    def release_slots(self) -> None:
        for sock in self._reservations:
            sock.close()
        self._reservations.clear()

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
        self.adopt_stable(self.spawn(version), timeout)

    def adopt_stable(self, track: Track, timeout: float) -> None:
        """Wait for a spawned stable process to be ready, then serve it; stop it and raise if not.

        Apart from :meth:`spawn` so a mesh can start every service's stable before waiting for any."""
        try:
            procs.wait_http(track.url + "/ready", timeout, track.answers, proc=track.proc)
        except BaseException:
            procs.stop(track.proc)
            raise
        track.ready = True
        self.stable = track
        self.write_targets()

    def tracks(self) -> list[Track]:
        return [t for t in (self.stable, self.canary) if t is not None]

    def _serving_stable(self) -> Track:
        """The stable version, which is adopted before any request or admin call is served."""
        if self.stable is None:
            raise RuntimeError(f"service {self.service!r} has no stable version running yet")
        return self.stable

    def shutdown(self) -> None:
        """Stop every child; idempotent so both lifespan and finally can call it."""
        procs.stop_all([t.proc for t in self.tracks()])
        for track in self.tracks():
            track.check_exit()
        self.release_slots()

    def target_groups(self) -> list[dict]:
        """This service's Prometheus file_sd target groups, labelled with the service."""
        if self.slot_ports:  # fixed targets; the version label comes from the metrics themselves
            return [{"targets": [f"127.0.0.1:{p}" for p in self.slot_ports],
                     "labels": {"service": self.service}}]
        return [
            {"targets": [f"127.0.0.1:{t.port}"],
             "labels": {"service": self.service, "track": name, "version": t.version}}
            for name, t in ((STABLE, self.stable), (CANARY, self.canary)) if t is not None
        ]

    def write_targets(self) -> None:
        """Rewrite the Prometheus file_sd targets atomically (temp file + rename)."""
        if self.targets_sink is not None:
            self.targets_sink()
        elif self.targets_file is not None:
            write_json_atomically(self.targets_file, self.target_groups())

    # -- readiness ---------------------------------------------------------

    async def probe(self, client: httpx.AsyncClient, track: Track) -> None:
        if not track.check_exit():
            return
        try:
            resp = await client.get(track.url + "/ready", timeout=1.0)
            track.ready = track.answers(resp)
        except httpx.HTTPError:
            track.ready = False

    async def sync_incident(self, client: httpx.AsyncClient, track: Track) -> None:
        """Bring one service in line with the incident in force (or its absence)."""
        async with track.incident_lock:
            wanted = self.incidents.current()
            if track.incident == wanted or not track.check_exit():
                return
            if await push_incident(client, track.url, wanted, self._clock()):
                track.incident = wanted

    async def refresh(self, client: httpx.AsyncClient, track: Track) -> None:
        """Readiness and incident of one child: done together, so a new canary is under the
        incident in force by the time it is found ready to take traffic."""
        await self.probe(client, track)
        await self.sync_incident(client, track)

    # -- routing -----------------------------------------------------------

    def route(self) -> Track:
        """Choose the backend for one request and count it."""
        name = self.policy.pick()
        if name == CANARY and self.canary is None:
            name = STABLE
        self.routed[name] += 1
        if name == CANARY and self.canary is not None:
            return self.canary
        return self._serving_stable()

    # -- admin operations --------------------------------------------------

    def state(self) -> dict:
        """Everything a client needs; ``versions`` lets it refuse an unknown version up front."""
        self.policy.expire_lease()
        incident = self.incidents.current()

        def track(t: Track | None) -> dict | None:
            return None if t is None else {**t.to_json(), "incident_synced": t.incident == incident}

        schedule = self.catalog.incident
        return {
            "service": self.service,
            "versions": self.catalog.names,
            "stable": track(self.stable),
            "canary": track(self.canary),
            "canary_weight": self.policy.weight,
            "lease_expires_at": self.policy.lease_expires_at,
            "routed": dict(self.routed),
            "history": list(self.policy.history),
            "incident": incident.to_json(self._clock()) if incident else None,
            "incident_schedule": schedule.model_dump() if schedule else None,
            "routing": {"canary_share_factor": self.policy.split.canary_share_factor},
        }

    async def _retire(self, track: Track) -> None:
        await asyncio.to_thread(procs.stop, track.proc)
        track.check_exit()

    async def deploy_canary(self, version: str) -> dict:
        try:
            self.catalog.version(version)
        except UnknownVersionError as err:
            raise AdminError(400, str(err)) from None
        if version == self._serving_stable().version:
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
                         lease_seconds: float | None) -> dict:
        async with self.lock:
            if weight > 0:
                if self.canary is None:
                    raise AdminError(409, "no canary deployed")
                if not self.canary.ready:
                    await self.refresh(client, self.canary)
                if not self.canary.ready:
                    raise AdminError(409, f"canary {self.canary.version!r} is not ready"
                                          f" (exit_code={self.canary.exit_code})")
            self.policy.set_weight(weight, "set", lease_seconds)
            return self.state()

    async def promote(self) -> dict:
        async with self.lock:
            if self.canary is None:
                raise AdminError(409, "no canary to promote")
            old, self.stable, self.canary = self._serving_stable(), self.canary, None
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

    async def start_incident(self, client: httpx.AsyncClient, *, duration_s: float,
                             error_rate: float) -> dict:
        """Start an incident now and return once every running version has it (or failed to answer)."""
        self.incidents.start(duration_s=duration_s, error_rate=error_rate)
        await asyncio.gather(*(self.sync_incident(client, t) for t in self.tracks()))
        return self.state()

    async def end_incident(self, client: httpx.AsyncClient) -> dict:
        self.incidents.end()
        await asyncio.gather(*(self.sync_incident(client, t) for t in self.tracks()))
        return self.state()

    def set_canary_share_factor(self, factor: object) -> dict:
        """Misroute: the canary gets ``factor`` times its weight; the reported weight is unchanged."""
        try:
            self.policy.split.set_share_factor(factor)
        except ValueError as err:
            raise AdminError(400, str(err)) from None
        return self.state()


async def _json_body(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise AdminError(400, "request body must be JSON") from None
    if not isinstance(body, dict):
        raise AdminError(400, "request body must be a JSON object")
    return body


def _parse_weights(body: dict) -> tuple[int, float | None]:
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


def build_app(platform: Controller | Mesh) -> Starlette:
    """Starlette app: admin API under /-/ and the proxy for everything else.

    Admin paths exist twice: ``/-/services/<name>/<op>`` for any service, and ``/-/<op>`` for the
    only service of a one-service platform (the original API, which tests and users call)."""
    mesh = platform if isinstance(platform, Mesh) else Mesh([platform])
    shared: dict = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=128)
        # Proxied requests go through aiohttp (its C parser costs a fraction of httpx's CPU per
        # request, and the proxy carries every request of the platform); control calls use httpx.
        upstream = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256),
                                         timeout=aiohttp.ClientTimeout(total=30.0), auto_decompress=False)
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as client, upstream:
            shared["client"], shared["upstream"] = client, upstream
            poller = asyncio.create_task(mesh.poll_forever(client))
            try:
                yield
            finally:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
                mesh.shutdown()

    def service_of(request: Request) -> Controller:
        name = request.path_params.get("service")
        return mesh.only() if name is None else mesh.get(name)

    def admin(handler):
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(service_of(request), request)
            except AdminError as err:
                return JSONResponse({"error": str(err)}, status_code=err.status)
            except UnknownService as err:
                return JSONResponse({"error": str(err), "services": mesh.names}, status_code=404)
            except AmbiguousService as err:
                return JSONResponse({"error": str(err), "services": mesh.names}, status_code=400)
        return endpoint

    async def healthz(_: Request) -> Response:
        return JSONResponse({"ok": True})

    async def services(_: Request) -> Response:
        return JSONResponse(mesh.overview())

    async def state(controller: Controller, _: Request) -> Response:
        return JSONResponse(controller.state())

    async def canary(controller: Controller, request: Request) -> Response:
        version = (await _json_body(request)).get("version")
        if not isinstance(version, str) or not version:
            raise AdminError(400, "body must be {\"version\": NAME}")
        return JSONResponse(await controller.deploy_canary(version), status_code=201)

    async def weights(controller: Controller, request: Request) -> Response:
        weight, lease = _parse_weights(await _json_body(request))
        return JSONResponse(await controller.set_weight(shared["client"], weight, lease))

    async def promote(controller: Controller, _: Request) -> Response:
        return JSONResponse(await controller.promote())

    async def rollback(controller: Controller, _: Request) -> Response:
        return JSONResponse(await controller.rollback())

    async def incident(controller: Controller, request: Request) -> Response:
        if request.method == "DELETE":
            return JSONResponse(await controller.end_incident(shared["client"]))
        try:
            duration_s, error_rate = parse_incident_request(await _json_body(request))
        except ValueError as err:
            raise AdminError(400, str(err)) from None
        return JSONResponse(await controller.start_incident(
            shared["client"], duration_s=duration_s, error_rate=error_rate))

    async def routing(controller: Controller, request: Request) -> Response:
        if request.method == "DELETE":
            return JSONResponse(controller.set_canary_share_factor(1.0))
        body = await _json_body(request)
        unknown = set(body) - {"canary_share_factor"}
        if unknown:
            raise AdminError(400, f"unknown fields: {sorted(unknown)}")
        return JSONResponse(controller.set_canary_share_factor(body.get("canary_share_factor")))

    async def not_found(request: Request) -> Response:
        return JSONResponse({"error": f"no admin endpoint {request.url.path}"}, status_code=404)

    async def proxy(request: Request) -> Response:
        try:
            controller = mesh.for_host(request.headers.get("host"))
        except UnknownService as err:
            return JSONResponse({"error": str(err), "services": mesh.names}, status_code=404)
        track = controller.route()
        url = track.url + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        headers = [(k, v) for k, v in ((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw)
                   if k.lower() not in HOP_BY_HOP]
        try:
            async with shared["upstream"].request(request.method, url, headers=headers,
                                                  data=await request.body()) as upstream:
                content = await upstream.read()
                upstream_headers = list(upstream.headers.items())
                status = upstream.status
        except (TimeoutError, aiohttp.ClientError) as err:
            return JSONResponse({"error": "bad gateway", "backend": track.url,
                                 "detail": f"{type(err).__name__}: {err}"}, status_code=502)
        response = Response(content, status_code=status)
        response.raw_headers.extend(  # the body is passed on as it came (not decompressed), encoding included
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in upstream_headers if k.lower() not in HOP_BY_HOP)
        return response

    operations = [
        ("state", state, ["GET"]),
        ("canary", canary, ["POST"]),
        ("weights", weights, ["PUT"]),
        ("promote", promote, ["POST"]),
        ("rollback", rollback, ["POST"]),
        ("incident", incident, ["POST", "DELETE"]),
        ("routing", routing, ["POST", "DELETE"]),
    ]
    all_methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(lifespan=lifespan, routes=[
        Route("/-/healthz", healthz),
        Route("/-/services", services),
        *(Route(f"/-/{op}", admin(handler), methods=methods) for op, handler, methods in operations),
        *(Route(f"/-/services/{{service}}/{op}", admin(handler), methods=methods)
          for op, handler, methods in operations),
        Route("/-/{rest:path}", not_found, methods=all_methods),
        Route("/{path:path}", proxy, methods=all_methods),
    ])


def _controllers(args: argparse.Namespace) -> tuple[list[Controller], Path | None]:
    """One controller per service: from ``--services-file`` (several), else the single-service flags.

    Returns the controllers and the targets file a mesh of several writes for all of them."""
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="canaryflow-services-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    targets = args.targets_file.resolve() if args.targets_file else None
    if args.services_file is None:
        if not args.stable:
            raise ValueError("--stable is required without --services-file")
        catalog_path = resolve_catalog_path(args.catalog)
        catalog = load_catalog(catalog_path)
        controller = Controller(
            service=args.service or catalog.service, catalog=catalog, catalog_path=catalog_path,
            log_dir=log_dir, targets_file=targets,
            slot_ports=[int(p) for p in args.slot_ports.split(",") if p], seed=args.seed)
        controller.planned_stable = args.stable
        return [controller], None
    plans = read_plans(args.services_file)
    controllers = []
    for plan in plans:
        catalog_path = resolve_catalog_path(plan.catalog)
        controller = Controller(service=plan.service, catalog=load_catalog(catalog_path),
                                catalog_path=catalog_path, log_dir=log_dir, slot_ports=plan.slot_ports,
                                # one service replays a one-service stack's draws; several get a stream each
                                seed=args.seed if len(plans) == 1 else derive_seed(args.seed, "service", plan.service))
        controller.planned_stable = plan.stable
        controllers.append(controller)
    return controllers, targets


def start_stables(controllers: list[Controller], timeout: float) -> None:
    """Spawn every service's stable, then wait for each: fifty services start in the time of one."""
    spawned = []
    try:
        for controller in controllers:
            controller.reserve_slots()
        for controller in controllers:
            if controller.planned_stable is None:
                raise RuntimeError(f"service {controller.service!r} has no stable version planned")
            spawned.append((controller, controller.spawn(controller.planned_stable)))
        for controller, track in spawned:
            controller.adopt_stable(track, timeout)
    except BaseException:
        procs.stop_all([track.proc for _, track in spawned])
        for controller in controllers:
            controller.release_slots()
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the local platform controller.")
    parser.add_argument("--service", default=None, help="service name (default: from catalogue)")
    parser.add_argument("--stable", default=None, help="version to run as stable")
    parser.add_argument("--services-file", type=Path, default=None,
                        help="JSON list of services (service, stable, catalog, slot_ports) instead of "
                             "--service/--stable/--catalog/--slot-ports")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--catalog", type=Path, default=None)
    parser.add_argument("--targets-file", type=Path, default=None)
    parser.add_argument("--slot-ports", default="", help="two fixed ports, e.g. 9101,9102")
    parser.add_argument("--log-dir", type=Path, default=None, help="service logs (default: temp dir)")
    parser.add_argument("--ready-timeout", type=float, default=30.0)
    add_seed_argument(parser)
    args = parser.parse_args(argv)

    try:
        controllers, targets = _controllers(args)
        mesh = Mesh(controllers, targets_file=targets)
        start_stables(controllers, args.ready_timeout)
    except (UnknownVersionError, RuntimeError, TimeoutError, ValueError) as err:
        print(f"controller: cannot start stable version: {err}", file=sys.stderr)
        return 1
    config = uvicorn.Config(build_app(mesh), host="127.0.0.1", port=args.port,
                            log_level="warning", access_log=False, timeout_graceful_shutdown=3)
    try:
        uvicorn.Server(config).run()
    finally:
        mesh.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
