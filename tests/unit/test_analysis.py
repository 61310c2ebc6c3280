from __future__ import annotations

import httpx
import pytest

from canaryflow.analysis import check_preconditions, measure, next_pause
from canaryflow.errors import PreflightError
from canaryflow.judge import QueryResult, Verdict
from canaryflow.pipeline_metrics import PipelineMetrics
from canaryflow.platforms.local import LocalPlatform
from canaryflow.prometheus import PrometheusSource
from canaryflow.release import ReleaseRun
from canaryflow.spec import validate_spec


class FakeSource:
    """A MetricSource answering by metric name, recording the queries it saw."""

    def __init__(self, answers: dict[str, QueryResult]) -> None:
        self.answers, self.seen = answers, []

    def query(self, promql: str) -> QueryResult:
        self.seen.append(promql)
        for key, answer in self.answers.items():
            if promql.startswith(key):
                return answer
        raise AssertionError(promql)

    def is_online(self) -> bool:
        return True


def test_measure_judges_both_metrics_with_the_spec_thresholds():
    spec = validate_spec({"service": "checkout", "version": "v2", "min_canary_requests": 10})
    source = FakeSource({"sum(increase": QueryResult(100.0), "(sum(rate": QueryResult(0.05),
                         "histogram_quantile": QueryResult(0.1)})
    error_rate, latency = measure(source, spec)
    assert (error_rate.verdict, error_rate.threshold) == (Verdict.FAIL, 0.01)
    assert (latency.verdict, latency.value) == (Verdict.PASS, 100.0)
    assert all('version="v2"' in q for q in source.seen)


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


@pytest.mark.parametrize("window,age,expected", [
    ("1m", None, "1m"), ("1m", 75.0, "1m"), ("1m", 60.0, "1m"), ("1m", 12.2, "13s"), ("1m", 0.1, "1s"),
    ("30s", 29.0, "29s"), ("500ms", 0.2, "500ms"), ("2h", 4000.0, "4000s"),
])
def test_the_window_never_reaches_back_before_the_canary_started(window, age, expected):
    from canaryflow.analysis import effective_window

    spec = validate_spec({"service": "checkout", "version": "v2", "analysis_window": window})
    assert effective_window(spec, age) == expected


def test_measure_renders_the_shortened_window():
    spec = validate_spec({"service": "checkout", "version": "v2", "analysis_window": "1m"})
    source = FakeSource({"sum(increase": QueryResult(1.0), "(sum(rate": QueryResult(0.0),
                         "histogram_quantile": QueryResult(0.1)})
    measure(source, spec, canary_age=7.5)
    assert all("[8s]" in q for q in source.seen)
