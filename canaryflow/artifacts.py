"""What the Prefect UI shows for a release: the measurements table and the decision summary.

Plain functions over ``ReleaseRun.summary()`` so tests read them without a Prefect server.
Only numbers, versions and reasons go in: nothing here can carry a token or a URL with one.
"""

from __future__ import annotations

from typing import Any

MEASUREMENT_COLUMNS = ("step", "weight", "elapsed_s", "metric", "verdict", "canary", "baseline", "limit", "evidence",
                       "canary_requests", "detail")


def artifact_key(service: str, kind: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes; one key per service keeps history."""
    cleaned = "".join(c if c.isalnum() else "-" for c in service.lower())
    return f"release-{cleaned}-{kind}"


def _figure(value: Any, unit: str | None) -> str:
    if value is None:
        return "no data"
    if unit in ("ratio", "share"):
        return f"{value * 100:.3f}%"
    if unit == "ms":
        return f"{value:.1f} ms"
    return f"{value:g}" if isinstance(value, float) else str(value)


def measurement_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Every analysis measurement, in order, one row each (steps counted from 1), formatted for people."""
    rows = []
    for m in summary.get("measurements", []):
        unit = m.get("unit")
        evidence = m.get("evidence")
        rows.append({
            "step": m["step"] + 1, "weight": f"{m['weight']}%", "elapsed_s": m.get("elapsed_s"),
            "metric": m.get("metric"), "verdict": m.get("verdict"),
            "canary": _figure(m.get("value"), unit), "baseline": _figure(m.get("baseline"), unit),
            "limit": _figure(m.get("threshold"), unit),
            "evidence": "no data" if evidence is None else f"{evidence:.3g} / {m.get('evidence_threshold') or 0:.0f}",
            "canary_requests": "no data" if m.get("requests") is None else int(round(m["requests"])),
            "detail": m.get("detail", ""),
        })
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
    for sentence in summary.get("evidence_worth") or []:
        lines.append(f"- **Evidence:** {sentence}")
    lines += ["", "| stage | weight | duration (s) | outcome | detail |", "|---|---|---|---|---|"]
    for step in summary.get("steps", []):
        detail = str(step.get("detail", "")).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {step['stage']} | {step['weight']}% | {step['duration_s']} | {step['outcome']} | {detail} |")
    if summary.get("chart"):
        lines += ["", "## Canary vs baseline", "", f"![canary vs baseline over the release]({summary['chart']})"]
    return "\n".join(lines) + "\n"

