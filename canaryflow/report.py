"""Rich rendering of a release's outcome: the step-by-step summary and the deciding numbers."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

OUTCOME_STYLE = {"ok": "green", "passed": "green", "advance": "green", "promote": "bold green",
                 "rollback": "bold red", "rolled_back": "bold red", "failed": "red", "rollback_failed": "bold red"}


def summary_table(summary: dict[str, Any]) -> Table:
    status = summary["status"]
    colour = "green" if status == "promoted" else "red"
    title = (f"{summary['service']} {summary['previous_version']} -> {summary['version']} "
             f"({summary['environment']}): [{colour}]{status}[/{colour}] in {summary['duration_s']:.0f}s")
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("stage")
    table.add_column("canary", justify="right")
    table.add_column("time", justify="right")
    table.add_column("outcome")
    table.add_column("detail", overflow="fold", max_width=80)
    for step in summary["steps"]:
        style = OUTCOME_STYLE.get(step["outcome"], "")
        table.add_row(step["stage"], f"{step['weight']}%", f"{step['duration_s']:.1f}s",
                      f"[{style}]{step['outcome']}[/{style}]" if style else step["outcome"], escape(step["detail"]))
    return table


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    console.print(summary_table(summary))
    if summary["status"] != "promoted":
        console.print(f"[bold red]reason:[/bold red] {summary['reason']} — {escape(summary['explanation'])}")
    for sentence in summary.get("evidence_worth") or []:
        console.print(f"[bold]evidence:[/bold] {escape(sentence)}", soft_wrap=True)
    rounds = len({(m["step"], m["elapsed_s"]) for m in summary["measurements"]})
    console.print(f"[dim]{rounds} analysis rounds, {len(summary['measurements'])} measurements[/dim]")


def print_plan(console: Console, spec: Any) -> None:
    """What ``canaryflow plan`` shows: the release as it would run, from the validated spec alone.

    Queries are printed as plain lines (not in a table) so they can be copied into Prometheus whole.
    """
    console.print(f"[bold]{escape(spec.run_name)}[/bold] on platform [bold]{spec.platform}[/bold] "
                  f"(namespace {spec.namespace})")
    steps = Table(title="steps", title_justify="left")
    for column in ("#", "canary weight", "wait", "analysis every", "hold at most"):
        steps.add_column(column)
    for index, weight in enumerate(spec.steps):
        steps.add_row(str(index + 1), f"{weight}%", f"{spec.step_wait_seconds:g} s",
                      f"{spec.analysis_interval_seconds:g} s", f"+{spec.max_hold_seconds:g} s")
    console.print(steps)
    analysis = spec.analysis
    lines = [
        f"thresholds ({spec.environment.value}): error rate <= {spec.max_error_rate:.4%}, p95 latency <= "
        f"{spec.max_p95_latency_ms:g} ms; at least {spec.min_canary_requests} canary requests per step; "
        f"{spec.max_consecutive_errors} query errors in a row roll back",
        f"judge: canary vs baseline (the stable version serving at the same time), anytime-valid, alpha "
        f"{analysis.alpha:g} over the whole release"
        f"{' (strict: SLO upper bounds must be within limits)' if analysis.strict else ''}; "
        f"traffic-split check at {analysis.traffic_alpha:g}",
        "smoke tests: " + (", ".join(f"{c.method} {c.path} -> {c.expect_status}" for c in spec.smoke) or "none"),
        f"retries: up to {spec.retry.max_attempts} attempts on {', '.join(spec.retry.on_reasons)}; backoff "
        f"{spec.retry.backoff_seconds:g} s x{spec.retry.backoff_factor:g} (max {spec.retry.max_backoff_seconds:g} s)",
        (f"approval gate: before step {len(spec.steps)} ({spec.steps[-1]}%), rollback after "
         f"{spec.approval.timeout_seconds} s without an answer" if spec.needs_approval else "approval gate: none"),
    ]
    for line in lines:
        console.print(escape(line), soft_wrap=True)
    print_metrics(console, spec)
    print_planned_worth(console, spec)
    console.print("[dim]plan only: nothing was changed[/dim]")


def print_metrics(console: Console, spec: Any) -> None:
    """Each metric with its queries rendered for the canary; the baseline's are the same with the
    stable version in place of the canary's (printed whole, so they can be copied into Prometheus)."""
    from canaryflow.analysis_spec import LatencyMetric, RatioMetric

    console.print(f"metrics (raw counters, differenced per round; the baseline reads them with its own version; "
                  f"analysis window {spec.analysis_window} for $window in threshold queries):", soft_wrap=True)
    for metric in spec.analysis.metrics:
        if isinstance(metric, RatioMetric):
            limit = metric.max if metric.max is not None else spec.max_error_rate
            console.print(f"  [bold]{metric.name}[/bold] ratio: limit {limit:.4%}, tolerance {metric.tolerance:g}x, "
                          f"grid {metric.grid.low:g}..{metric.grid.high:g}x", soft_wrap=True)
            for label, template in (("total", metric.total or spec.queries.requests),
                                    ("bad", metric.bad or spec.queries.errors)):
                console.print(f"    {label}: {escape(spec.render(template))}", soft_wrap=True)
        elif isinstance(metric, LatencyMetric):
            limit = metric.max_ms if metric.max_ms is not None else spec.max_p95_latency_ms
            console.print(f"  [bold]{metric.name}[/bold] latency: p{metric.quantile * 100:g} <= {limit:g} ms; "
                          f"boundaries {metric.boundaries_ms}", soft_wrap=True)
            console.print(f"    buckets: {escape(spec.render(metric.buckets or spec.queries.latency_buckets))}",
                          soft_wrap=True)
        else:
            bounds = " ".join(f"{k} {v:g}" for k, v in (("min", metric.min), ("max", metric.max)) if v is not None)
            console.print(f"  [bold]{metric.name}[/bold] threshold: {bounds}, failure limit {metric.failure_limit}",
                          soft_wrap=True)
            console.print(f"    query: {escape(spec.render(metric.query))}", soft_wrap=True)


def print_planned_worth(console: Console, spec: Any) -> None:
    """What a passing release would be worth, at a few traffic levels (the plan cannot know the traffic)."""
    from canaryflow.assess.worth import planned_worth

    baseline = spec.max_error_rate / 2
    parts = []
    for rps in (1, 10, 100):
        ratio = planned_worth(spec, canary_rps_first_step=rps, baseline_rate=baseline)
        parts.append(f"{rps} req/s -> {'not even 100x' if ratio is None else f'>= {ratio:g}x'}")
    console.print(escape(f"evidence if it passes (baseline failing at {baseline:.3%}; canary requests/s at the first "
                         f"step): would catch {'; '.join(parts)} the baseline's error rate with 90% probability"),
                  soft_wrap=True)
