"""Demo HTTP service whose behaviour is driven by the version catalogue.

One process runs one version. Its errors, latency, faults, readiness and crashes come
from the catalogue entry, so canary analysis sees genuinely different metrics
per version rather than simulated numbers. Metrics follow the usual
``http_requests_total`` / ``http_request_duration_seconds`` conventions so
ordinary PromQL works against it.
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
from typing import Optional

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from canaryflow.local.catalog import VersionSpec, load_catalog

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


class ErrorBudget:
    """Spreads errors evenly: at 5% exactly one request in twenty fails.

    A random draw would make a short canary window look healthy by chance (no error in 60
    requests happens 5% of the time at 5%); even spacing keeps the demo and tests repeatable
    while still being a real error rate that Prometheus measures.
    """

    def __init__(self, rate: float) -> None:
        self.rate, self._due = rate, 0.0

    def due(self) -> bool:
        self._due += self.rate
        if self._due >= 1.0:
            self._due -= 1.0
            return True
        return False


def create_app(
    spec: VersionSpec,
    *,
    version: str,
    service: str,
    rng: Optional[random.Random] = None,
    clock=time.monotonic,
) -> Starlette:
    """Build the Starlette app for one version (readiness counted from now)."""
    rng = rng or random.Random()
    metrics = ServiceMetrics()
    started = clock()
    labelled = KNOWN_PATHS | set(spec.faults)
    errors = ErrorBudget(spec.error_rate or 0.0)
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
        if fault is not None:
            if fault.latency_ms is not None:
                await asyncio.sleep(fault.latency_ms / 1000.0)
            elif spec.latency_ms is not None:
                await asyncio.sleep(spec.latency_ms.sample_seconds(rng))
            if fault.body is not None:
                return PlainTextResponse(fault.body, status_code=fault.status)
            return JSONResponse(
                {"service": service, "version": version, "path": path, "fault": True},
                status_code=fault.status,
            )
        if spec.latency_ms is not None:
            await asyncio.sleep(spec.latency_ms.sample_seconds(rng))
        if path == "/api/health" and not is_ready():
            return JSONResponse({"status": "starting", "version": version}, status_code=503)
        if spec.error_rate and errors.due():
            return JSONResponse({"error": "injected failure", "version": version}, status_code=500)
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
            return JSONResponse({"ready": True, "version": version})
        return JSONResponse({"ready": False, "version": version}, status_code=503)

    async def metrics_endpoint(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[
        Route("/ready", ready),
        Route("/metrics", metrics_endpoint),
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


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Run one version of the demo service.")
    parser.add_argument("--version", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--catalog", type=Path, default=None)
    parser.add_argument("--service", default=None)
    args = parser.parse_args(argv)

    catalog = load_catalog(args.catalog)
    spec = catalog.version(args.version)
    if spec.crash_on_start:
        print(f"version {args.version} is configured to crash on start", file=sys.stderr)
        return CRASH_EXIT_CODE
    if spec.crash_after_s is not None:
        schedule_crash(spec.crash_after_s, args.version)
    app = create_app(spec, version=args.version, service=args.service or catalog.service)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
