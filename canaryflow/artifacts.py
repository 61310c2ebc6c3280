"""What the Prefect UI shows for a release: the measurements table and the decision summary.

Plain functions over ``ReleaseRun.summary()`` so tests read them without a Prefect server.
Only numbers, versions and reasons go in: nothing here can carry a token or a URL with one.
"""

from __future__ import annotations

from typing import Any

MEASUREMENT_COLUMNS = ("step", "weight", "elapsed_s", "metric", "value", "threshold", "unit", "verdict", "requests")


def artifact_key(service: str, kind: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes; one key per service keeps history."""
    cleaned = "".join(c if c.isalnum() else "-" for c in service.lower())
    return f"release-{cleaned}-{kind}"


def measurement_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Every analysis measurement, in order, one row each (steps counted from 1)."""
    rows = []
    for m in summary.get("measurements", []):
        row = {column: m.get(column) for column in MEASUREMENT_COLUMNS}
        row["step"] = m["step"] + 1
        row["value"] = "no data" if m.get("value") is None else _number(m["value"])
        row["threshold"] = _number(m.get("threshold"))
        rows.append(row)
    return rows


def summary_markdown(summary: dict[str, Any]) -> str:
    """The decision first, with its reason and numbers, then the stages as a table."""
    status = summary["status"]
    headline = {"promoted": "Promoted", "rolled_back": "Rolled back"}.get(status, status.replace("_", " ").capitalize())
    lines = [
        f"# {headline}: {summary['service']} {summary['version']} ({summary['environment']})",
        "",
        f"- **Decision:** {status}",
        f"- **Reason:** `{summary.get('reason') or 'n/a'}`",
    ]
    if summary.get("explanation"):
        lines.append(f"- **Why:** {summary['explanation']}")
    lines += [
        f"- **Previous version:** {summary.get('previous_version') or 'none'}",
        f"- **Duration:** {summary.get('duration_s', 0):.1f} s",
    ]
    if summary.get("retry"):
        lines.append(f"- **Retry:** {summary['retry']}")
    lines += ["", "| stage | weight | duration (s) | outcome | detail |", "|---|---|---|---|---|"]
    for step in summary.get("steps", []):
        detail = str(step.get("detail", "")).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {step['stage']} | {step['weight']}% | {step['duration_s']} | {step['outcome']} | {detail} |")
    return "\n".join(lines) + "\n"


def _number(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value
