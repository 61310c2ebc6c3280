"""Load on the webhook receiver: throughput and latency of signed deliveries on loopback.

    python benchmarks/webhook_load.py [--requests 2000] [--concurrency 16] [--prefect]

Starts the receiver with uvicorn in a child process on a free 127.0.0.1 port and sends N signed
generic deliveries (each a new release; every tenth a redelivery of an earlier one) from
``--concurrency`` concurrent httpx clients, then stops everything and prints requests per second
and p50/p99 latency.

By default the receiver uses an in-memory starter with the same protocol as the Prefect one, so
the numbers are the receiver's own cost: rate limit, size cap, HMAC check, JSON, mapping, release
spec validation and the response. ``--prefect`` instead starts a real Prefect server, registers
the canary-release flow as a deployment, and creates real (Scheduled) flow runs: the numbers
then include the Prefect API (SQLite), which dominates.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # before prefect is imported

import httpx  # noqa: E402

from canaryflow.local import procs  # noqa: E402
from canaryflow.webhook.signatures import sign_generic  # noqa: E402

SECRET = uuid.uuid4().hex  # per run, handed to the child through its environment
TEMPLATE = "canary-release/webhook-bench-{environment}"


def bench_app():
    """uvicorn factory for the child process (``--factory benchmarks.webhook_load:bench_app``)."""
    from canaryflow.webhook import WebhookConfig, create_app
    from canaryflow.webhook.starter import InMemoryStarter, PrefectRunStarter

    config = WebhookConfig(rate_limit_per_second=0, deployment_template=TEMPLATE)
    starter = PrefectRunStarter() if os.environ.get("BENCH_STARTER") == "prefect" else InMemoryStarter()
    return create_app(config, starter=starter)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), to separate the receiver's cost from the client's."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def load(url: str, total: int, concurrency: int) -> tuple[list[float], Counter, float]:
    latencies: list[float] = []
    statuses: Counter = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    batch = uuid.uuid4().hex[:8]  # fresh versions per call: the warm-up must not pre-create runs
    ts = str(int(time.time()))  # one signing time per call: a redelivery resends the very signed request
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                n = i - (i % 10 == 9) * 5  # every tenth request redelivers an earlier one
                body = f'{{"service": "checkout", "version": "v{n}-{batch}", "environment": "staging"}}'.encode()
                headers = {"content-type": "application/json", "x-canaryflow-timestamp": ts,
                           "x-canaryflow-signature": sign_generic(SECRET, ts, body),
                           "x-canaryflow-delivery": f"bench-{batch}-{n}"}
                started = time.perf_counter()
                response = await client.post("/hooks/generic", content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return latencies, statuses, elapsed


def register_deployments() -> None:
    from flows.release import canary_release

    for environment in ("staging", "production"):
        canary_release.to_deployment(name=f"webhook-bench-{environment}").apply()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--prefect", action="store_true", help="start runs on a real Prefect server")
    args = parser.parse_args()

    port = procs.free_port()
    env = procs.python_env({"CANARYFLOW_WEBHOOK_GENERIC_SECRET": SECRET,
                            "BENCH_STARTER": "prefect" if args.prefect else "memory"})
    server = None
    with tempfile.TemporaryDirectory(prefix="canaryflow-webhook-bench-") as tmp:
        if args.prefect:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            from canaryflow.prefect_server import PrefectServer

            server = PrefectServer(home=Path(tmp) / "prefect").start()
            env["PREFECT_API_URL"] = server.api_url
            with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
                register_deployments()
        receiver = procs.spawn(
            [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.webhook_load:bench_app",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"],
            log_path=Path(tmp) / "receiver.log", env=env, cwd=ROOT)
        try:
            url = f"http://127.0.0.1:{port}"
            procs.wait_http(f"{url}/healthz", 30, proc=receiver, interval=0.1)
            asyncio.run(load(url, min(50, args.requests), args.concurrency))  # warm up connections, imports
            cpu_before, client_before = cpu_seconds(receiver.pid), time.process_time()
            latencies, statuses, elapsed = asyncio.run(load(url, args.requests, args.concurrency))
            cpu_after, client_cpu = cpu_seconds(receiver.pid), time.process_time() - client_before
        finally:
            procs.stop(receiver, timeout=10)
            if server is not None:
                server.stop()

    starter = "real Prefect server (SQLite)" if args.prefect else "in-memory starter (receiver only)"
    ms = [v * 1000 for v in latencies]
    print(f"webhook receiver, {starter}, uvicorn in a child process, 127.0.0.1")
    print(f"requests    {len(latencies)} at concurrency {args.concurrency} in {elapsed:.2f} s")
    print(f"statuses    {dict(sorted(statuses.items()))}")
    print(f"throughput  {len(latencies) / elapsed:.0f} req/s")
    print(f"latency     p50 {statistics.median(ms):.1f} ms   p99 {percentile(ms, 0.99):.1f} ms   "
          f"max {max(ms):.1f} ms")
    if cpu_before is not None and cpu_after is not None:
        print(f"cpu/request receiver {(cpu_after - cpu_before) / len(ms) * 1000:.2f} ms, "
              f"load client {client_cpu / len(ms) * 1000:.2f} ms (both share this machine's "
              f"{os.cpu_count()} cores: the client is part of what limits throughput)")
    return 0 if set(statuses) <= {200, 202} else 1


if __name__ == "__main__":
    raise SystemExit(main())
