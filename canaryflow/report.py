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
