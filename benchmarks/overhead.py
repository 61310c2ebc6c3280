"""What Prefect costs a release: the canary_release flow against a plain script doing the same calls.

    python benchmarks/overhead.py [--runs N]

Starts its own local platform (controller, Prometheus, Pushgateway, load generator) and Prefect
server on 127.0.0.1, then times, alternately, N full ``canary_release`` flow runs and N plain
releases: preflight (Prometheus ready, the stable version, the version known), deploy, wait until
ready, smoke test, then for each step set the weight and, every 0.5 s, check the canary still runs
and measure until both metrics PASS, then promote. The plain path takes no service lock. Steps
10/50/100, no fixed wait, staging thresholds, one canary request is enough evidence. Versions
alternate v2, v1, v2, ... so every release ships a version other than the running stable (the
version that was stable a moment ago: both paths judge only the new canary's samples, as the
analysis window starts at its deploy).

Both paths wait for the same Prometheus data, so most of each release is scrape latency; the
difference between them is what the flow engine, the tasks, the Prefect API calls and the
pipeline metrics (Pushgateway pushes, which the plain path skips) add.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # before prefect is imported

from canaryflow.analysis import Analysis  # noqa: E402
from canaryflow.judge import Verdict  # noqa: E402
from canaryflow.local.stack import LocalStack  # noqa: E402
from canaryflow.platforms.local import LocalPlatform  # noqa: E402
from canaryflow.prefect_server import PrefectServer  # noqa: E402
from canaryflow.prometheus import PrometheusSource  # noqa: E402
from canaryflow.settings import get_settings  # noqa: E402
from canaryflow.smoke import run_smoke  # noqa: E402
from canaryflow.spec import ReleaseSpec, validate_spec  # noqa: E402

SPEC: dict[str, Any] = {
    "service": "checkout", "environment": "staging", "steps": [10, 50, 100],
    "step_wait_seconds": 0, "analysis_interval_seconds": 0.5, "analysis_window": "10s",
    "min_canary_requests": 1, "ready_timeout_seconds": 30, "max_hold_seconds": 60,
}
LEASE_SECONDS = 30.0  # what the flow uses for this spec: max(30 s, 3 x analysis interval)


def prefect_release(version: str) -> float:
    from flows.release import canary_release

    started = time.perf_counter()
    state = canary_release({**SPEC, "version": version}, return_state=True)
    elapsed = time.perf_counter() - started
    if not state.is_completed():
        raise RuntimeError(f"flow release of {version} ended {state.name}: {state.message}")
    return elapsed


def plain_release(version: str, controller_url: str, prometheus_url: str) -> float:
    spec: ReleaseSpec = validate_spec({**SPEC, "version": version})
    started = time.perf_counter()
    platform = LocalPlatform(controller_url, service=spec.service)
    source = PrometheusSource(prometheus_url)
    try:  # the flow's preflight: Prometheus ready and answering, a version to replace, a known version
        if not source.is_online() or source.query("vector(1)").value != 1:
            raise RuntimeError("Prometheus is not ready")
        if platform.stable_version() == version:
            raise RuntimeError(f"{spec.service} already runs {version}")
        platform.check_version(version)
        platform.deploy(version)
        platform.wait_ready(timeout=spec.ready_timeout_seconds)
        report = run_smoke(platform.canary_url(), spec.smoke)
        if not report.passed:
            raise RuntimeError(f"smoke test of {version} failed: {report.failures()}")
        analysis = Analysis(spec, source, baseline_version=platform.stable_version())
        analysis.start()
        for index, weight in enumerate(spec.steps):
            platform.set_weight(weight, lease_seconds=LEASE_SECONDS)
            step_started = time.monotonic()
            while True:
                if problem := platform.canary_problem():
                    platform.rollback()
                    raise RuntimeError(f"{version} stopped serving at {weight}%: {problem}")
                verdicts = [m.verdict for m in analysis.round(step_index=index, expected_share=weight / 100)]
                if Verdict.FAIL in verdicts:
                    platform.rollback()
                    raise RuntimeError(f"{version} failed analysis at {weight}%")
                if all(v is Verdict.PASS for v in verdicts):
                    break
                if time.monotonic() - step_started > spec.max_hold_seconds:
                    platform.rollback()
                    raise RuntimeError(f"no passing analysis for {version} at {weight}%")
                platform.set_weight(weight, lease_seconds=LEASE_SECONDS)
                time.sleep(spec.analysis_interval_seconds)
        platform.promote()
    finally:
        platform.close()
        source.close()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="releases per variant (default 3)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    from prefect.settings import PREFECT_API_URL, temporary_settings

    workdir = Path(tempfile.mkdtemp(prefix="canaryflow-bench-"))
    print(f"starting the local platform and a Prefect server (work dir {workdir}) ...", flush=True)
    with LocalStack(service="checkout", stable="v1", rps=100, workdir=workdir / "stack") as stack, \
            PrefectServer(home=workdir / "prefect") as server:
        os.environ.update(stack.settings_env())
        get_settings.cache_clear()
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            times: dict[str, list[float]] = {"prefect": [], "plain": []}
            versions = iter(["v2", "v1"] * (args.runs + 1))
            for run in range(args.runs):
                # Alternate which variant goes first, so neither always ships the same version.
                order = ("prefect", "plain") if run % 2 == 0 else ("plain", "prefect")
                for variant in order:
                    version = next(versions)
                    if variant == "prefect":
                        elapsed = prefect_release(version)
                    else:
                        elapsed = plain_release(version, stack.controller_url, stack.prometheus_url)
                    times[variant].append(elapsed)
                    print(f"  run {run + 1}/{args.runs} {variant:<7} {version}: {elapsed:6.2f} s", flush=True)
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=5)

    prefect_mean, plain_mean = statistics.mean(times["prefect"]), statistics.mean(times["plain"])
    print()
    print(f"{'variant':<10}{'runs':>6}{'mean s':>10}{'min s':>10}{'max s':>10}")
    for name, values in times.items():
        print(f"{name:<10}{len(values):>6}{statistics.mean(values):>10.2f}{min(values):>10.2f}{max(values):>10.2f}")
    print(f"{'ratio':<10}{'':>6}{prefect_mean / plain_mean:>10.2f}   (prefect / plain, means)")
    print(f"{'overhead':<10}{'':>6}{prefect_mean - plain_mean:>10.2f}   (s per release, means)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
