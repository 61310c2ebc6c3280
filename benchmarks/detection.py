"""How fast each rollback rule catches a bad canary, and how often it rolls back a healthy one.

    python benchmarks/detection.py [--quick] [--runs N] [--seed S] [--scenario NAME ...]
                                   [--interval SECONDS] [--workers N] [--markdown FILE]
    python benchmarks/detection.py --live N [--healthy-version V] [--bad-version V] [--markdown FILE]

One run draws a release's traffic once (``detection_traffic``: Poisson arrivals, binomial split
and errors, log-normal latency in the demo service's buckets) and feeds the *same* counts to every
rule (``detection_rules``): the seed's "wait 300 s, then check", Flagger (threshold 1 and 5),
Argo Rollouts (failureLimit 0), canaryflow's previous rule and the new judge, which is the
project's own ``Analysis`` and ``decide`` reading simulated raw counters. The rules' readings of
their projects' documentation and code are in ``detection_rules``' docstring.

Prints one table per metric family (errors, latency, robustness) and a block saying, for each of
the judge's targets, met or not met with the figure. Numbers, never pass/fail: nothing here
asserts. ``--live N`` instead runs N healthy and N bad releases of the real flow on the local
platform (``detection_live``) and prints the same columns.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.detection_rules import DEFAULT_INTERVAL, Outcome, release_of, rules, spec_for  # noqa: E402
from benchmarks.detection_traffic import HISTORY_SECONDS, TICK, Scenario, draw, run_rng, scenarios  # noqa: E402

HEALTHY_RUNS, DETECTION_RUNS = 5000, 1000
QUICK_HEALTHY_RUNS, QUICK_DETECTION_RUNS = 300, 100
CHUNK = 25  # runs per task handed to a worker
SHORT_REASON = {"high_error_rate": "err", "high_latency": "lat", "insufficient_data": "data",
                "metrics_unavailable": "nodata", "traffic_mismatch": "split"}
FAMILIES = ("errors", "latency", "robustness")
STEPS = release_of(spec_for("production")).steps



# -- running ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    scenario_index: int
    start: int
    stop: int
    seed: int
    interval: float


def run_task(task: Task) -> tuple[int, list[list[Outcome]]]:
    """Draw each run of the task once and judge it with every rule: per run, one outcome per rule."""
    scenario = scenarios()[task.scenario_index]
    spec = spec_for(scenario.environment)
    judged = rules(interval=task.interval)
    outcomes = []
    for run in range(task.start, task.stop):
        traffic = draw(scenario, run_rng(task.seed, task.scenario_index, run), release_of(spec))
        outcomes.append([rule.judge(traffic, spec) for rule in judged])
    return task.scenario_index, outcomes


@dataclass
class Row:
    """One (scenario, rule) cell of the tables: every outcome's summary figures."""

    scenario: Scenario
    rule: str
    runs: int = 0
    reasons: Counter = field(default_factory=Counter)
    steps: Counter = field(default_factory=Counter)  # rollbacks by the index of the step
    seconds: list[float] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.runs += 1
        if outcome.rolled_back:
            self.reasons[outcome.reason] += 1
            self.steps[outcome.step] += 1
            self.seconds.append(outcome.seconds)
            self.requests.append(outcome.canary_requests)
            self.failed.append(outcome.canary_errors)

    @property
    def rolled_back(self) -> int:
        return sum(self.reasons.values())

    @property
    def detected(self) -> int:
        """Rollbacks for the scenario's own regression (a latency canary rolled back for error
        noise was not caught, it was lucky)."""
        return self.reasons[self.scenario.regression] if self.scenario.regression else 0

    def share(self, count: int) -> float:
        return count / self.runs if self.runs else math.nan


def simulate(chosen: Sequence[Scenario], *, runs: dict[str, int], seed: int, interval: float, workers: int,
             progress: bool = True) -> dict[tuple[str, str], Row]:
    everything = scenarios()
    names = [rule.name for rule in rules(interval=interval)]
    table = {(s.name, name): Row(s, name) for s in chosen for name in names}
    tasks = [Task(everything.index(s), start, min(start + CHUNK, runs[s.name]), seed, interval)
             for s in chosen for start in range(0, runs[s.name], CHUNK)]
    # The healthy rows (no early rollback, the judge measures every round) first: the long tasks
    # are spread over the workers before the short ones fill the gaps.
    tasks.sort(key=lambda t: (not everything[t.scenario_index].healthy, t.scenario_index, t.start))
    done, total = 0, sum(t.stop - t.start for t in tasks)
    with get_context("fork").Pool(processes=workers) as pool:
        for index, outcomes in pool.imap_unordered(run_task, tasks):
            for per_rule in outcomes:
                for name, outcome in zip(names, per_rule, strict=False):
                    table[(everything[index].name, name)].add(outcome)
            done += len(outcomes)
            if progress:
                print(f"\r{done:,}/{total:,} runs", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return table


# -- printing -----------------------------------------------------------------------------------

COLUMNS = ("rule", "runs", "false rollback", "detected", "canary req to rb", "s to rb", "failed canary req",
           "rb % by step", "rb % by reason")


def _median(values: Sequence[float]) -> str:
    return f"{statistics.median(values):,.0f}" if values else "—"


def _pct(fraction: float) -> str:
    return "—" if math.isnan(fraction) else f"{fraction * 100:.2f} %"


def cells(row: Row) -> list[str]:
    reasons = " ".join(f"{SHORT_REASON.get(reason, reason)} {row.share(n) * 100:.1f}"
                       for reason, n in row.reasons.most_common()) or "none"
    by_step = "/".join(f"{row.share(row.steps[k]) * 100:.1f}" for k in range(len(STEPS)))
    healthy = row.scenario.healthy
    return [row.rule, f"{row.runs:,}", _pct(row.share(row.rolled_back)) if healthy else "—",
            "—" if healthy else _pct(row.share(row.detected)), _median(row.requests), _median(row.seconds),
            _median(row.failed), by_step, reasons]


def plain_table(header: Sequence[str], body: Iterable[Sequence[str]]) -> str:
    body = [list(line) for line in body]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *body, strict=False)]
    lines = ["  ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w)
                       for i, (x, w) in enumerate(zip(line, widths, strict=False)))
             for line in [list(header), *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(header: Sequence[str], body: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(line) + " |" for line in body]
    return "\n".join(lines)


def family_tables(table: dict[tuple[str, str], Row], chosen: Sequence[Scenario], *, markdown: bool) -> str:
    render = markdown_table if markdown else plain_table
    out = []
    for family in FAMILIES:
        members = [s for s in chosen if s.family == family]
        if not members:
            continue
        out.append(f"### {family}" if markdown else f"== {family} ==")
        for s in members:
            rows = [cells(r) for (name, _), r in table.items() if name == s.name]
            title = f"{s.name} — {s.description}"
            out += [f"**{title}**" if markdown else title, "", render(COLUMNS, rows), ""]
    return "\n".join(out)


# -- targets ------------------------------------------------------------------------------------


def wilson(count: int, runs: int, z: float = 1.96) -> tuple[float, float]:
    """95 % interval of a proportion (Wilson): how far a simulated rate may be from the true one."""
    if runs == 0:
        return math.nan, math.nan
    p = count / runs
    centre = (p + z * z / (2 * runs)) / (1 + z * z / runs)
    half = z * math.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs)) / (1 + z * z / runs)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Target:
    text: str
    met: bool | None  # None: not measured in this run
    figure: str


def _rate(row: Row, count: int) -> str:
    low, high = wilson(count, row.runs)
    return f"{_pct(row.share(count))} of {row.runs:,} (95 % CI {_pct(low)}–{_pct(high)})"


def simulation_targets(table: dict[tuple[str, str], Row], judge: str) -> list[Target]:
    def row(name: str) -> Row | None:
        return table.get((name, judge))

    targets = []
    healthy = [r for (name, rule), r in table.items() if rule == judge and r.scenario.healthy]
    for r in healthy:
        targets.append(Target(f"healthy, {r.scenario.name}: false rollback <= 1 %",
                              r.share(r.rolled_back) <= 0.01, _rate(r, r.rolled_back)))
    if healthy:
        worst = max(healthy, key=lambda r: r.share(r.reasons["high_latency"]))
        targets.append(Target("healthy latency: false rollback for high_latency <= 1 % (worst healthy row)",
                              worst.share(worst.reasons["high_latency"]) <= 0.01,
                              f"{worst.scenario.name}: {_rate(worst, worst.reasons['high_latency'])}"))
    two = row("errors-2%-10rps")
    if two:
        targets += [
            Target("2 % vs 0.1 % at 10 canary req/s: rolled back in 100 %", two.rolled_back == two.runs,
                   _rate(two, two.rolled_back)),
            Target("2 % vs 0.1 % at 10 canary req/s: median <= 250 canary requests to rollback",
                   bool(two.requests) and statistics.median(two.requests) <= 250, _median(two.requests)),
            Target("2 % vs 0.1 % at 10 canary req/s: median <= 8 failed canary requests",
                   bool(two.failed) and statistics.median(two.failed) <= 8, _median(two.failed)),
        ]
    half = row("errors-0.5%-10rps")
    if half:
        targets.append(Target("0.5 % vs 0.1 % at 10 canary req/s: detected in >= 95 % within a default release",
                              half.share(half.detected) >= 0.95, _rate(half, half.detected)))
    slow = row("latency+30%")
    if slow:
        targets.append(Target("latency +30 %: detected in >= 95 %", slow.share(slow.detected) >= 0.95,
                              _rate(slow, slow.detected)))
    return targets


def targets_block(targets: Sequence[Target], *, markdown: bool) -> str:
    def verdict(t: Target) -> str:
        return "not measured" if t.met is None else "met" if t.met else "NOT MET"
    if markdown:
        return "\n".join(f"- **{verdict(t)}** — {t.text}: {t.figure}" for t in targets)
    width = max(len(t.text) for t in targets) if targets else 0
    return "\n".join(f"  [{verdict(t):>12}] {t.text.ljust(width)}  {t.figure}" for t in targets)


# -- the command --------------------------------------------------------------------------------


def header(chosen: Sequence[Scenario], *, runs: dict[str, int], seed: int, interval: float) -> str:
    spec = spec_for("production")
    lines = [
        "Detection benchmark: every rule judges the same simulated traffic per run.",
        f"Release: steps {spec.steps}, {spec.step_wait_seconds:g} s per step, hold up to "
        f"{spec.max_hold_seconds:g} s; new judge rounds every {interval:g} s, alpha {spec.analysis.alpha:g} "
        f"(split over its compared metrics), min {spec.min_canary_requests} canary requests per step.",
        "Traffic: Poisson arrivals, binomial split by the step weight (baseline = the rest, none at 100 %), "
        f"binomial errors, log-normal latency (p50 20 ms, p95 45 ms) in the demo service's buckets; counts per "
        f"{TICK} s; the stable served {HISTORY_SECONDS} s alone before the release. "
        "Canary req/s is the rate at the first step.",
        "Rules: seed = check the 1 m window once at the end of each step's wait; Flagger = 1 m interval, "
        "rollback once failed checks reach the threshold (checked at the next interval); Argo = 1 m background "
        "measurements, failureLimit 0; previous = canaryflow 5bf4b4c (30 s rounds, 1 m window, >= 50 requests, "
        "any FAIL); new judge = canaryflow's Analysis + decide. Thresholds: the environment's (production 0.1 % / "
        "p95 200 ms, staging 1 % / 500 ms), p95 for every rule.",
        f"Seed {seed}. Columns: false rollback % (healthy rows: any rollback), detected % (bad rows: rolled back "
        "for the scenario's own regression: error rate, or latency), medians over the rolled-back runs, "
        f"rollbacks as % of runs by step ({'/'.join(f'{w} %' for w in STEPS)}) and by reason "
        "(err = high_error_rate, lat = high_latency, data = insufficient_data, nodata = empty window).",
        "Scenarios:",
        *(f"  {s.name:<20} {runs[s.name]:>6,} runs  {s.description}" for s in chosen),
    ]
    return "\n".join(lines)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="runs per scenario (default: 5,000 healthy, 1,000 detection)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_HEALTHY_RUNS} healthy / {QUICK_DETECTION_RUNS} detection runs per scenario")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--scenario", action="append", default=[], metavar="NAME",
                        help="only this scenario (repeatable); names: "
                        + ", ".join(s.name for s in scenarios()).replace("%", "%%"))
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL,
                        help=f"the new judge's analysis interval in s (a multiple of {TICK}; default the spec's "
                             f"{DEFAULT_INTERVAL:g})")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also write the tables as markdown")
    parser.add_argument("--live", type=int, metavar="N", help="run N healthy and N bad releases on the local platform")
    parser.add_argument("--healthy-version", default="v2")
    parser.add_argument("--bad-version", default="v3-errors")
    args = parser.parse_args(argv)
    known = {s.name for s in scenarios()}
    unknown = sorted(set(args.scenario) - known)
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {sorted(known)}")
    if args.interval <= 0 or args.interval % TICK:
        parser.error(f"--interval must be a positive multiple of {TICK} s")
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    if args.live:
        from benchmarks.detection_live import run_live

        run_live(args.live, healthy_version=args.healthy_version, bad_version=args.bad_version,
                 markdown=args.markdown)
        return
    chosen = [s for s in scenarios() if not args.scenario or s.name in args.scenario]
    healthy_runs, detection_runs = (QUICK_HEALTHY_RUNS, QUICK_DETECTION_RUNS) if args.quick else (
        HEALTHY_RUNS, DETECTION_RUNS)
    runs = {s.name: args.runs or (healthy_runs if s.healthy else detection_runs) for s in chosen}
    started = time.perf_counter()
    table = simulate(chosen, runs=runs, seed=args.seed, interval=args.interval, workers=args.workers)
    elapsed = time.perf_counter() - started
    judge = rules(interval=args.interval)[-1].name
    targets = simulation_targets(table, judge)
    targets.append(Target("live: 0 of 20 healthy releases rolled back at production thresholds", None,
                          "run with --live 20"))
    top = header(chosen, runs=runs, seed=args.seed, interval=args.interval)
    took = f"{sum(runs.values()):,} runs x {len(rules())} rules in {elapsed:.0f} s on {args.workers} workers"
    print(top, "", family_tables(table, chosen, markdown=False), f"Targets ({judge}):",
          targets_block(targets, markdown=False), "", took, sep="\n")
    if args.markdown:
        args.markdown.write_text("\n".join([
            "```", top, "```", "", family_tables(table, chosen, markdown=True), f"Targets ({judge}):", "",
            targets_block(targets, markdown=True), "", took, ""]))


if __name__ == "__main__":
    main()
