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
    lines = [
        f"thresholds ({spec.environment.value}): error rate <= {spec.max_error_rate:.4%}, p95 latency <= "
        f"{spec.max_p95_latency_ms:g} ms; at least {spec.min_canary_requests} canary requests per verdict; "
        f"{spec.max_consecutive_errors} query errors in a row roll back",
        "smoke tests: " + (", ".join(f"{c.method} {c.path} -> {c.expect_status}" for c in spec.smoke) or "none"),
        f"retries: up to {spec.retry.max_attempts} attempts on {', '.join(spec.retry.on_reasons)}; backoff "
        f"{spec.retry.backoff_seconds:g} s x{spec.retry.backoff_factor:g} (max {spec.retry.max_backoff_seconds:g} s)",
        (f"approval gate: before step {len(spec.steps)} ({spec.steps[-1]}%), rollback after "
         f"{spec.approval.timeout_seconds} s without an answer" if spec.needs_approval else "approval gate: none"),
        f"queries (window {spec.analysis_window}):",
    ]
    for line in lines:
        console.print(escape(line), soft_wrap=True)
    for name, promql in spec.rendered_queries().items():
        console.print(f"  [bold]{name}[/bold]: {escape(promql)}", soft_wrap=True)
    console.print("[dim]plan only: nothing was changed[/dim]")
