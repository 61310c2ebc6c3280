from __future__ import annotations

import time

import httpx
import pytest

from canaryflow.analysis import Analysis, check_preconditions, comparison_alpha, next_pause, policy_for
from canaryflow.assess.counts import Counts
from canaryflow.errors import PlatformError, PreflightError
from canaryflow.judge import Policy, QueryResult, Verdict
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
        self.failing_on: str | None = None  # only queries containing this fail
        self.blank = False  # answers with neither series nor an error
        self.scraped: dict[str, tuple[float, ...]] = {}  # per version: its targets' last scrape times
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
        if self.failing or (self.failing_on is not None and self.failing_on in promql):
            return SeriesResult(error="cannot reach http://prom")
        if self.blank:
            return SeriesResult()
        version = "v2" if 'version="v2"' in promql else "v1"
        if promql.startswith("timestamp("):  # unless told otherwise, scraped exactly at the evaluation time
            times = self.scraped.get(version, (at or 0.0,))
            return SeriesResult(series={(("instance", str(i)),): t for i, t in enumerate(times)})
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


# -- which counters are read, and when ---------------------------------------------------------

DEFAULT_COUNTERS = {
    f'http_requests_total{{service="checkout",version="{v}"}}' for v in ("v1", "v2")} | {
    f'http_requests_total{{service="checkout",version="{v}",code=~"5.."}}' for v in ("v1", "v2")} | {
    f'http_request_duration_seconds_bucket{{service="checkout",version="{v}"}}' for v in ("v1", "v2")}
SAMPLE_TIMES = {f'timestamp(http_requests_total{{service="checkout",version="{v}"}})' for v in ("v1", "v2")}


def test_start_snapshots_every_counter_of_both_versions_at_the_given_time():
    source = CounterSource()
    Analysis(validate_spec(SPEC), source, baseline_version="v1").start(at=1000.0)
    assert {q for q, _ in source.seen} == DEFAULT_COUNTERS | SAMPLE_TIMES
    assert {at for _, at in source.seen} == {1000.0}


def test_start_and_round_without_a_time_read_at_the_current_time():
    source = CounterSource()
    analysis = Analysis(validate_spec(SPEC), source, baseline_version="v1")
    before = time.time()
    analysis.start()
    analysis.round(step_index=0, expected_share=0.1)
    after = time.time()
    assert source.seen and all(at is not None and before <= at <= after for _, at in source.seen)


def test_a_round_reads_the_threshold_query_at_the_evaluation_time_too():
    analysis, source = analysis_with_history(analysis={"metrics": [
        {"name": "orders", "kind": "threshold", "query": 'sum(rate(orders_total{version="$version"}[$window]))',
         "min": 50}]})
    source.seen.clear()
    analysis.round(step_index=0, expected_share=0.1, at=1234.5)
    assert source.seen == [('sum(rate(orders_total{version="v2"}[1m]))', 1234.5)]


def test_a_threshold_metric_listed_first_does_not_stop_the_others_being_snapshotted():
    source = CounterSource()
    source.serve("v1", requests=5000, errors=5, latencies_ms=tuple([20] * 4000 + [40] * 1000))
    source.serve("v2", requests=2)
    analysis = Analysis(validate_spec({**SPEC, "analysis": {"metrics": [
        {"name": "orders", "kind": "threshold", "query": 'orders{version="$version"}', "min": 1},
        {"name": "error_rate", "kind": "ratio"}, {"name": "p95_latency", "kind": "latency"}]}}),
        source, baseline_version="v1")
    analysis.start(at=1000.0)
    assert analysis.describe_boundaries() == {"p95_latency": [25.0, 50.0]}
    source.serve("v2", requests=100, errors=1)
    source.serve("v1", requests=900, errors=1)
    m = by_metric(analysis.round(step_index=0, expected_share=0.1, at=1001.0))
    assert (m["error_rate"].state.canary, m["error_rate"].state.baseline) == (Counts(100, 1), Counts(900, 1))
    assert (m["p95_latency"].requests, m["p95_latency"].baseline_requests) == (100, 900)


# -- the source's answers ----------------------------------------------------------------------

def test_an_answer_with_neither_series_nor_error_is_an_error_of_every_counter_metric():
    analysis, source = analysis_with_history()
    source.serve("v2", requests=100)
    source.serve("v1", requests=900)
    source.blank = True
    m = by_metric(analysis.round(step_index=0, expected_share=0.1, at=1001.0))
    assert {name: (x.verdict, x.detail) for name, x in m.items()} == {
        "error_rate": (Verdict.ERROR, "error_rate: metric source failed: no answer"),
        "p95_latency": (Verdict.ERROR, "p95_latency: metric source failed: no answer"),
        "traffic_split": (Verdict.ERROR, "traffic_split: no request counts this round"),
    }
    source.blank = False  # the snapshots did not move: the counts land in the next round
    m = by_metric(analysis.round(step_index=0, expected_share=0.1, at=1002.0))
    assert m["error_rate"].state.canary == Counts(100, 0)


# -- latency: boundaries from the baseline, histograms per round -------------------------------

HISTORY_MS = tuple([20] * 600 + [40] * 300 + [90] * 95 + [300] * 5)


def latency_analysis(**spec_changes) -> tuple[Analysis, CounterSource]:
    source = CounterSource()
    source.serve("v1", requests=1000, latencies_ms=HISTORY_MS)
    analysis = Analysis(validate_spec({**SPEC, **spec_changes}), source, baseline_version="v1")
    analysis.start(at=1000.0)
    return analysis, source


def test_latency_rounds_count_each_versions_own_histogram_cumulatively_within_the_step():
    analysis, source = latency_analysis()
    source.serve("v2", requests=100, latencies_ms=tuple([20] * 50 + [40] * 30 + [90] * 15 + [300] * 5))
    source.serve("v1", requests=900, latencies_ms=tuple([20] * 540 + [40] * 270 + [90] * 85 + [300] * 5))
    m = by_metric(analysis.round(step_index=0, expected_share=0.1, at=1001.0))["p95_latency"]
    assert (m.verdict, m.value, m.threshold, m.unit) == (Verdict.PASS, 100.0, 500, "ms")
    assert (m.requests, m.baseline_requests) == (100, 900)
    assert m.detail == ("p95_latency: canary p95 ~100 ms vs baseline ~76 ms; slower than 25/50/100/500 ms: "
                        "canary 50.00%/20.00%/5.00%/0.00% vs baseline 40.00%/10.00%/0.56%/0.00% — "
                        "evidence 23 < 200; limit p95 <= 500 ms")
    source.serve("v2", requests=50, latencies_ms=tuple([20] * 50))
    source.serve("v1", requests=450, latencies_ms=tuple([20] * 450))
    m = by_metric(analysis.round(step_index=1, expected_share=0.5, at=1002.0))["p95_latency"]
    assert (m.requests, m.baseline_requests) == (50, 1350)  # requests: this step's; baseline: the release's
    assert m.state.canary.requests == 150
    assert m.value == pytest.approx(91.667, abs=0.001)


def test_strict_analysis_holds_a_pass_until_the_upper_bounds_are_within_the_limits():
    measured = {}
    for strict in (False, True):
        analysis, source = analysis_with_history(analysis={"strict": strict})
        source.serve("v2", requests=100, errors=1, latencies_ms=tuple([20] * 60 + [40] * 40))
        source.serve("v1", requests=900, errors=1, latencies_ms=tuple([20] * 600 + [40] * 300))
        measured[strict] = by_metric(analysis.round(step_index=0, expected_share=0.1, at=1001.0))
    assert (measured[False]["error_rate"].verdict, measured[False]["p95_latency"].verdict) == (Verdict.PASS,) * 2
    assert measured[True]["error_rate"].verdict is Verdict.INCONCLUSIVE
    assert measured[True]["error_rate"].detail == (
        "error_rate: canary 1.00% (1/100) vs baseline 0.11% (1/900); strict: upper bound 9.13% not yet below "
        "the 1.00% limit")
    assert measured[True]["p95_latency"].verdict is Verdict.INCONCLUSIVE
    assert measured[True]["p95_latency"].detail == (
        "p95_latency: canary p95 ~47 ms vs baseline ~46 ms; slower than 25 ms: canary 40.00% vs baseline "
        "33.33%; strict: not yet credibly within p95 <= 500 ms")


@pytest.mark.parametrize("unit,expected", [("seconds", [100.0, 250.0]), ("milliseconds", [100.0, 250.0])])
def test_boundaries_given_in_ms_are_kept_in_ms_whatever_the_histogram_unit(unit, expected):
    analysis, _ = analysis_with_history(queries={"latency_unit": unit}, analysis={"metrics": [
        {"name": "p95_latency", "kind": "latency", "boundaries_ms": [100, 250]}]})
    assert analysis.describe_boundaries() == {"p95_latency": expected}


def test_boundaries_given_in_ms_are_compared_on_the_histograms_le_in_seconds():
    analysis, source = analysis_with_history(analysis={"metrics": [
        {"name": "p95_latency", "kind": "latency", "boundaries_ms": [100, 200]}]})
    source.serve("v2", requests=100, latencies_ms=tuple([20] * 100))
    source.serve("v1", requests=900, latencies_ms=tuple([20] * 900))
    m = by_metric(analysis.round(step_index=0, expected_share=0.1, at=1001.0))["p95_latency"]
    assert m.verdict is Verdict.PASS and "slower than 100/200 ms" in m.detail


@pytest.mark.parametrize("limits,expected", [
    ({"thresholds": {"max_p95_latency_ms": 150}}, [200.0]),  # the bucket at or above the limit
    ({"thresholds": {"max_p95_latency_ms": 100}}, [100.0]),  # a limit on a bucket is that bucket
    ({"thresholds": {"max_p95_latency_ms": 800}}, [500.0]),  # above every finite bucket: the largest
    ({"analysis": {"metrics": [{"name": "p95_latency", "kind": "latency", "max_ms": 50}]}}, [50.0]),
])
def test_with_too_little_baseline_history_the_boundary_is_the_bucket_at_the_latency_limit(limits, expected):
    source = CounterSource()
    source.serve("v1", requests=10, latencies_ms=tuple([20] * 10))
    analysis = Analysis(validate_spec({**SPEC, **limits}), source, baseline_version="v1")
    analysis.start(at=1.0)
    assert analysis.describe_boundaries() == {"p95_latency": expected}


def test_without_a_baseline_version_the_boundary_is_the_canarys_bucket_at_the_limit():
    source = CounterSource()
    source.serve("v2", requests=1000, latencies_ms=HISTORY_MS)  # the canary's counts never set boundaries
    analysis = Analysis(validate_spec({**SPEC, "thresholds": {"max_p95_latency_ms": 150}}), source,
                        baseline_version=None)
    analysis.start(at=1.0)
    assert analysis.describe_boundaries() == {"p95_latency": [200.0]}


def test_boundaries_not_fixed_are_described_as_none_rather_than_failing_the_report():
    source = CounterSource()
    source.serve("v1", requests=1000, latencies_ms=HISTORY_MS)
    source.failing = True
    analysis = Analysis(validate_spec(SPEC), source, baseline_version="v1")
    assert analysis.describe_boundaries() == {"p95_latency": []}  # before the start: none yet
    analysis.start(at=1.0)  # no baseline history could be read
    assert analysis.describe_boundaries() == {"p95_latency": []}


# -- ratio and threshold metrics across rounds -------------------------------------------------

def test_a_ratio_metric_with_its_own_max_is_judged_against_it_not_the_environment_default():
    analysis, source = analysis_with_history(analysis={"metrics": [{"name": "error_rate", "kind": "ratio",
                                                                   "max": 0.05}]})
    source.serve("v2", requests=100, errors=1)
    source.serve("v1", requests=900, errors=1)
    m = by_metric(analysis.round(step_index=0, expected_share=0.1, at=1001.0))["error_rate"]
    assert m.threshold == 0.05 and m.detail.endswith("limit 5.00%")


def test_threshold_breaches_add_up_across_rounds():
    analysis, _ = analysis_with_history(analysis={"metrics": [
        {"name": "orders", "kind": "threshold", "query": 'orders{version="$version"}', "min": 50,
         "failure_limit": 1}]})
    first = by_metric(analysis.round(step_index=0, expected_share=0.1, at=1001.0))["orders"]
    second = by_metric(analysis.round(step_index=0, expected_share=0.1, at=1002.0))["orders"]
    assert (first.verdict, first.detail) == (Verdict.INCONCLUSIVE, "orders: 42 outside >= 50 (breach 1, 1 tolerated)")
    assert (second.verdict, second.detail) == (Verdict.FAIL, "orders: 42 outside >= 50 (breach 2, 1 tolerated)")


# -- the traffic split ------------------------------------------------------------------------

def split_rounds(source: CounterSource, analysis: Analysis, *, weight_set_at: float | None = None,
                 second: dict[str, tuple[float, ...]] | None = None):
    """Two rounds at one step, 50 canary and 450 baseline requests in the second."""
    source.serve("v2", requests=100)
    source.serve("v1", requests=900)
    analysis.round(step_index=0, expected_share=0.1, at=1010.0)
    source.serve("v2", requests=50)
    source.serve("v1", requests=450)
    source.scraped = second or {}
    return by_metric(analysis.round(step_index=0, expected_share=0.1, at=1020.0,
                                   weight_set_at=weight_set_at))["traffic_split"]


def test_the_traffic_split_counts_from_the_second_round_of_a_step_over_each_versions_sample_span():
    analysis, source = analysis_with_history()
    m = split_rounds(source, analysis)
    assert (m.verdict, m.value, m.requests, m.baseline_requests) == (Verdict.PASS, 0.1, 50, 450)
    assert (m.state.canary_seconds, m.state.baseline_seconds) == (10.0, 10.0)


def test_the_first_round_of_a_new_step_is_left_out_of_the_split():
    analysis, source = analysis_with_history()
    split_rounds(source, analysis)
    source.serve("v2", requests=500)
    source.serve("v1", requests=500)
    m = by_metric(analysis.round(step_index=1, expected_share=0.5, at=1030.0))["traffic_split"]
    assert (m.verdict, m.requests, m.baseline_requests) == (Verdict.INCONCLUSIVE, 0, 0)
    assert m.detail == "traffic_split: first round at 50.00% routed, not counted"


def test_the_traffic_split_aligns_the_baseline_to_the_canarys_span_from_the_mean_scrape_time():
    analysis, source = analysis_with_history()
    # canary targets scraped at 1019 and 1021 (mean 1020, 10 s after the last round's 1010);
    # the baseline's only target at 1015, 5 s after its 1010 sample: its 450 cover 5 s, 900 over 10 s
    m = split_rounds(source, analysis, second={"v2": (1019.0, 1021.0), "v1": (1015.0,)})
    assert (m.state.canary_seconds, m.state.baseline_seconds) == (10.0, 5.0)
    assert m.value == pytest.approx(50 / (50 + 900))
    assert m.verdict is Verdict.FAIL


@pytest.mark.parametrize("second", [
    {"v2": (1010.0,)},  # the canary's target was not scraped again since the previous round
    {"v1": (1010.0,)},
    {"v2": ()},  # no canary target answers the timestamp query
    {"v1": ()},
])
def test_a_round_without_a_sample_span_for_either_version_is_left_out_of_the_split(second):
    analysis, source = analysis_with_history()
    m = split_rounds(source, analysis, second=second)
    assert (m.verdict, m.requests, m.baseline_requests) == (Verdict.INCONCLUSIVE, 0, 0)
    assert m.detail == "traffic_split: no requests yet at 10.00% routed"


@pytest.mark.parametrize("first", [
    {"v2": (1010.0,), "v1": (1015.0,)},  # the canary's previous sample precedes the weight (set at 1012)
    {"v2": (1015.0,), "v1": (1010.0,)},  # the baseline's
])
def test_a_span_reaching_back_before_the_weight_was_set_is_left_out_of_the_split(first):
    analysis, source = analysis_with_history()
    source.serve("v2", requests=100)
    source.serve("v1", requests=900)
    source.scraped = first
    analysis.round(step_index=0, expected_share=0.1, at=1015.0)
    source.serve("v2", requests=50)
    source.serve("v1", requests=450)
    source.scraped = {}
    m = by_metric(analysis.round(step_index=0, expected_share=0.1, at=1020.0, weight_set_at=1012.0))["traffic_split"]
    assert (m.verdict, m.requests, m.baseline_requests) == (Verdict.INCONCLUSIVE, 0, 0)


def test_a_span_starting_exactly_when_the_weight_was_set_counts():
    analysis, source = analysis_with_history()
    m = split_rounds(source, analysis, weight_set_at=1010.0)
    assert (m.verdict, m.requests, m.baseline_requests) == (Verdict.PASS, 50, 450)


def test_without_a_ratio_metric_there_is_no_traffic_split_check():
    analysis, source = latency_analysis(analysis={"metrics": [{"name": "p95_latency", "kind": "latency"}]})
    source.seen.clear()
    measured = analysis.round(step_index=0, expected_share=0.1, at=1001.0)
    assert [m.metric for m in measured] == ["p95_latency"]
    assert not any(q.startswith("timestamp(") for q, _ in source.seen)


# -- the spec's parts the judge and the loop read ----------------------------------------------

def test_the_policy_carries_the_specs_steps_waits_and_limits():
    spec = validate_spec({**SPEC, "steps": [5, 25, 100], "step_wait_seconds": 60, "max_consecutive_errors": 4,
                          "max_hold_seconds": 30, "max_step_backs": 2})
    assert policy_for(spec) == Policy(steps=(5, 25, 100), step_wait_seconds=60, max_consecutive_errors=4,
                                      max_hold_seconds=30, max_step_backs=2)


RATIO = {"name": "error_rate", "kind": "ratio"}
LATENCY = {"name": "p95_latency", "kind": "latency"}
THRESHOLD = {"name": "orders", "kind": "threshold", "query": 'orders{version="$version"}', "min": 1}


@pytest.mark.parametrize("metrics,alpha", [
    ([RATIO], 0.02),
    ([RATIO, LATENCY], 0.01),
    ([RATIO, LATENCY, THRESHOLD], 0.01),  # a threshold metric is not compared with the baseline
    ([THRESHOLD], 0.02),
])
def test_alpha_is_split_equally_between_the_metrics_compared_with_the_baseline(metrics, alpha):
    spec = validate_spec({**SPEC, "analysis": {"alpha": 0.02, "metrics": metrics}})
    assert comparison_alpha(spec) == pytest.approx(alpha)


def test_next_pause_never_overshoots_the_end_of_the_wait_even_by_less_than_a_second():
    assert next_pause(elapsed=9.75, wait=10, interval=3) == 0.25
    assert next_pause(elapsed=12, wait=10, interval=3) == 3  # holding past the wait: every interval


class _SampleSource:
    """A metric source that answers the preflight's sample query with ``answer``."""

    url = "http://prom"

    def __init__(self, answer: QueryResult, *, online: bool = True) -> None:
        self.answer, self.online, self.queries = answer, online, []

    def is_online(self) -> bool:
        return self.online

    def query(self, promql: str, *, at: float | None = None) -> QueryResult:
        self.queries.append(promql)
        return self.answer


@pytest.mark.parametrize("source,message", [
    (_SampleSource(QueryResult(1.0), online=False), "Prometheus at http://prom is not ready (/-/ready)"),
    (_SampleSource(QueryResult(2.0)), "Prometheus at http://prom failed a sample query: 2.0"),
    (_SampleSource(QueryResult(float("nan"))), "Prometheus at http://prom failed a sample query: nan"),
    (_SampleSource(QueryResult(error="timed out querying http://prom")),
     "Prometheus at http://prom failed a sample query: timed out querying http://prom"),
])
def test_an_unusable_prometheus_refuses_the_release_as_metrics_unavailable(source, message):
    run = _run(_prometheus())
    run.source = source
    with pytest.raises(PreflightError) as refused:
        check_preconditions(run)
    assert (str(refused.value), refused.value.reason) == (message, "metrics_unavailable")
    assert run.previous_version is None  # refused before the platform is asked anything


def test_preflight_samples_prometheus_with_a_query_that_always_answers_one():
    run = _run(_prometheus())
    run.source = _SampleSource(QueryResult(1.0))
    check_preconditions(run)
    assert run.source.queries == ["vector(1)"]


def test_a_round_that_reads_the_requests_but_not_the_errors_moves_neither_snapshot():
    """Had the request counter moved on alone, the next round would hold two intervals of errors over
    one of requests: a healthy canary's error rate doubled by a Prometheus blip."""
    analysis, source = analysis_with_history()
    source.serve("v2", requests=100, errors=2)
    source.serve("v1", requests=900, errors=18)
    source.failing_on = 'code=~"5.."'
    failed = by_metric(analysis.round(step_index=0, expected_share=0.1, at=1001.0))
    assert failed["error_rate"].verdict is Verdict.ERROR
    source.failing_on = None
    source.serve("v2", requests=100, errors=2)
    source.serve("v1", requests=900, errors=18)
    after = by_metric(analysis.round(step_index=0, expected_share=0.1, at=1002.0))["error_rate"]
    assert (after.state.canary, after.state.baseline) == (Counts(200, 4), Counts(1800, 36))  # both intervals whole


def test_a_start_that_could_not_read_counts_nothing_until_a_round_takes_the_snapshot():
    """The counters' whole values hold the stable's history and the canary's smoke tests: without a
    snapshot from before the canary's traffic, the first round that reads them counts nothing."""
    source = CounterSource()
    source.serve("v1", requests=5000, errors=200)  # history, 4 % errors
    source.serve("v2", requests=20, errors=20)  # failed smoke requests before the analysis
    analysis = Analysis(validate_spec(SPEC), source, baseline_version="v1")
    source.failing = True
    analysis.start(at=1000.0)
    assert analysis.unread_at_start == {"error_rate": "cannot reach http://prom",
                                        "p95_latency": "cannot reach http://prom"}
    source.failing = False
    source.serve("v2", requests=100, errors=0)
    source.serve("v1", requests=900, errors=0)
    first = by_metric(analysis.round(step_index=0, expected_share=0.1, at=1001.0))
    assert (first["error_rate"].state.canary, first["error_rate"].state.baseline) == (Counts(0, 0), Counts(0, 0))
    assert first["error_rate"].verdict is Verdict.INCONCLUSIVE and first["p95_latency"].state.canary.requests == 0
    source.serve("v2", requests=100, errors=1)
    source.serve("v1", requests=900, errors=1)
    second = by_metric(analysis.round(step_index=0, expected_share=0.1, at=1002.0))
    assert (second["error_rate"].state.canary, second["error_rate"].state.baseline) == (Counts(100, 1), Counts(900, 1))
    assert second["p95_latency"].state.canary.requests == 100


def test_without_a_baseline_version_the_canary_is_counted_and_the_baseline_served_nothing():
    source = CounterSource()
    source.serve("v2", requests=2)  # smoke tests, before the analysis
    analysis = Analysis(validate_spec(SPEC), source, baseline_version=None)
    analysis.start(at=1000.0)
    source.serve("v2", requests=100, errors=1)
    source.serve("v1", requests=900, errors=9)  # another version's traffic is not this release's baseline
    m = by_metric(analysis.round(step_index=0, expected_share=1.0, at=1001.0))
    assert (m["error_rate"].state.canary, m["error_rate"].state.baseline) == (Counts(100, 1), Counts(0, 0))
    assert m["p95_latency"].state.canary.requests == 100 and m["p95_latency"].state.baseline.requests == 0
    assert not any('version="v1"' in q for q, _ in source.seen)  # no baseline version: nothing of it is read
