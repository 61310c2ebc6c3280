"""Every metric and label that the alerts and the dashboard use is one the code emits.

The emitted catalogue comes from the code itself: a ``PipelineMetrics`` per environment, made to
record every kind of sample, is walked through its registry's ``collect()`` (sample names with their
``_bucket``/``_sum``/``_count`` suffixes, label names, and the values of the closed label sets), plus
the Pushgateway grouping labels (job, service, environment, instance). The default analysis queries of
the release spec are checked the same way against the demo service's registry and its scrape labels.

PromQL is parsed with a real parser (``promql-parser``, the Rust implementation's bindings); the
extractor's own tests below cover the tricky shapes.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter

from canaryflow.analysis_spec import default_metrics, render
from canaryflow.judge import Verdict
from canaryflow.local.service import ServiceMetrics
from canaryflow.pipeline_metrics import QUERY_RESULTS, PipelineMetrics
from canaryflow.spec import Environment, QueryTemplates

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "monitoring" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "monitoring" / "grafana" / "deployment-overview.json"

#: Labels the Pushgateway group adds to every pushed series (instance is empty, so absent).
PUSHGATEWAY_LABELS = frozenset({"job", "service", "environment", "instance"})
#: Labels Prometheus adds when scraping the demo service through the controller's file_sd targets.
SERVICE_SCRAPE_LABELS = frozenset({"job", "instance", "service", "track", "version"})
#: Labels whose values form a closed set the code defines; matchers on them must name real values.
CLOSED_LABELS = frozenset({"status", "result", "reason", "metric", "verdict", "outcome", "environment"})
#: Grafana's interval variables, replaced by a literal of the same type before parsing.
GRAFANA_MACROS = {"$__rate_interval": "5m", "$__range_s": "3600", "$__range_ms": "3600000", "$__range": "1h",
                  "$__interval_ms": "60000", "$__interval": "1m"}


# -- the catalogue ---------------------------------------------------------------------------------

@dataclass
class Catalogue:
    """Sample names the code emits, each with its label names; and the values of closed labels."""

    labels: dict[str, frozenset[str]] = field(default_factory=dict)
    values: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def add_registry(self, registry: CollectorRegistry, extra_labels: frozenset[str]) -> None:
        for family in registry.collect():
            for sample in family.samples:
                names = self.labels.get(sample.name, frozenset()) | set(sample.labels) | extra_labels
                self.labels[sample.name] = frozenset(names)
                for label, value in sample.labels.items():
                    if label in CLOSED_LABELS:
                        self.values[label].add(value)


def record_everything(m: PipelineMetrics) -> None:
    """Touch every metric the pipeline has, through its public recording methods."""
    m.release_started(now=1_000.0, committed_at=500.0)
    m.traffic(10)
    m.smoke_test(passed=True, duration=12.0)
    m.smoke_test(passed=False, duration=3.0)
    for result in QUERY_RESULTS:
        m.query("canary_analysis", 0.3, result)
    for metric in [*(d.name for d in default_metrics()), "traffic_split"]:  # the judge's default metric names
        for verdict in Verdict:
            m.measurement(metric=metric, verdict=verdict.value, value=0.5, threshold=1.0, baseline=0.4,
                          evidence=2.0, evidence_threshold=200.0)
    m.release_finished(status="rolled_back", duration=130.0, reason="high_error_rate", now=1_130.0)
    m.release_finished(status="failed", duration=1.0, now=1_140.0)
    m.release_finished(status="success", duration=100.0, now=1_240.0)
    for outcome_fails in (False, True):
        try:
            with m.track_task("deploy"):
                if outcome_fails:
                    raise RuntimeError("boom")
        except RuntimeError:
            pass
    monitoring = getattr(m, "monitoring", None)  # operations on Grafana etc., where the code records them
    if callable(monitoring):
        for result in ("ok", "skipped", "failed", "unauthorized"):
            monitoring("grafana", "update_dashboard", result)
        for system, operation in (("prefect", "publish_report"), ("prefect", "schedule_retry"),
                                  ("pushgateway", "push"), ("pipeline", "release_finished")):
            monitoring(system, operation, "failed")  # the release finaliser's reporting steps


def pipeline_catalogue(metrics_factory=PipelineMetrics) -> Catalogue:
    catalogue = Catalogue()
    for environment in Environment:
        m = metrics_factory(service="checkout", environment=environment.value)
        record_everything(m)
        catalogue.add_registry(m.registry, PUSHGATEWAY_LABELS)
    return catalogue


def service_catalogue() -> Catalogue:
    catalogue = Catalogue()
    m = ServiceMetrics()
    m.requests.labels("200", "v1", "/").inc()
    m.duration.labels("v1", "/").observe(0.01)
    catalogue.add_registry(m.registry, SERVICE_SCRAPE_LABELS)
    return catalogue


# -- the extractor ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value)


@dataclass
class References:
    selectors: list[Selector] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)  # by / without / on / ignoring / group_x labels
    produced: set[str] = field(default_factory=set)  # labels created by label_replace / label_join
    problems: list[str] = field(default_factory=list)


_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}


def references(expr: str) -> References:
    """Metric selectors and label names used by a PromQL expression (Grafana macros allowed)."""
    for macro, literal in GRAFANA_MACROS.items():
        expr = expr.replace(macro, literal)
    refs = References()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            groups = [node.matchers.matchers, *(node.matchers.or_matchers or [])]
            matchers = tuple((m.name, _OPS[str(m.op)], m.value) for g in groups for m in g)
            name = node.name
            if name is None:
                by_name = [v for label, op, v in matchers if label == "__name__" and op == "="]
                if not by_name:
                    refs.problems.append(f"selector without a fixed metric name: {node}")
                    return
                name = by_name[0]
            refs.selectors.append(Selector(name, tuple(m for m in matchers if m[0] != "__name__")))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            refs.grouping.update(node.modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            if node.modifier.matching is not None:
                refs.grouping.update(node.modifier.matching.labels)
            refs.grouping.update(node.modifier.group_labels or [])
        elif isinstance(node, promql_parser.Call) and node.func.name in ("label_replace", "label_join"):
            strings = [str(a).strip('"') for a in node.args[1:]]
            refs.produced.add(strings[0])
            sources = [strings[2]] if node.func.name == "label_replace" else strings[2:]
            refs.grouping.update(s for s in sources if s)

    promql_parser.walk(promql_parser.parse(expr), pre_visit=visit)
    return refs


def _alternatives(regex: str) -> list[str] | None:
    """``a|b|c`` as its words, or None for anything that is not a plain alternation."""
    return regex.split("|") if re.fullmatch(r"[A-Za-z0-9_.-]+(\|[A-Za-z0-9_.-]+)*", regex) else None


def problems(expr: str, catalogue: Catalogue, where: str = "") -> list[str]:
    """Everything in ``expr`` the code does not emit: metric names, label names, closed label values."""
    refs = references(expr)
    found = [f"{where}: {p}" for p in refs.problems]
    available: set[str] = set(refs.produced)
    for sel in refs.selectors:
        labels = catalogue.labels.get(sel.metric)
        if labels is None:
            found.append(f"{where}: metric {sel.metric} is not emitted")
            continue
        available |= labels
        for label, op, value in sel.matchers:
            if label not in labels:
                found.append(f"{where}: {sel.metric} has no label {label}")
            elif label in CLOSED_LABELS and "$" not in value and op in ("=", "=~"):
                words = [value] if op == "=" else _alternatives(value)
                for word in words or []:
                    if word not in catalogue.values[label]:
                        found.append(f"{where}: {sel.metric}{{{label}}} never has the value {word!r}")
    if found:  # an unknown metric would make every label look unknown too: report the cause only
        return found
    for label in sorted(refs.grouping - available):
        found.append(f"{where}: grouping label {label} is on none of the metrics used")
    return found


# -- what the monitoring assets contain ------------------------------------------------------------

def alert_expressions(text: str | None = None) -> dict[str, str]:
    rules = yaml.safe_load(text if text is not None else ALERTS.read_text())
    return {r.get("alert") or r["record"]: r["expr"] for g in rules["groups"] for r in g["rules"]}


def dashboard_expressions(model: dict) -> dict[str, str]:
    exprs: dict[str, str] = {}
    for panel in model["panels"]:
        for target in panel.get("targets", []):
            exprs[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    return exprs


LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\)$")


def variable_problems(model: dict, catalogue: Catalogue) -> list[str]:
    found = []
    for var in model["templating"]["list"]:
        if var["type"] != "query":
            continue
        match = LABEL_VALUES.match(var["query"]["query"])
        assert match, f"variable {var['name']}: only label_values(selector, label) is supported"
        where = f"variable {var['name']}"
        found += problems(match["selector"], catalogue, where)
        for sel in references(match["selector"]).selectors:
            if match["label"] not in catalogue.labels.get(sel.metric, ()):
                found.append(f"{where}: {sel.metric} has no label {match['label']}")
    return found


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return pipeline_catalogue()


# -- the checks ------------------------------------------------------------------------------------

def test_the_catalogue_is_read_from_the_code(catalogue):
    assert {"deployment_total", "deployment_duration_seconds_bucket", "deployment_lead_time_seconds_count",
            "deployment_time_to_restore_seconds_sum", "canary_analysis_value"} <= set(catalogue.labels)
    assert catalogue.labels["deployment_duration_seconds_bucket"] == {"le", "environment", *PUSHGATEWAY_LABELS}
    assert {"success", "failed", "rolled_back"} <= catalogue.values["status"]
    assert {"error_rate", "p95_latency"} <= catalogue.values["metric"]


def test_nine_seed_alerts_exist():
    assert set(alert_expressions()) == {
        "DeploymentHighErrorRate", "DeploymentRollbackDetected", "SmokeTestFailing", "HighErrorRateStaging",
        "HighErrorRateProduction", "HighLatencyStaging", "HighLatencyProduction", "DeploymentFrequencyAnomaly",
        "PrometheusQueryFailing"}


@pytest.mark.parametrize("alert", sorted(alert_expressions()))
def test_alert_uses_only_emitted_metrics_and_labels(catalogue, alert):
    expr = alert_expressions()[alert]
    assert references(expr).selectors, "an alert reads at least one metric"
    assert problems(expr, catalogue, alert) == []


def test_dashboard_uses_only_emitted_metrics_and_labels(catalogue):
    model = json.loads(DASHBOARD.read_text())
    exprs = dashboard_expressions(model)
    assert len(exprs) >= 20
    found = [p for where, expr in exprs.items() for p in problems(expr, catalogue, where)]
    assert found == []
    assert variable_problems(model, catalogue) == []


def test_every_pipeline_metric_family_is_shown_or_alerted_on(catalogue):
    """The other direction: nothing the pipeline emits is left off both the alerts and the dashboard."""
    used = {sel.metric for expr in [*alert_expressions().values(),
                                    *dashboard_expressions(json.loads(DASHBOARD.read_text())).values()]
            for sel in references(expr).selectors}
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in catalogue.labels}
    used_families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    assert families - used_families == set()


def test_default_analysis_queries_read_what_the_demo_service_emits():
    templates = QueryTemplates()
    rendered = {field: render(getattr(templates, field), service="checkout", version="v2", namespace="default",
                              window="1m") for field in ("requests", "errors", "latency_buckets")}
    service = service_catalogue()
    for name, expr in rendered.items():
        assert problems(expr, service, name) == []


# -- negative cases: the check catches drift -------------------------------------------------------

def test_a_metric_renamed_in_the_alerts_is_reported(catalogue):
    text = ALERTS.read_text().replace("deployment_rollback_total", "deployment_rollbacks_total")
    expr = alert_expressions(text)["DeploymentRollbackDetected"]
    assert problems(expr, catalogue, "DeploymentRollbackDetected") == [
        "DeploymentRollbackDetected: metric deployment_rollbacks_total is not emitted"]


class RenamedRollbackMetric(PipelineMetrics):
    """The code side of drift: the rollback counter renamed, as a refactoring might."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.registry.unregister(self.deployment_rollback_total)
        self.deployment_rollback_total = Counter("deployment_rollbacks", "Renamed.", ["environment", "reason"],
                                                 registry=self.registry)


def test_a_metric_renamed_in_the_code_is_reported():
    renamed = pipeline_catalogue(RenamedRollbackMetric)
    assert "deployment_rollback_total" not in renamed.labels
    expr = alert_expressions()["DeploymentRollbackDetected"]
    assert problems(expr, renamed, "x") == ["x: metric deployment_rollback_total is not emitted"]
    dashboard = dashboard_expressions(json.loads(DASHBOARD.read_text()))
    assert any(problems(e, renamed) for e in dashboard.values())


def test_wrong_labels_and_values_are_reported(catalogue):
    assert problems('sum by (servce) (deployment_total{status="sucess", env="x"})', catalogue) == [
        ": deployment_total{status} never has the value 'sucess'",
        ": deployment_total has no label env",
    ]
    assert problems('sum by (servce) (deployment_total{status="success"})', catalogue) == [
        ": grouping label servce is on none of the metrics used"]
    assert problems('deployment_total{status=~"success|rollback"}', catalogue) == [
        ": deployment_total{status} never has the value 'rollback'"]
    assert problems('smoke_test_total{reason="manual"}', catalogue) == [": smoke_test_total has no label reason"]
    # A label that exists on another metric of the expression is fine for on(); one on neither is not.
    assert problems("deployment_frequency * on (service) group_left (workflow) prometheus_query_total", catalogue) \
        == []
    assert problems("deployment_frequency * on (task) deployment_last_timestamp_seconds", catalogue) == [
        ": grouping label task is on none of the metrics used"]


# -- the extractor on tricky expressions ----------------------------------------------------------

def names(expr: str) -> list[str]:
    return [s.metric for s in references(expr).selectors]


def test_extractor_functions_and_histograms():
    refs = references('histogram_quantile(0.95, sum by (le, workflow) (rate(x_bucket{a="1"}[$__rate_interval])))')
    assert names('histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m])))') == ["x_bucket"]
    assert refs.selectors == [Selector("x_bucket", (("a", "=", "1"),))]
    assert refs.grouping == {"le", "workflow"}


def test_extractor_on_ignoring_and_group_modifiers():
    refs = references("a / on (service, environment) group_left (reason) b + ignoring (instance) c")
    assert names("a / on (service) group_left (reason) b + ignoring (instance) c") == ["a", "b", "c"]
    assert refs.grouping == {"service", "environment", "reason", "instance"}
    assert references("sum without (instance) (up)").grouping == {"instance"}
    assert references("topk by (task) (3, up)").grouping == {"task"}


def test_extractor_ignores_braces_and_names_inside_strings():
    refs = references('a{path=~"/api/{id}", note="rate(b[5m]) by (x)"} or vector(0)')
    assert refs.selectors == [Selector("a", (("path", "=~", "/api/{id}"), ("note", "=", "rate(b[5m]) by (x)")))]
    assert refs.grouping == set()


def test_extractor_recording_rule_names_and_name_matchers():
    assert names('job:http_requests:rate5m{job="x"} > 0') == ["job:http_requests:rate5m"]
    assert names('{__name__="deployment_total", status="success"}') == ["deployment_total"]
    assert references('{__name__=~"deployment_.*"}').problems


def test_extractor_offsets_subqueries_and_or_vector():
    assert names("max_over_time(rate(a[1m])[10m:1m]) or vector(0) unless b offset 1h") == ["a", "b"]
    assert names("(sum(rate(a{code=~\"5..\"}[1m])) or vector(0)) / sum(rate(a[1m]))") == ["a", "a"]


def test_extractor_label_replace_produces_a_label():
    refs = references('sum by (svc) (label_replace(up, "svc", "$1", "job", "(.*)"))')
    assert refs.produced == {"svc"} and "job" in refs.grouping


def test_extractor_grafana_macros_and_variables():
    refs = references('sum(increase(a{environment=~"$environment"}[$__range])) * 86400 / $__range_s')
    assert refs.selectors == [Selector("a", (("environment", "=~", "$environment"),))]


def test_extractor_rejects_invalid_promql():
    with pytest.raises(ValueError):
        references("sum by (le (rate(a[5m]))")
