"""Demo HTTP service whose behaviour is driven by the version catalogue.

One process runs one version. Its errors, latency, faults, readiness and crashes come
from the catalogue entry, so canary analysis sees genuinely different metrics
per version rather than simulated numbers. Errors and latencies are drawn at random for
every request (seedable with ``--seed``), as real failures come: in runs and gaps, so a
short window can look clean or twice as bad as the rate. Metrics follow the usual
``http_requests_total`` / ``http_request_duration_seconds`` conventions so
ordinary PromQL works against it.

The controller puts incidents in force through ``PUT``/``DELETE /-/incident``, an admin
path outside the user paths and so never counted in the request metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import threading
import time
from pathlib import Path

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from canaryflow.local import procs
from canaryflow.local.catalog import VersionSpec, load_catalog
from canaryflow.local.incidents import INCIDENT_PATH, ServiceIncident, parse_incident_request
from canaryflow.local.seeds import add_seed_argument

CRASH_EXIT_CODE = 3
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2.5, 5, 10)
# Paths reported under their own label; anything else becomes "other" so a
# scanner hitting random URLs cannot blow up metric cardinality.
KNOWN_PATHS = frozenset({"/", "/api/orders", "/api/health", "/api/cart", "/api/payments"})
USER_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


class ServiceMetrics:
    """Per-app registry so several apps can coexist in one process (tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total", "HTTP requests served.",
            ["code", "version", "path"], registry=self.registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds", "HTTP request latency.",
            ["version", "path"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )


class VersionBehaviour:
    """The random part of one version: what each request draws for its latency and failure.

    Failures have independent causes, each a Bernoulli draw: the version's own ``error_rate``
    (HTTP 500) and an incident in force (HTTP 503, a dependency down). Together a request fails
    with probability ``1 - (1 - version) * (1 - incident)``, never below either one, and an
    incident does not mask a canary's own bug. Distinct codes tell the causes apart in tests.
    """

    def __init__(self, spec: VersionSpec, *, rng: random.Random,
                 incident: ServiceIncident | None = None) -> None:
        self.spec = spec
        self.rng = rng
        self.incident = incident or ServiceIncident()

    def latency_s(self) -> float:
        """Seconds this request takes: the fitted log-normal, plus the slow tail when drawn."""
        seconds = self.spec.latency_ms.sample_seconds(self.rng) if self.spec.latency_ms else 0.0
        slow = self.spec.slow
        if slow is not None and self.rng.random() < slow.fraction:
            seconds += slow.extra_ms / 1000.0
        return seconds

    def failure(self) -> int | None:
        """The status this request fails with, or None when it succeeds."""
        if self.rng.random() < self.spec.error_rate:
            return 500
        incident_rate = self.incident.error_rate()
        if incident_rate and self.rng.random() < incident_rate:
            return 503
        return None


def create_app(
    spec: VersionSpec,
    *,
    version: str,
    service: str,
    rng: random.Random | None = None,
    clock=time.monotonic,
) -> Starlette:
    """Build the Starlette app for one version (readiness counted from now)."""
    metrics = ServiceMetrics()
    started = clock()
    labelled = KNOWN_PATHS | set(spec.faults)
    behaviour = VersionBehaviour(spec, rng=rng or random.Random(), incident=ServiceIncident(clock))
    # Zero the series a request can produce before the first request does: Prometheus' rate()
    # ignores the jump from "no series" to 1, so a first error would otherwise go unseen.
    fault_codes = {str(f.status) for f in spec.faults.values()}
    for path in labelled:
        for code in {"200", "500", "503"} | fault_codes:
            metrics.requests.labels(code, version, path)

    def is_ready() -> bool:
        return clock() - started >= spec.readiness_delay_s

    def path_label(path: str) -> str:
        return path if path in labelled else "other"

    async def respond(path: str) -> Response:
        fault = spec.faults.get(path)
        delay = fault.latency_ms / 1000.0 if fault and fault.latency_ms is not None else behaviour.latency_s()
        if delay:
            await asyncio.sleep(delay)
        if fault is not None:
            if fault.body is not None:
                return PlainTextResponse(fault.body, status_code=fault.status)
            return JSONResponse(
                {"service": service, "version": version, "path": path, "fault": True},
                status_code=fault.status,
            )
        if path == "/api/health" and not is_ready():
            return JSONResponse({"status": "starting", "version": version}, status_code=503)
        status = behaviour.failure()
        if status == 500:
            return JSONResponse({"error": "injected failure", "version": version}, status_code=500)
        if status == 503:
            return JSONResponse({"error": "incident", "version": version}, status_code=503)
        return JSONResponse({"service": service, "version": version, "path": path})

    async def user_path(request: Request) -> Response:
        path = request.url.path
        t0 = time.perf_counter()
        response = await respond(path)
        label = path_label(path)
        metrics.duration.labels(version, label).observe(time.perf_counter() - t0)
        metrics.requests.labels(str(response.status_code), version, label).inc()
        return response

    async def ready(_: Request) -> Response:
        if is_ready():
            return JSONResponse({"ready": True, "version": version, "pid": os.getpid()})
        return JSONResponse({"ready": False, "version": version, "pid": os.getpid()}, status_code=503)

    async def metrics_endpoint(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def incident(request: Request) -> Response:
        if request.method == "PUT":
            try:
                body = await request.json()
                if not isinstance(body, dict):
                    raise ValueError("request body must be a JSON object")
                duration_s, error_rate = parse_incident_request(body)
            except ValueError as err:  # also malformed JSON
                return JSONResponse({"error": str(err)}, status_code=400)
            behaviour.incident.apply(duration_s=duration_s, error_rate=error_rate)
        elif request.method == "DELETE":
            behaviour.incident.clear()
        return JSONResponse({"incident": behaviour.incident.to_json(), "version": version})

    return Starlette(routes=[
        Route("/ready", ready),
        Route("/metrics", metrics_endpoint),
        Route(INCIDENT_PATH, incident, methods=["GET", "PUT", "DELETE"]),
        Route("/", user_path, methods=USER_METHODS),
        Route("/api/{rest:path}", user_path, methods=USER_METHODS),
    ])


def schedule_crash(after_s: float, version: str, exit=os._exit) -> threading.Timer:
    """Arm a timer that ends the whole process with CRASH_EXIT_CODE ``after_s`` seconds from now.

    ``os._exit`` rather than ``sys.exit`` or a signal: SystemExit raised in the timer thread
    ends only that thread, and uvicorn turns SIGTERM/SIGINT into a graceful shutdown that
    exits 0. Skipping all cleanup is the point: like a real crash, open connections are cut
    and nothing is flushed but the line above. The thread is a daemon so a normal shutdown need
    not wait for it.
    """

    def crash() -> None:
        print(f"version {version} is configured to crash {after_s:g}s after start; "
              f"exiting with code {CRASH_EXIT_CODE}", file=sys.stderr, flush=True)
        exit(CRASH_EXIT_CODE)

    timer = threading.Timer(after_s, crash)
    timer.daemon = True
    timer.start()
    return timer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one version of the demo service.")
    parser.add_argument("--version", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--catalog", type=Path, default=None)
    parser.add_argument("--service", default=None)
    parser.add_argument("--reserved-port", action="store_true",
                        help="the port is held by the controller (SO_REUSEPORT): listen beside its reservation")
    add_seed_argument(parser)
    args = parser.parse_args(argv)

    catalog = load_catalog(args.catalog)
    spec = catalog.version(args.version)
    if spec.crash_on_start:
        print(f"version {args.version} is configured to crash on start", file=sys.stderr)
        return CRASH_EXIT_CODE
    if spec.crash_after_s is not None:
        schedule_crash(spec.crash_after_s, args.version)
    app = create_app(spec, version=args.version, service=args.service or catalog.service,
                     rng=random.Random(args.seed))
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    if not args.reserved_port:
        uvicorn.Server(config).run()
        return 0
    try:
        sock = procs.shared_listener(args.port)
    except OSError as err:
        print(f"cannot listen on reserved port {args.port}: {err}", file=sys.stderr)
        return 1
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
