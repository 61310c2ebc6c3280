from __future__ import annotations

import httpx
import pytest

from canaryflow.analysis import Analysis, check_preconditions, next_pause
from canaryflow.assess.counts import Counts
from canaryflow.errors import PlatformError, PreflightError
from canaryflow.judge import QueryResult, Verdict
from canaryflow.pipeline_metrics import PipelineMetrics
from canaryflow.platforms.local import LocalPlatform
from canaryflow.prometheus import PrometheusSource, SeriesResult
from canaryflow.release import ReleaseRun
from canaryflow.spec import validate_spec


class CounterSource:
    """A MetricSource over in-memory raw counters: ``counters[version]`` maps a series' labels to its
    value; tests move the counters between rounds as traffic would."""

    def __init__(self) -> None:
        self.counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = {"v1": {}, "v2": {}}
        self.failing = False
        self.seen: list[tuple[str, float | None]] = []

    def serve(self, version: str, *, requests: int, errors: int = 0, path: str = "/api/orders",
              latencies_ms: tuple[float, ...] = ()) -> None:
        c = self.counters[version]
        ok = (("code", "200"), ("path", path))
        bad = (("code", "500"), ("path", path))
        c[ok] = c.get(ok, 0) + requests - errors
        c[bad] = c.get(bad, 0) + errors
        for le in (0.025, 0.05, 0.1, 0.2, 0.5, float("inf")):
            key = (("le", "+Inf" if le == float("inf") else str(le)), ("path", path))
            under = sum(1 for ms in latencies_ms if ms / 1000 <= le) if latencies_ms else requests
            c[key] = c.get(key, 0) + under

    def query_series(self, promql: str, *, at: float | None = None) -> SeriesResult:
        self.seen.append((promql, at))
        if self.failing:
            return SeriesResult(error="cannot reach http://prom")
        if promql.startswith("timestamp("):  # every target scraped exactly at the evaluation time
            return SeriesResult(series={(("instance", "a"),): at or 0.0})
        version = "v2" if 'version="v2"' in promql else "v1"
        wanted = "bucket" if "_bucket" in promql else "errors" if 'code=~"5.."' in promql else "requests"
        series = {}
        for key, value in self.counters[version].items():
            labels = dict(key)
            if (wanted == "bucket") != ("le" in labels):
                continue
            if wanted == "errors" and labels.get("code") != "500":
                continue
            series[key] = value
        return SeriesResult(series=series)

    def query(self, promql: str, *, at: float | None = None) -> QueryResult:
        self.seen.append((promql, at))
        return QueryResult(error="down") if self.failing else QueryResult(42.0)

    def is_online(self) -> bool:
        return True


SPEC = {"service": "checkout", "version": "v2", "min_canary_requests": 50}


def analysis_with_history(**spec_changes) -> tuple[Analysis, CounterSource]:
    source = CounterSource()
    source.serve("v1", requests=5000, errors=5)  # the stable's history before the canary
    source.serve("v2", requests=2)  # smoke tests
    analysis = Analysis(validate_spec({**SPEC, **spec_changes}), source, baseline_version="v1")
    analysis.start(at=1000.0)
    return analysis, source


def by_metric(measurements) -> dict[str, object]:
    return {m.metric: m for m in measurements}


def test_each_round_counts_only_what_was_served_since_the_previous_round():
    analysis, source = analysis_with_history()
    source.serve("v2", requests=100, errors=1)
    source.serve("v1", requests=900, errors=1)
    first = by_metric(analysis.round(step_index=0, expected_share=0.1, at=1001.0))
    assert (first["error_rate"].state.canary, first["error_rate"].state.baseline) == (Counts(100, 1), Counts(900, 1))
    source.serve("v2", requests=50)
    source.serve("v1", requests=450)
    second = by_metric(analysis.round(step_index=0, expected_share=0.1, at=1002.0))
    assert second["error_rate"].state.canary == Counts(150, 1)
    assert second["error_rate"].requests == 150
    assert second["error_rate"].verdict is Verdict.PASS


def test_every_query_of_a_round_uses_one_evaluation_time():
    analysis, source = analysis_with_history()
    source.seen.clear()
    analysis.round(step_index=0, expected_share=0.1, at=1234.5)
    assert source.seen and {at for _, at in source.seen} == {1234.5}
    assert {'version="v1"' in q for q, _ in source.seen} == {True, False}  # canary and baseline both read


def test_a_counter_reset_counts_the_new_value():
    analysis, source = analysis_with_history()
    source.serve("v2", requests=100)
    source.serve("v1", requests=900)
    analysis.round(step_index=0, expected_share=0.1, at=1001.0)
    source.counters["v2"] = {}  # the canary process restarted
    source.serve("v2", requests=30, errors=3)
    source.serve("v1", requests=270)
    m = by_metric(analysis.round(step_index=0, expected_share=0.1, at=1002.0))["error_rate"]
    assert m.state.canary == Counts(130, 3)


def test_a_failed_round_loses_no_counts():
    analysis, source = analysis_with_history()
    source.serve("v2", requests=100, errors=2)
    source.serve("v1", requests=900)
    source.failing = True
    failed = by_metric(analysis.round(step_index=0, expected_share=0.1, at=1001.0))
    assert failed["error_rate"].verdict is Verdict.ERROR and "cannot reach" in failed["error_rate"].detail
    source.failing = False
    m = by_metric(analysis.round(step_index=0, expected_share=0.1, at=1002.0))["error_rate"]
    assert m.state.canary == Counts(100, 2)


def test_no_series_at_all_is_inconclusive_never_pass():
    source = CounterSource()
    analysis = Analysis(validate_spec(SPEC), source, baseline_version="v1")
    analysis.start(at=1.0)
    for at in (2.0, 3.0):
        measured = by_metric(analysis.round(step_index=0, expected_share=0.1, at=at))
    assert measured["error_rate"].verdict is Verdict.INCONCLUSIVE
    assert measured["p95_latency"].verdict is Verdict.INCONCLUSIVE


def test_latency_boundaries_come_from_the_baseline_before_the_canary():
    source = CounterSource()
    source.serve("v1", requests=1000, latencies_ms=tuple([20] * 600 + [40] * 300 + [90] * 95 + [300] * 5))
    source.serve("v2", requests=10, latencies_ms=tuple([400] * 10))  # the canary's own never count
    analysis = Analysis(validate_spec(SPEC), source, baseline_version="v1")
    analysis.start(at=1.0)
    assert analysis.describe_boundaries() == {"p95_latency": [25.0, 50.0, 100.0, 500.0]}


def test_threshold_metrics_render_the_canary_version():
    analysis, source = analysis_with_history(analysis={"metrics": [
        {"name": "error_rate", "kind": "ratio"},
        {"name": "orders", "kind": "threshold", "query": 'sum(rate(orders_total{version="$version"}[$window]))',
         "min": 50}]})
    source.serve("v2", requests=100)
    source.serve("v1", requests=900)
    measured = by_metric(analysis.round(step_index=0, expected_share=0.1, at=1001.0))
    assert measured["orders"].verdict is Verdict.FAIL  # 42 < 50, failure_limit 0
    assert any(q == 'sum(rate(orders_total{version="v2"}[1m]))' for q, _ in source.seen)
    assert list(measured) == ["error_rate", "orders", "traffic_split"]


def test_next_pause_lands_a_round_on_the_end_of_the_wait():
    assert next_pause(elapsed=0, wait=10, interval=3) == 3
    assert next_pause(elapsed=8.5, wait=10, interval=3) == 1.5
    assert next_pause(elapsed=10, wait=10, interval=3) == 3
    assert next_pause(elapsed=0, wait=0, interval=2) == 2


def _run(prometheus_handler, stable: str = "v1", versions: list[str] | None = None):
    controller = httpx.MockTransport(lambda r: httpx.Response(200, json={
        "service": "checkout", "stable": {"version": stable}, "canary": None, "canary_weight": 0,
        "versions": versions if versions is not None else ["v1", "v2"]}))
    return ReleaseRun(
        spec=validate_spec({"service": "checkout", "version": "v2"}),
        platform=LocalPlatform("http://controller", service="checkout", transport=controller),
        source=PrometheusSource("http://prom", transport=httpx.MockTransport(prometheus_handler)),
        metrics=PipelineMetrics(service="checkout", environment="staging"),
    )


def _prometheus(ready: int = 200, value: str = "1"):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/-/ready":
            return httpx.Response(ready)
        return httpx.Response(200, json={"status": "success", "data": {
            "resultType": "vector", "result": [{"metric": {}, "value": [0, value]}]}})
    return handler


def test_preconditions_pass_and_remember_the_stable_version():
    run = _run(_prometheus())
    check_preconditions(run)
    assert run.previous_version == "v1"


@pytest.mark.parametrize("handler,stable,message", [
    (_prometheus(ready=503), "v1", "not ready"),
    (_prometheus(value="NaN"), "v1", "failed a sample query"),
    (_prometheus(), "v2", "already runs v2"),
])
def test_preconditions_refuse(handler, stable, message):
    with pytest.raises(PreflightError, match=message):
        check_preconditions(_run(handler, stable))


def test_a_version_the_platform_cannot_deploy_is_refused_before_any_canary_exists():
    run = _run(_prometheus(), versions=["v1", "v3-errors"])
    with pytest.raises(PreflightError, match=r"checkout v2 cannot be released: .*unknown version 'v2'; "
                                             r"the catalogue has: v1, v3-errors") as refused:
        check_preconditions(run)
    assert refused.value.reason is None  # a typo is not retried later


class _CatalogueUnreachable:
    """The platform knows its stable version but cannot answer the version check just now."""

    def stable_version(self) -> str:
        return "v1"

    def check_version(self, version: str) -> None:
        raise PlatformError("HTTP 503: controller busy", operation="check_version", transient=True)


def test_a_transient_platform_error_in_the_version_check_is_not_a_verdict_on_the_version():
    run = _run(_prometheus())
    run.platform = _CatalogueUnreachable()
    with pytest.raises(PlatformError) as raised:  # left to the task's retries, then to the retry policy
        check_preconditions(run)
    assert raised.value.transient and not isinstance(raised.value, PreflightError)
    assert "cannot be released" not in str(raised.value)
