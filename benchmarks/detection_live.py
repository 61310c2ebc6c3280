"""``detection.py --live N``: the same columns from real releases of the flow on the local platform.

Starts a ``LocalStack`` (controller running v1, Prometheus, Pushgateway, 100 requests/s of load)
and a Prefect server, then runs ``flows.release.canary_release`` N times with a healthy version and
N times with a bad one, alternating, with the short production spec ``LIVE_SPEC`` (printed). A
promoted release leaves its version as the stable one, so the stable v1 is put back through the
platform (deploy, ready, promote: no judging) and given a few seconds of traffic, so that every
release is judged against v1 with some history.

The figures per release are the judge's own: the canary requests and errors it counted (the
error-rate metric's cumulative counts, as in the run summary), the seconds spent in the steps
until the decision, and the decision itself.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.detection_rules import Outcome
from benchmarks.detection_traffic import Scenario

STABLE = "v1"
SETTLE_SECONDS = 5.0  # baseline traffic after the stable is put back, before the next release
#: Short waits so a release takes under a minute; production thresholds; rounds every second so a
#: release still sees a few dozen rounds. 120 canary requests per step is ~12 s at 10 % of 100/s.
LIVE_SPEC: dict[str, Any] = {
    "service": "checkout", "environment": "production", "steps": [10, 50, 100],
    "step_wait_seconds": 10, "analysis_interval_seconds": 1, "analysis_window": "10s",
    "min_canary_requests": 120, "max_consecutive_errors": 3, "max_hold_seconds": 40,
    "ready_timeout_seconds": 20,
    # No smoke checks: a version failing 5 % of requests at random fails a smoke test now and then,
    # and that gate is not what this run measures (the judge is).
    "smoke": [],
}


@dataclass(frozen=True)
class LiveRelease:
    version: str
    healthy: bool
    outcome: Outcome
    explanation: str


def judged_counts(summary: dict[str, Any], metric: str = "error_rate") -> tuple[int, int]:
    """(canary requests, canary errors) the judge counted: per step the last round's step count,
    summed; errors from the cumulative rate of the last round."""
    rounds = [m for m in summary.get("measurements", []) if m["metric"] == metric]
    if not rounds:
        return 0, 0
    last_per_step: dict[int, dict[str, Any]] = {}
    for m in rounds:
        last_per_step[m["step"]] = m
    requests = sum(int(m["requests"] or 0) for m in last_per_step.values())
    rate = rounds[-1]["value"] or 0.0
    return requests, round(rate * requests)


def outcome_of(summary: dict[str, Any], *, status: str, reason: str | None) -> Outcome:
    requests, errors = judged_counts(summary)
    steps = [s for s in summary.get("steps", []) if s["stage"].startswith("step ")]
    return Outcome(status == "rolled_back", reason or "promoted", sum(s["duration_s"] for s in steps), requests,
                   errors, max(0, len(steps) - 1))


def restore_stable(controller_url: str) -> None:
    from canaryflow.platforms.local import LocalPlatform

    platform = LocalPlatform(controller_url, service=LIVE_SPEC["service"])
    try:
        if platform.stable_version() != STABLE:
            platform.deploy(STABLE)
            platform.wait_ready(timeout=30)
            platform.promote()
    finally:
        platform.close()
    time.sleep(SETTLE_SECONDS)


def one_release(version: str, *, healthy: bool) -> LiveRelease:
    from canaryflow.release import ReleaseRolledBack
    from flows.release import canary_release

    state = canary_release({**LIVE_SPEC, "version": version}, return_state=True)
    result = state.result(raise_on_failure=False)
    if isinstance(result, ReleaseRolledBack):
        return LiveRelease(version, healthy, outcome_of(result.summary, status="rolled_back", reason=result.reason),
                           result.explanation)
    if isinstance(result, dict):
        return LiveRelease(version, healthy, outcome_of(result, status=result["status"], reason=None), "")
    raise RuntimeError(f"release of {version} ended {state.name}: {state.message}")


def _releases(n: int, server: Any, stack: Any, *, healthy_version: str, bad_version: str) -> list[LiveRelease]:
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from canaryflow.settings import get_settings

    releases: list[LiveRelease] = []
    os.environ.update(stack.settings_env())
    get_settings.cache_clear()
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        time.sleep(SETTLE_SECONDS)
        for _ in range(n):
            for version, healthy in ((healthy_version, True), (bad_version, False)):
                release = one_release(version, healthy=healthy)
                releases.append(release)
                o = release.outcome
                print(f"  {len(releases):>3}/{2 * n} {version:<14} {o.reason:<16} {o.seconds:6.1f} s in steps, "
                      f"{o.canary_requests:,} canary requests, {o.canary_errors} failed"
                      + (f" — {release.explanation[:140]}" if release.explanation else ""), flush=True)
                restore_stable(stack.controller_url)
        APILogWorker.drain_all(timeout=5)
    return releases


def run_live(n: int, *, healthy_version: str, bad_version: str, markdown: Path | None = None) -> list[LiveRelease]:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
    from benchmarks.detection import COLUMNS, Row, cells, markdown_table, plain_table
    from canaryflow.local.stack import LocalStack
    from canaryflow.prefect_server import PrefectServer

    print("Live detection: real releases of the flow on the local platform (100 requests/s, stable v1).")
    print(f"Spec: {LIVE_SPEC}")
    workdir = Path(tempfile.mkdtemp(prefix="canaryflow-detection-"))
    releases: list[LiveRelease] = []
    started = time.perf_counter()
    try:
        with PrefectServer(home=workdir / "prefect") as server, LocalStack(
                service="checkout", stable=STABLE, rps=100, workdir=workdir / "stack",
                load_duration=600 + 150 * n) as stack:
            releases = _releases(n, server, stack, healthy_version=healthy_version, bad_version=bad_version)
    except BaseException:
        print(f"logs kept in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    took = time.perf_counter() - started

    rows = []
    for healthy, version in ((True, healthy_version), (False, bad_version)):
        scenario = Scenario(f"live {version}", "errors", healthy, "production", 0.0, 0.0,
                            description="healthy" if healthy else "bad")
        row = Row(scenario, "canaryflow flow (live)")
        for r in releases:
            if r.healthy is healthy:
                row.add(r.outcome)
        rows.append((scenario, row))
    lines = [f"{s.name} ({s.description})\n\n{plain_table(COLUMNS, [cells(row)])}\n" for s, row in rows]
    healthy_row, bad_row = rows[0][1], rows[1][1]
    failed = statistics.median(bad_row.failed) if bad_row.failed else None
    targets = [
        f"[{'met' if healthy_row.rolled_back == 0 else 'NOT MET':>7}] 0 of {healthy_row.runs} healthy releases "
        f"rolled back (production thresholds): {healthy_row.rolled_back} of {healthy_row.runs}",
        f"[{'met' if failed is not None and failed <= 10 else 'NOT MET':>7}] bad releases: median failed canary "
        f"requests <= 10: {'—' if failed is None else f'{failed:g}'} "
        f"({bad_row.detected} of {bad_row.runs} rolled back for high_error_rate)",
    ]
    print("", *lines, "Targets (live):", *(f"  {t}" for t in targets), "", f"{len(releases)} releases in {took:.0f} s",
          sep="\n")
    if markdown:
        markdown.write_text("\n".join([
            f"Live: `{LIVE_SPEC}`", "",
            *(f"**{s.name}** ({s.description})\n\n{markdown_table(COLUMNS, [cells(row)])}\n" for s, row in rows),
            "Targets (live):", "", *(f"- {t}" for t in targets), "", f"{len(releases)} releases in {took:.0f} s", ""]))
    return releases
