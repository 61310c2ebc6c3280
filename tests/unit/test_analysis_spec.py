"""The analysis section of the spec: metric kinds, templates, names, test parameters."""

from __future__ import annotations

import pytest

from canaryflow.analysis_spec import LatencyMetric, RatioMetric, ThresholdMetric
from canaryflow.errors import ConfigError
from canaryflow.spec import validate_spec

BASE = {"service": "checkout", "version": "v2"}


def fields_of(analysis: dict) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as err:
        validate_spec({**BASE, "analysis": analysis})
    return err.value.fields


def test_defaults_are_error_rate_and_p95_at_alpha_one_percent():
    analysis = validate_spec(BASE).analysis
    assert [(m.name, m.kind) for m in analysis.metrics] == [("error_rate", "ratio"), ("p95_latency", "latency")]
    assert (analysis.alpha, analysis.strict, analysis.traffic_alpha) == (0.01, False, 0.001)
    ratio, latency = analysis.metrics
    assert (ratio.grid.low, ratio.grid.high, ratio.grid.points, ratio.tolerance) == (1.5, 100, 40, 1.0)
    assert (latency.quantile, latency.boundaries_ms, latency.grid.low) == (0.95, "auto", 1.25)


def test_every_kind_is_accepted():
    spec = validate_spec({**BASE, "analysis": {"metrics": [
        {"name": "payment_failures", "kind": "ratio", "total": 'payments_total{version="$version"}',
         "bad": 'payments_total{version="$version",outcome="failed"}', "max": 0.02},
        {"name": "p99", "kind": "latency", "quantile": 0.99, "max_ms": 800, "boundaries_ms": [100, 250]},
        {"name": "orders", "kind": "threshold", "query": 'sum(rate(orders_total{version="$version"}[$window]))',
         "min": 1},
    ]}})
    kinds = [type(m) for m in spec.analysis.metrics]
    assert kinds == [RatioMetric, LatencyMetric, ThresholdMetric]


def test_an_unknown_kind_is_refused_naming_the_field():
    assert fields_of({"metrics": [{"name": "x", "kind": "average"}]}) == ("analysis.metrics.0",)


def test_a_query_missing_version_is_refused_naming_the_field():
    fields = fields_of({"metrics": [{"name": "orders", "kind": "threshold", "query": "sum(orders_total)", "min": 1}]})
    assert fields == ("analysis.metrics.0.threshold.query",)


def test_an_unknown_placeholder_is_refused():
    fields = fields_of({"metrics": [{"name": "e", "kind": "ratio", "bad": 'x{v="$version",s="$svc"}'}]})
    assert fields == ("analysis.metrics.0.ratio.bad",)


@pytest.mark.parametrize("analysis,field", [
    ({"alpha": 0}, "analysis.alpha"), ({"alpha": 0.6}, "analysis.alpha"),
    ({"metrics": []}, "analysis.metrics"),
    ({"metrics": [{"name": "e", "kind": "ratio"}, {"name": "e", "kind": "latency"}]}, "analysis.metrics"),
    ({"metrics": [{"name": "traffic_split", "kind": "ratio"}]}, "analysis.metrics"),
    ({"metrics": [{"name": "e", "kind": "ratio", "tolerance": 2}]}, "analysis.metrics.0.ratio"),
    ({"metrics": [{"name": "o", "kind": "threshold", "query": 'x{v="$version"}'}]}, "analysis.metrics.0.threshold"),
    ({"metrics": [{"name": "l", "kind": "latency", "boundaries_ms": []}]}, "analysis.metrics.0.latency.boundaries_ms"),
    ({"metrics": [{"name": "e", "kind": "ratio", "max": float("nan")}]}, "analysis.metrics.0.ratio.max"),
    ({"metrics": [{"name": "Bad-Name", "kind": "ratio"}]}, "analysis.metrics.0.ratio.name"),
])
def test_nonsense_is_refused_naming_the_field(analysis, field):
    assert field in fields_of(analysis)
