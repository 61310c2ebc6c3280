"""The deployment dashboard as code: ``monitoring/grafana/deployment-overview.json`` is its output.

A small typed builder instead of a dashboard library: the dashboard is a dozen panels of three kinds,
the JSON stays readable in review, and every query sits next to the description that documents it.
All queries read the pipeline's own metrics (``canaryflow.pipeline_metrics``); the consistency test
(tests/monitoring/test_consistency.py) proves every metric and label they use is one the code emits.

    python -m canaryflow.dashboards                 # rewrite the checked-in JSON
    python -m canaryflow.dashboards --check         # exit 1 if the checked-in JSON is stale
    python -m canaryflow.dashboards --uid my-uid --output /tmp/dash.json

The uid defaults to ``CANARYFLOW_GRAFANA_DASHBOARD_UID`` (the setting the release flow uses when it
updates the dashboard), else ``canaryflow-deployments``. The Prometheus data source is a template
variable, so one file imports into any Grafana.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

DEFAULT_UID = "canaryflow-deployments"
UID_ENV = "CANARYFLOW_GRAFANA_DASHBOARD_UID"
DASHBOARD_FILE = Path(__file__).resolve().parents[1] / "monitoring" / "grafana" / "deployment-overview.json"
TITLE = "canaryflow: deployment overview"
REFRESH = "30s"
SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: Every query is filtered by the dashboard's environment and service variables.
SCOPE = 'environment=~"$environment", service=~"$service"'

SUCCESS, FAILED_TASK = 'status="success"', 'outcome="failed"'
ERROR_RATE, P95_LATENCY = 'metric="error_rate"', 'metric="p95_latency"'

PanelKind = Literal["stat", "timeseries", "bargauge"]


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False


@dataclass(frozen=True)
class Panel:
    """One Grafana panel; ``description`` shows as the panel's (i) tooltip and in the README."""

    title: str
    description: str
    kind: PanelKind
    queries: tuple[Query, ...]
    unit: str = "short"
    width: int = 6
    height: int = 8
    decimals: int | None = None
    min: float | None = None
    max: float | None = None
    #: (value, colour) steps, lowest first; the first value is ignored (Grafana's base step).
    thresholds: tuple[tuple[float | None, str], ...] = ((None, "green"),)
    stacked: bool = False
    bars: bool = False
    #: Series whose legend matches this regex are drawn dashed (thresholds next to measurements).
    dashed: str | None = None

    def model(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        defaults: dict[str, Any] = {
            "unit": self.unit,
            "thresholds": {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in self.thresholds]},
            "color": {"mode": "thresholds" if self.kind != "timeseries" else "palette-classic"},
        }
        for key in ("decimals", "min", "max"):
            if getattr(self, key) is not None:
                defaults[key] = getattr(self, key)
        overrides: list[dict[str, Any]] = []
        if self.kind == "timeseries":
            defaults["custom"] = {
                "drawStyle": "bars" if self.bars else "line", "lineWidth": 2, "fillOpacity": 40 if self.bars else 10,
                "showPoints": "never", "spanNulls": True,
                "stacking": {"mode": "normal" if self.stacked else "none", "group": "A"},
            }
            if self.dashed:
                overrides.append({
                    "matcher": {"id": "byRegexp", "options": self.dashed},
                    "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}],
                })
        options: dict[str, Any]
        if self.kind == "stat":
            options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                       "colorMode": "value", "graphMode": "none", "textMode": "auto", "justifyMode": "auto",
                       "orientation": "auto"}
        elif self.kind == "bargauge":
            options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                       "orientation": "horizontal", "displayMode": "basic", "showUnfilled": True}
        else:
            options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                       "tooltip": {"mode": "multi", "sort": "desc"}}
        return {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": {"x": x, "y": y, "w": self.width, "h": self.height},
            "targets": [
                {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": q.expr, "legendFormat": q.legend,
                 "instant": q.instant, "range": not q.instant}
                for i, q in enumerate(self.queries)
            ],
            "fieldConfig": {"defaults": defaults, "overrides": overrides},
            "options": options,
        }


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]
    collapsed: bool = False


@dataclass(frozen=True)
class Variable:
    """A query variable over the pipeline's metrics (multi-select, with All)."""

    name: str
    label: str
    query: str
    description: str

    def model(self) -> dict[str, Any]:
        return {
            "name": self.name, "label": self.label, "description": self.description, "type": "query",
            "datasource": DATASOURCE, "query": {"query": self.query, "refId": f"{self.name}-values"},
            "definition": self.query, "refresh": 2, "sort": 1, "multi": True, "includeAll": True,
            "allValue": ".*", "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [], "hide": 0, "regex": "", "skipUrlSync": False,
        }


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    variables: tuple[Variable, ...] = ()
    tags: tuple[str, ...] = ("canaryflow", "deployments")
    time_from: str = "now-24h"
    annotation_tags: tuple[str, ...] = ("canaryflow",)
    links: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def panels(self) -> list[Panel]:
        return [p for row in self.rows for p in row.panels]

    def model(self) -> dict[str, Any]:
        panels: list[dict[str, Any]] = []
        panel_id, y = 1, 0
        for row in self.rows:
            panels.append({"id": panel_id, "type": "row", "title": row.title, "collapsed": row.collapsed,
                           "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
            panel_id, y = panel_id + 1, y + 1
            x, row_height = 0, 0
            for panel in row.panels:
                if x + panel.width > 24:
                    x, y, row_height = 0, y + row_height, 0
                panels.append(panel.model(panel_id, x, y))
                panel_id, x, row_height = panel_id + 1, x + panel.width, max(row_height, panel.height)
            y += row_height
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "timezone": "",
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": SCHEMA_VERSION,
            "refresh": REFRESH,
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {"refresh_intervals": ["30s", "1m", "5m", "15m", "1h"]},
            "links": list(self.links),
            "annotations": {"list": [
                {"builtIn": 1, "name": "Annotations & Alerts", "type": "dashboard", "enable": True, "hide": True,
                 "iconColor": "rgba(0, 211, 255, 1)", "datasource": {"type": "grafana", "uid": "-- Grafana --"}},
                {"name": "Releases", "enable": True, "hide": False, "iconColor": "purple",
                 "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                 "target": {"type": "tags", "tags": list(self.annotation_tags), "matchAny": False, "limit": 200}},
            ]},
            "templating": {"list": [
                {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
                 "description": "The Prometheus that scrapes the Pushgateway (or the worker's metrics port).",
                 "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1,
                 "regex": "", "skipUrlSync": False},
                *(v.model() for v in self.variables),
            ]},
            "panels": panels,
        }


# -- the deployment overview ---------------------------------------------------------------------

def _sel(metric: str, *matchers: str) -> str:
    """``metric{<matchers>, environment=~"$environment", service=~"$service"}``."""
    return f"{metric}{{{', '.join((*matchers, SCOPE))}}}"


def _ratio(metric: str, numerator: str, denominator: str | None = None, window: str = "$__range") -> str:
    den = _sel(metric, denominator) if denominator else _sel(metric)
    return (f"sum(increase({_sel(metric, numerator)}[{window}]))\n"
            f"/\nsum(increase({den}[{window}]))")


def _quantile(q: float, histogram: str, window: str = "$__range", by: str = "le") -> str:
    return f"histogram_quantile({q}, sum by ({by}) (increase({_sel(histogram + '_bucket')}[{window}])))"


_DECAYED_FREQUENCY = (f"{_sel('deployment_frequency')}\n"
                      f"* exp(({_sel('deployment_last_timestamp_seconds')} - time()) / 3600)")

RED_ABOVE = lambda limit: ((None, "green"), (limit, "red"))  # noqa: E731
GREEN_ABOVE = lambda limit: ((None, "red"), (limit, "green"))  # noqa: E731

OVERVIEW = Row("Releases (dashboard time range)", (
    Panel("Deployment success rate",
          "Share of finished releases that promoted, over the dashboard's time range: "
          "deployment_total{status=\"success\"} against every status (success, rolled_back, and failed = "
          "stopped in preflight).",
          "stat", (Query(_ratio("deployment_total", 'status="success"'), instant=True),),
          unit="percentunit", decimals=1, min=0, max=1, thresholds=GREEN_ABOVE(0.9)),
    Panel("Rollback rate",
          "Share of finished releases that the pipeline rolled back (any reason), over the time range. "
          "A rollback is the pipeline working: a bad version met a canary, not users.",
          "stat", (Query(_ratio("deployment_total", 'status="rolled_back"'), instant=True),),
          unit="percentunit", decimals=1, min=0, max=1, thresholds=RED_ABOVE(0.1)),
    Panel("Smoke test pass rate",
          "Share of smoke test runs that passed, over the time range (smoke_test_total by result). Smoke "
          "tests hit the canary directly, before it gets any user traffic.",
          "stat", (Query(_ratio("smoke_test_total", 'result="passed"'), instant=True),),
          unit="percentunit", decimals=1, min=0, max=1, thresholds=GREEN_ABOVE(0.95)),
    Panel("Releases",
          "Releases finished in the time range, by outcome (deployment_total).",
          "stat", (Query(f"sum by (status) (increase({_sel('deployment_total')}[$__range]))", "{{status}}",
                         instant=True),),
          decimals=0),
))

DORA = Row("DORA four keys", (
    Panel("Deployment frequency",
          "Promotions per day over the time range: increase of deployment_total{status=\"success\"} "
          "scaled to 24 h. DORA elite: on demand, several per day.",
          "stat", (Query(f"sum(increase({_sel('deployment_total', SUCCESS)}[$__range]))"
                         "\n* 86400 / $__range_s", instant=True),),
          unit="short", decimals=1),
    Panel("Lead time for changes (median)",
          "Median time from commit to promotion over the time range (deployment_lead_time_seconds). Counts "
          "from the spec's commit_timestamp when the release carries one, else from the release start.",
          "stat", (Query(_quantile(0.5, "deployment_lead_time_seconds"), instant=True),),
          unit="s", decimals=0),
    Panel("Change failure rate",
          "Share of releases that reached users and were rolled back, over the time range: rolled_back "
          "against success + rolled_back (releases that failed in preflight changed nothing).",
          "stat", (Query(_ratio("deployment_total", 'status="rolled_back"', 'status=~"success|rolled_back"'),
                         instant=True),),
          unit="percentunit", decimals=1, min=0, max=1, thresholds=RED_ABOVE(0.15)),
    Panel("Time to restore (median)",
          "Median time from the first rollback of a streak to the next promotion of the service, over the "
          "time range (deployment_time_to_restore_seconds).",
          "stat", (Query(_quantile(0.5, "deployment_time_to_restore_seconds"), instant=True),),
          unit="s", decimals=0),
    Panel("Deployments per hour",
          "Decayed deployments-per-hour estimate (deployment_frequency, 1 h time constant) brought to now "
          "with deployment_last_timestamp_seconds, per service and environment. Above 2/h the "
          "DeploymentFrequencyAnomaly alert fires.",
          "timeseries", (Query(_DECAYED_FREQUENCY, "{{service}} {{environment}}"),),
          width=12, thresholds=RED_ABOVE(2)),
    Panel("Lead time and time to restore (P50, P95)",
          "Quantiles of lead time for changes and time to restore over the preceding day, as they move.",
          "timeseries", (
              Query(_quantile(0.5, "deployment_lead_time_seconds", "1d"), "lead time P50"),
              Query(_quantile(0.95, "deployment_lead_time_seconds", "1d"), "lead time P95"),
              Query(_quantile(0.5, "deployment_time_to_restore_seconds", "1d"), "time to restore P50"),
              Query(_quantile(0.95, "deployment_time_to_restore_seconds", "1d"), "time to restore P95"),
          ), unit="s", width=8),
    Panel("Not restored for",
          "Services whose last rollback has not been followed by a promotion yet, and for how long "
          "(deployment_last_failure_timestamp_seconds; 0 once restored).",
          "bargauge", (Query(f"time() - ({_sel('deployment_last_failure_timestamp_seconds')} > 0)",
                             "{{service}} {{environment}}", instant=True),),
          unit="s", width=4, thresholds=((None, "orange"), (3600, "red"))),
))

CANARY = Row("Canary analysis", (
    Panel("Canary traffic",
          "Share of traffic on the canary over time (canary_traffic_percentage): the steps of each release, "
          "back to 0 at promotion or rollback. Release annotations mark start, steps and outcome.",
          "timeseries", (Query(f"max by (service, environment) ({_sel('canary_traffic_percentage')})",
                               "{{service}} {{environment}}"),),
          unit="percent", min=0, max=100, width=12),
    Panel("Rollback reasons",
          "Rollbacks over the time range by reason (deployment_rollback_total): high_error_rate, "
          "high_latency, smoke_test_failed, rollout_stuck, metrics_unavailable, manual, alert, ...",
          "bargauge", (Query(f"sum by (reason) (increase({_sel('deployment_rollback_total')}[$__range])) > 0",
                             "{{reason}}", instant=True),),
          decimals=0, width=12, thresholds=((None, "red"),)),
    Panel("Canary error rate vs baseline and threshold",
          "Error rate the judge measured on the canary over the release so far (canary_analysis_value, solid), "
          "on the baseline serving at the same time (canary_analysis_baseline_value) and the limit of its "
          "guard rail (canary_analysis_threshold, dashed).",
          "timeseries", (
              Query(f"max by (service, environment) ({_sel('canary_analysis_value', ERROR_RATE)})",
                    "{{service}} {{environment}} measured"),
              Query(f"max by (service, environment) ({_sel('canary_analysis_baseline_value', ERROR_RATE)})",
                    "{{service}} {{environment}} baseline"),
              Query(f"max by (service, environment) "
                    f"({_sel('canary_analysis_threshold', ERROR_RATE)})",
                    "{{service}} {{environment}} threshold"),
          ), unit="percentunit", min=0, width=12, dashed="/threshold$/"),
    Panel("Canary P95 latency vs threshold",
          "P95 latency the judge measured on the canary at each analysis, in ms (canary_analysis_value, "
          "solid), against its threshold (canary_analysis_threshold, dashed).",
          "timeseries", (
              Query(f"max by (service, environment) ({_sel('canary_analysis_value', P95_LATENCY)})",
                    "{{service}} {{environment}} measured"),
              Query(f"max by (service, environment) "
                    f"({_sel('canary_analysis_threshold', P95_LATENCY)})",
                    "{{service}} {{environment}} threshold"),
          ), unit="ms", min=0, width=12, dashed="/threshold$/"),
    Panel("Evidence against the canary",
          "Anytime-valid evidence that the canary is worse than its baseline, per metric "
          "(canary_analysis_evidence, an e-value: 1 = none), against the level that rolls back "
          "(canary_analysis_evidence_threshold = 1/alpha, dashed). Checked every round without "
          "inflating false alarms.",
          "timeseries", (
              Query(f"max by (service, environment, metric) ({_sel('canary_analysis_evidence')})",
                    "{{service}} {{metric}} evidence"),
              Query(f"max by (service, environment, metric) ({_sel('canary_analysis_evidence_threshold')})",
                    "{{service}} {{metric}} threshold"),
          ), min=0, width=12, dashed="/threshold$/"),
    Panel("Analysis verdicts",
          "Canary measurements by metric and verdict (canary_analysis_measurements_total): PASS, FAIL, "
          "INCONCLUSIVE (too few requests or no data) and ERROR (Prometheus unreachable or malformed).",
          "timeseries", (Query(f"sum by (metric, verdict) "
                               f"(increase({_sel('canary_analysis_measurements_total')}[$__rate_interval]))",
                               "{{metric}} {{verdict}}"),),
          width=12, stacked=True, bars=True),
    Panel("Releases by outcome",
          "Finished releases over time by outcome (deployment_total by status).",
          "timeseries", (Query(f"sum by (status) (increase({_sel('deployment_total')}[$__rate_interval]))",
                               "{{status}}"),),
          decimals=0, width=12, stacked=True, bars=True),
))

PIPELINE = Row("Pipeline health", (
    Panel("Release duration (P50, P95)",
          "Wall time from release start to promotion or rollback over the time range "
          "(deployment_duration_seconds).",
          "stat", (Query(_quantile(0.5, "deployment_duration_seconds"), "P50", instant=True),
                   Query(_quantile(0.95, "deployment_duration_seconds"), "P95", instant=True)),
          unit="s", decimals=0),
    Panel("Smoke test duration (P95)",
          "95th percentile duration of the smoke test suite over the time range (smoke_test_duration_seconds).",
          "stat", (Query(_quantile(0.95, "smoke_test_duration_seconds"), instant=True),),
          unit="s", decimals=1),
    Panel("Prometheus queries by result",
          "Queries the pipeline made to Prometheus by workflow and result (prometheus_query_total). Failed "
          "or timed-out queries above 10% fire PrometheusQueryFailing.",
          "timeseries", (Query(f"sum by (workflow, result) "
                               f"(increase({_sel('prometheus_query_total')}[$__rate_interval]))",
                               "{{workflow}} {{result}}"),),
          width=6, stacked=True, bars=True),
    Panel("Prometheus query latency (P95)",
          "95th percentile latency of the pipeline's Prometheus queries (prometheus_query_duration_seconds).",
          "timeseries", (Query(f"histogram_quantile(0.95, sum by (le, workflow) "
                               f"(rate({_sel('prometheus_query_duration_seconds_bucket')}[5m])))",
                               "{{workflow}}"),),
          unit="s", width=6),
    Panel("Task failures",
          "Failed pipeline task runs over the time range by task (canaryflow_task_runs_total).",
          "bargauge", (Query(f"sum by (task) (increase({_sel('canaryflow_task_runs_total', FAILED_TASK)}"
                             f"[$__range])) > 0", "{{task}}", instant=True),),
          decimals=0, width=12, thresholds=((None, "red"),)),
    Panel("Task duration (P95)",
          "95th percentile duration of each pipeline task over the time range (canaryflow_task_duration_seconds).",
          "bargauge", (Query(_quantile(0.95, "canaryflow_task_duration_seconds", by="le, task"), "{{task}}",
                             instant=True),),
          unit="s", width=12),
    Panel("Monitoring operations",
          "Operations of releases on monitoring systems (dashboard updates, annotations, restores on Grafana) "
          "by result over the time range (canaryflow_monitoring_operations_total): ok, skipped (not "
          "configured), failed, unauthorized. None of them ever blocks a release.",
          "bargauge", (Query(f"sum by (system, operation, result) "
                             f"(increase({_sel('canaryflow_monitoring_operations_total')}[$__range])) > 0",
                             "{{system}} {{operation}} {{result}}", instant=True),),
          decimals=0, width=24, height=6, thresholds=((None, "blue"),)),
))

VARIABLES = (
    Variable("environment", "Environment", "label_values(deployment_total, environment)",
             "Environments that have released (deployment_total)."),
    Variable("service", "Service", 'label_values(deployment_total{environment=~"$environment"}, service)',
             "Services released in the chosen environments."),
)


def deployment_overview(uid: str = DEFAULT_UID) -> Dashboard:
    return Dashboard(
        uid=uid, title=TITLE, rows=(OVERVIEW, DORA, CANARY, PIPELINE), variables=VARIABLES,
        description="Canary releases run by canaryflow: outcomes, DORA four keys, canary traffic and analysis, "
                    "and the pipeline's own health. Generated by `python -m canaryflow.dashboards`.",
    )


def render(uid: str = DEFAULT_UID) -> str:
    """The dashboard JSON exactly as checked in."""
    return json.dumps(deployment_overview(uid).model(), indent=2, ensure_ascii=False) + "\n"


def default_uid() -> str:
    return os.environ.get(UID_ENV) or DEFAULT_UID


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m canaryflow.dashboards", description=__doc__.split("\n")[0])
    parser.add_argument("--uid", default=None, help=f"dashboard uid (default: ${UID_ENV} or {DEFAULT_UID})")
    parser.add_argument("--output", type=Path, default=DASHBOARD_FILE, help="file to write or check")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from the generator's output")
    args = parser.parse_args(argv)
    text = render(args.uid or default_uid())
    if args.check:
        current = args.output.read_text() if args.output.is_file() else None
        if current != text:
            print(f"{args.output} is stale; regenerate it with: python -m canaryflow.dashboards", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
