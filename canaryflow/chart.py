"""The release as a picture: canary vs baseline over time, the evidence, the steps, the decision.

People look at a chart before they read a table. One PNG with three panels that share the time
axis — error rate, p95 latency (canary solid, baseline dashed, limit dotted) and the evidence
against the canary on a log scale with its rollback level — with the step changes and the
decision marked. Rendered with matplotlib's Agg backend (no display, no network) and embedded in
the run's markdown artifact as a data URI, so it shows in the Prefect UI offline.
"""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from typing import Any

COLOURS = {"canary": "#d62728", "baseline": "#1f77b4", "limit": "#7f7f7f"}


def _series(summary: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    by_metric: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in summary.get("measurements", []):
        if m.get("release_s") is not None:
            by_metric[m["metric"]].append(m)
    return by_metric


def render_png(summary: dict[str, Any]) -> bytes | None:
    """PNG bytes of the chart, or None when there is nothing to draw (no analysis round)."""
    series = _series(summary)
    ratio = [name for name, rows in series.items() if rows and rows[0].get("unit") == "ratio"]
    latency = [name for name, rows in series.items() if rows and rows[0].get("unit") == "ms"]
    if not ratio and not latency:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("error rate (%)", ratio, 100.0), ("p95 latency (ms)", latency, 1.0)]
    panels = [p for p in panels if p[1]]
    fig, axes = plt.subplots(len(panels) + 1, 1, figsize=(9, 2.3 * (len(panels) + 1)), sharex=True)
    for axis, (title, names, scale) in zip(axes, panels, strict=False):
        for name in names:
            rows = series[name]
            t = [r["release_s"] for r in rows]
            axis.plot(t, [None if r["value"] is None else r["value"] * scale for r in rows],
                      color=COLOURS["canary"], label=f"{name} canary")
            axis.plot(t, [None if r.get("baseline") is None else r["baseline"] * scale for r in rows],
                      color=COLOURS["baseline"], linestyle="--", label=f"{name} baseline")
            if rows[-1].get("threshold") is not None:
                axis.axhline(rows[-1]["threshold"] * scale, color=COLOURS["limit"], linestyle=":", label="limit")
        axis.set_ylabel(title)
        axis.legend(loc="upper left", fontsize=7)
    evidence_axis = axes[-1]
    level = None
    for name in ratio + latency:
        rows = [r for r in series[name] if r.get("evidence") is not None]
        if rows:
            evidence_axis.plot([r["release_s"] for r in rows], [max(r["evidence"], 1e-3) for r in rows],
                               label=name)
            level = rows[-1].get("evidence_threshold") or level
    if level:
        evidence_axis.axhline(level, color=COLOURS["canary"], linestyle=":", label=f"rollback at {level:.0f}")
    evidence_axis.set_yscale("log")
    evidence_axis.set_ylabel("evidence (e-value)")
    evidence_axis.set_xlabel("seconds since the release started")
    evidence_axis.legend(loc="upper left", fontsize=7)
    for axis in axes:
        for start, weight in summary.get("step_starts", []):
            axis.axvline(start, color="#bbbbbb", linewidth=0.8)
            if axis is axes[0]:
                axis.annotate(f"{weight}%", (start, 1), xycoords=("data", "axes fraction"), fontsize=7,
                              va="bottom")
        if summary.get("decided_s") is not None:
            axis.axvline(summary["decided_s"], color="black", linewidth=1.2)
    axes[0].set_title(f"{summary['service']} {summary['version']} vs {summary.get('previous_version')}: "
                      f"{summary['status']} ({summary.get('reason') or ''})", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


def data_uri(summary: dict[str, Any]) -> str | None:
    png = render_png(summary)
    return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode()
