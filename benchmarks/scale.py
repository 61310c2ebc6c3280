"""Scale: N services released at once through real Prefect workers on a PostgreSQL-backed server.

    python benchmarks/scale.py [--services 1,5,20,50] [--burst 500] [--quick]

Starts, all on 127.0.0.1: a throwaway PostgreSQL cluster and a Prefect server on it
(``canaryflow/local/postgres.py``, as the deployment tests do), prefect.yaml's deployments and two
process workers on the ``canaryflow`` pool, and one multi-service local platform sized for the
largest N (each service at ``--rps-per-service``, so two cores carry the whole fleet's traffic).
For each N it starts N ``canary-release/staging`` runs at once (one per service, short steps) and
waits until all are final, then prints per N:

- wall time, and its ratio to the wall time of one release;
- analysis rounds, late and missed: each run's table artifact lists its rounds' elapsed times per
  step; a round is due at most one interval after the previous one, so a gap over two intervals is
  late (more than one interval past due) and every whole interval past due is a missed round;
- Prometheus queries per second (Prometheus' own ``prometheus_http_requests_total`` for the query
  handlers, read from its /metrics before and after);
- Prefect API latency p50/p99 as a client sees it under that load: the benchmark's own calls (run
  creation and the status polls every 0.5 s), timed around each call;
- peak RSS of the workers (with their flow-run processes), the Prefect server and PostgreSQL, from
  /proc.

Then a webhook burst: ``--burst`` signed generic deliveries (and a tenth of them resent) to the
receiver with the real Prefect starter, on a deployment no worker polls; prints the runs created
on the PostgreSQL server, duplicates, statuses and p99 latency. Every phase has a deadline, every
process is stopped on the way out (also on Ctrl-C), the webhook secret is made per run and only
handed to the receiver's environment. Prints numbers and whether the targets are met; never fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


#: Short steps: two weights, 4 s each, a round every second.
INTERVAL_S = 1.0
SPEC: dict[str, Any] = {
    "environment": "staging", "steps": [50, 100], "step_wait_seconds": 4,
    "analysis_interval_seconds": INTERVAL_S, "analysis_window": "10s", "min_canary_requests": 8,
    "max_hold_seconds": 90, "ready_timeout_seconds": 90,
    "smoke": [{"path": "/api/health", "max_latency_ms": 5000}],
}
WORKERS = 2
ROUND_TIMEOUT_S = 900.0
BURST_TEMPLATE = "canary-release/scale-burst-{environment}"
TARGET_RATIO, TARGET_N = 1.5, 20


# --- pure parts (tests/unit/test_scale_benchmark.py) ---------------------------------------------

def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 1]); NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def round_gaps(rows: Iterable[dict[str, Any]]) -> list[float]:
    """Seconds between consecutive analysis rounds of one run, step by step, from the rows of its
    analysis table (one row per measurement; the rounds are the distinct ``(step, elapsed_s)``)."""
    by_step: dict[Any, set[float]] = {}
    for row in rows:
        if row.get("elapsed_s") is not None:
            by_step.setdefault(row["step"], set()).add(float(row["elapsed_s"]))
    gaps: list[float] = []
    for times in by_step.values():
        ordered = sorted(times)
        gaps += [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    return gaps


def late_and_missed(gaps: Iterable[float], interval: float) -> tuple[int, int]:
    """``(late, missed)``: a round is due at most one interval after the one before; it is late when
    it comes more than one interval past due, and each whole interval past due is a missed round."""
    late = missed = 0
    for gap in gaps:
        overdue = gap - interval
        if overdue > interval + 1e-9:
            late += 1
            missed += int(overdue / interval + 1e-9)
    return late, missed


def parse_counter(text: str, name: str, match: Callable[[dict[str, str]], bool]) -> float:
    """Sum of a counter's samples in Prometheus text exposition whose labels ``match``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        labels_text, _, value = line[len(name) + 1:].rpartition("} ")
        labels = dict(part.split("=", 1) for part in labels_text.split(",") if "=" in part)
        if match({k: v.strip('"') for k, v in labels.items()}):
            total += float(value.split()[0])
    return total


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


# --- processes and /proc -------------------------------------------------------------------------

def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_rss_mb(pid: int, tree: dict[int, list[int]]) -> float:
    todo, total = [pid], 0.0
    while todo:
        current = todo.pop()
        total += _rss_mb(current)
        todo += tree.get(current, [])
    return total


class RssSampler:
    """Peak RSS (MB) of named process trees, sampled every second in a thread."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups, self.peaks = groups, {name: 0.0 for name in groups}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            tree = _children()
            for name, pids in self.groups.items():
                self.peaks[name] = max(self.peaks[name], sum(tree_rss_mb(p, tree) for p in pids()))
            self._stop.wait(1.0)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


class ApiTimer:
    """Latency of Prefect API calls made by this process, timed around each call."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return call()
        finally:
            self.seconds.append(time.perf_counter() - started)


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine since boot, from /proc/stat: whatever runs here."""
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def phase_seconds(runs: Iterable[Any]) -> tuple[list[float], list[float]]:
    """Per final run: seconds from its creation to Running (a worker's poll, the flow-run process's
    start and imports), and from Running to its end (the release itself)."""
    starting, running = [], []
    for run in runs:
        if run.start_time is not None:
            starting.append((run.start_time - run.created).total_seconds())
            if run.end_time is not None:
                running.append((run.end_time - run.start_time).total_seconds())
    return starting, running


def prometheus_queries(prometheus_url: str) -> float:
    import httpx

    text = httpx.get(f"{prometheus_url}/metrics", timeout=10).text
    return parse_counter(text, "prometheus_http_requests_total",
                         lambda labels: labels.get("handler") in ("/api/v1/query", "/api/v1/query_range"))


# --- one round of N concurrent releases ----------------------------------------------------------

def run_round(services: list[str], versions: dict[str, str], *, prometheus_url: str,
              rss: dict[str, Callable[[], list[int]]]) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment

    timer = ApiTimer()
    queries_before = prometheus_queries(prometheus_url)
    cpu_before = cpu_times()
    with RssSampler(rss) as sampler:
        began = time.monotonic()
        ids = []
        for service in services:
            target = "v1" if versions[service] == "v2" else "v2"
            parameters = {"spec": {**SPEC, "service": service, "version": target}}
            run = timer(partial(run_deployment, "canary-release/staging", parameters=parameters, timeout=0,
                                tags=["scale-benchmark"]))
            ids.append(run.id)
        final: dict[str, Any] = {}
        with get_client(sync_client=True) as client:
            deadline = began + ROUND_TIMEOUT_S
            while len(final) < len(ids) and time.monotonic() < deadline:
                time.sleep(0.5)
                runs = timer(lambda: client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=len(ids)))
                for run in runs:
                    if run.state is not None and run.state.is_final() and str(run.id) not in final:
                        final[str(run.id)] = run
            wall = time.monotonic() - began
            for run_id in set(map(str, ids)) - set(final):  # over the deadline: end them, say so
                with contextlib.suppress(Exception):
                    from prefect.states import Cancelling
                    client.set_flow_run_state(run_id, Cancelling(), force=True)
            tables = [_analysis_rows(client, run_id) for run_id in final]
    busy, total = (after - before for after, before in zip(cpu_times(), cpu_before, strict=True))
    starting, running = phase_seconds(final.values())
    gaps = [g for rows in tables for g in round_gaps(rows)]
    rounds = sum(len({(row["step"], row["elapsed_s"]) for row in rows}) for rows in tables)
    queries = prometheus_queries(prometheus_url) - queries_before
    late, missed = late_and_missed(gaps, INTERVAL_S)
    completed = [r for r in final.values() if r.state.is_completed()]
    for run in completed:
        versions[run.parameters["spec"]["service"]] = run.parameters["spec"]["version"]
    return {"n": len(services), "wall": wall, "finished": len(final), "promoted": len(completed),
            "rounds": rounds, "late": late, "missed": missed,
            "max_gap": max(gaps, default=math.nan), "qps": queries / wall,
            "api_p50": percentile(timer.seconds, 0.5) * 1000, "api_p99": percentile(timer.seconds, 0.99) * 1000,
            "api_calls": len(timer.seconds), "rss": dict(sampler.peaks),
            "cpu_busy": busy / total if total else math.nan,
            "start_p50": percentile(starting, 0.5), "start_max": max(starting, default=math.nan),
            "run_p50": percentile(running, 0.5), "run_max": max(running, default=math.nan),
            "not_promoted": Counter(f"{r.state.name}: {(r.state.message or '')[:160]}"
                                    for r in final.values() if not r.state.is_completed())}


def _analysis_rows(client: Any, run_id: str) -> list[dict[str, Any]]:
    """The rows of a run's analysis table artifact (tasks/report.py)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
        flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]), type=ArtifactFilterType(any_=["table"])))
    rows: list[dict[str, Any]] = []
    for artifact in artifacts:
        data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        rows += data if isinstance(data, list) else []
    return rows


# --- the webhook burst ---------------------------------------------------------------------------

def burst_app():
    """uvicorn factory for the receiver's child process: the real Prefect starter, no rate limit."""
    from canaryflow.webhook import WebhookConfig, create_app
    from canaryflow.webhook.starter import PrefectRunStarter

    return create_app(WebhookConfig(rate_limit_per_second=0, deployment_template=BURST_TEMPLATE),
                      starter=PrefectRunStarter())


async def _deliver(url: str, secret: str, total: int, concurrency: int, batch: str) -> tuple[list[float], Counter]:
    import httpx

    from canaryflow.webhook.signatures import sign_generic

    latencies: list[float] = []
    statuses: Counter = Counter()
    ts = str(int(time.time()))
    # Every tenth request resends an earlier one (the very same signed request, as curl --retry does).
    order = [i for i in range(total)] + list(range(0, total, 10))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in order:
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                release = {"service": "checkout", "version": f"v{i}-{batch}", "environment": "staging"}
                body = json.dumps(release).encode()
                headers = {"content-type": "application/json", "x-canaryflow-timestamp": ts,
                           "x-canaryflow-signature": sign_generic(secret, ts, body),
                           "x-canaryflow-delivery": f"scale-{batch}-{i}"}
                started = time.perf_counter()
                try:
                    response = await client.post("/hooks/generic", content=body, headers=headers)
                    statuses[response.status_code] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                latencies.append(time.perf_counter() - started)

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), ROUND_TIMEOUT_S)
    return latencies, statuses


def webhook_burst(total: int, concurrency: int, env: dict[str, str], workdir: Path) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    from canaryflow.local import procs
    from flows.release import canary_release

    deployment_id = canary_release.to_deployment(name="scale-burst-staging").apply()  # no pool: no worker runs them
    secret = uuid.uuid4().hex
    port = procs.free_port()
    receiver = procs.spawn(
        [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.scale:burst_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        log_path=workdir / "receiver.log", env={**env, "CANARYFLOW_WEBHOOK_GENERIC_SECRET": secret}, cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        procs.wait_http(f"{url}/healthz", 60, proc=receiver, interval=0.2)
        began = time.monotonic()
        latencies, statuses = asyncio.run(_deliver(url, secret, total, concurrency, uuid.uuid4().hex[:8]))
        elapsed = time.monotonic() - began
    finally:
        procs.stop(receiver, timeout=10)
    runs: list[Any] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                limit=200, offset=len(runs))
            runs += page
            if len(page) < 200:
                break
    keys = Counter(r.idempotency_key for r in runs)
    return {"sent": sum(statuses.values()), "unique": total, "runs": len(runs),
            "duplicates": sum(c - 1 for c in keys.values()) + len(runs) - len(keys), "statuses": dict(statuses),
            "p50": percentile(latencies, 0.5) * 1000, "p99": percentile(latencies, 0.99) * 1000,
            "elapsed": elapsed, "concurrency": concurrency}


# --- main ----------------------------------------------------------------------------------------

@contextlib.contextmanager
def platform(n_services: int, rps_per_service: float, workdir: Path) -> Iterator[dict[str, Any]]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from canaryflow.local import procs
    from canaryflow.local.postgres import PostgresCluster
    from canaryflow.local.services import ServicePlan
    from canaryflow.local.stack import LocalStack
    from canaryflow.prefect_server import PrefectServer
    from tests.e2e.conftest import cli_env, prefect_cli

    with contextlib.ExitStack() as stack:
        t0 = time.monotonic()
        pg = stack.enter_context(PostgresCluster())
        server = stack.enter_context(PrefectServer(home=workdir / "prefect",
                                                   database_url=pg.create_database("prefect", owner="prefect")))
        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: server.api_url}))
        print(f"PostgreSQL + Prefect server ready in {time.monotonic() - t0:.0f} s", flush=True)
        services = {f"svc{i:02d}": ServicePlan(stable="v1", rps=rps_per_service) for i in range(n_services)}
        local = stack.enter_context(LocalStack(services=services, workdir=workdir / "stack", seed=20261203,
                                               load_duration=3600))
        os.environ.update(local.settings_env())  # what the workers hand their flow runs
        env = cli_env(server)
        for args in (("work-pool", "create", "canaryflow", "--type", "process", "--overwrite"),
                     ("--no-prompt", "deploy", "--all")):
            done = prefect_cli(*args, env=env, timeout=300)
            if done.returncode != 0:
                raise RuntimeError(f"prefect {' '.join(args)} failed: {(done.stdout + done.stderr)[-2000:]}")
        limit = math.ceil(n_services / WORKERS) + 1
        workers = []
        for i in range(WORKERS):
            workers.append(procs.spawn([sys.executable, "-m", "prefect", "worker", "start", "--pool", "canaryflow",
                                        "--limit", str(limit), "--name", f"scale-{i}"],
                                       log_path=workdir / f"worker-{i}.log", env=env))
            stack.callback(procs.stop, workers[-1], 30)
        print(f"platform of {n_services} services at {rps_per_service:g} req/s each, {WORKERS} workers "
              f"(limit {limit}) ready in {time.monotonic() - t0:.0f} s", flush=True)
        yield {"server": server, "pg": pg, "stack": local, "env": env, "rss": {
            "workers+runs": lambda: [w.pid for w in workers],
            "prefect server": lambda: [server.process.pid], "postgresql": lambda: [pg.process.pid]}}


def main() -> int:
    # Before prefect is imported (every import of it here is inside a function), and only when run:
    # the tests import this module for its pure parts, and their workers must keep their log level.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", default="1,5,20,50", help="comma-separated N (concurrent releases)")
    parser.add_argument("--burst", type=int, default=500, help="signed webhook deliveries (0: no burst)")
    parser.add_argument("--burst-concurrency", type=int, default=16)
    parser.add_argument("--rps-per-service", type=float, default=4.0)
    parser.add_argument("--quick", action="store_true", help="N = 1,5 and a burst of 100")
    args = parser.parse_args()
    ns = [1, 5] if args.quick else sorted({int(n) for n in args.services.split(",") if n.strip()})
    burst = min(args.burst, 100) if args.quick else args.burst
    if 1 not in ns:
        ns = [1, *ns]  # the baseline every ratio is taken against

    results: list[dict[str, Any]] = []
    burst_result = None
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="canaryflow-scale-") as tmp, platform(max(ns), args.rps_per_service,
                                                                                 Path(tmp)) as env:
        versions = {name: "v1" for name in env["stack"].services}
        run_round(env["stack"].services[:1], versions, prometheus_url=env["stack"].prometheus_url,
                  rss=env["rss"])  # warm-up: the workers' first run, imports, the service lock
        for n in ns:
            result = run_round(env["stack"].services[:n], versions, prometheus_url=env["stack"].prometheus_url,
                               rss=env["rss"])
            results.append(result)
            print(f"N={n}: {result['wall']:.1f} s, {result['promoted']}/{n} promoted", flush=True)
        if burst:
            burst_result = webhook_burst(burst, args.burst_concurrency, env["env"], Path(tmp))
    total = time.monotonic() - started

    base = results[0]["wall"]
    print(f"\nscale benchmark, 127.0.0.1, {os.cpu_count()} cores shared with other work; PostgreSQL-backed "
          f"Prefect server, {WORKERS} process workers; {args.rps_per_service:g} req/s per service; steps "
          f"{SPEC['steps']} x {SPEC['step_wait_seconds']} s, a round every {INTERVAL_S:g} s; {total:.0f} s in all")
    print("| N | wall s | x one | promoted | rounds | late | missed | max gap s | Prom q/s | API p50 ms | "
          "API p99 ms | workers+runs MB | server MB | PostgreSQL MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['n']} | {r['wall']:.1f} | {r['wall'] / base:.2f} | {r['promoted']}/{r['n']} | {r['rounds']} | "
              f"{r['late']} | {r['missed']} | {r['max_gap']:.1f} | {r['qps']:.1f} | {r['api_p50']:.0f} | "
              f"{r['api_p99']:.0f} | {r['rss']['workers+runs']:.0f} | {r['rss']['prefect server']:.0f} | "
              f"{r['rss']['postgresql']:.0f} |")
        for ending, count in sorted(r["not_promoted"].items(), key=lambda item: -item[1]):
            print(f"|   | not promoted ({count}): {ending} |")
    print("\nwhere the time goes: creation to Running (a worker's poll, the flow-run process's start and "
          "imports) and Running to the end (the release), per run; the machine's CPU busy during the round")
    print("| N | to Running p50 s | to Running max s | release p50 s | release max s | CPU busy |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['n']} | {r['start_p50']:.1f} | {r['start_max']:.1f} | {r['run_p50']:.1f} | "
              f"{r['run_max']:.1f} | {r['cpu_busy']:.0%} |")
    at_target = next((r for r in results if r["n"] == TARGET_N), None)
    if at_target is not None:
        print(f"target: {TARGET_N} concurrent releases within {TARGET_RATIO}x one: "
              f"{at_target['wall'] / base:.2f}x, {met(at_target['wall'] / base <= TARGET_RATIO)}")
    late = sum(r["late"] for r in results)
    print(f"target: no analysis round later than one interval: {late} late, {met(late == 0)}")
    if burst_result is not None:
        b = burst_result
        ok = b["runs"] == b["unique"] and b["duplicates"] == 0
        print(f"webhook burst: {b['sent']} signed deliveries ({b['unique']} distinct, the rest resent) at "
              f"concurrency {b['concurrency']} in {b['elapsed']:.1f} s; statuses {b['statuses']}; runs on the "
              f"PostgreSQL server {b['runs']}, duplicates {b['duplicates']}; latency p50 {b['p50']:.0f} ms, "
              f"p99 {b['p99']:.0f} ms")
        print(f"target: burst {b['runs']}/{b['unique']} runs, {b['duplicates']} duplicates: {met(ok)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
