"""The metric source distinguishes every kind of answer the Prometheus HTTP API gives."""

from __future__ import annotations

import base64
import math
import socket
import time

import httpx
import pytest

from canaryflow.errors import MetricSourceError
from canaryflow.prometheus import PrometheusSource, SeriesResult, parse_instant, parse_sample, parse_series


def vector(*values: str) -> dict:
    return {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": {}, "value": [1.0, v]} for v in values]}}


@pytest.mark.parametrize("raw,expected", [("0.25", 0.25), ("NaN", math.nan), ("+Inf", math.inf), ("-Inf", -math.inf)])
def test_values_arrive_as_strings(raw, expected):
    value = parse_instant(vector(raw))
    assert (math.isnan(value) and math.isnan(expected)) or value == expected


def test_empty_vector_is_none():
    assert parse_instant(vector()) is None


def test_scalar_result():
    assert parse_instant({"status": "success", "data": {"resultType": "scalar", "result": [1, "1"]}}) == 1.0


@pytest.mark.parametrize("body,message", [
    (vector("1", "2"), "2 series"),
    ({"status": "error", "errorType": "bad_data", "error": "parse error"}, "bad_data"),
    ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "matrix"),
    (vector("abc"), "not a number"),
    ([1, 2], "not a JSON object"),
])
def test_malformed_or_failed_answers_raise(body, message):
    with pytest.raises(MetricSourceError, match=message):
        parse_instant(body)


def source(handler) -> tuple[PrometheusSource, list]:
    seen: list = []
    return PrometheusSource("http://prom:9090", transport=httpx.MockTransport(handler),
                            observer=lambda s, outcome: seen.append(outcome)), seen


def test_query_folds_errors_into_the_result_and_reports_outcomes():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params["query"] == "up":
            return httpx.Response(200, json=vector("1"))
        if request.url.params["query"] == "slow":
            raise httpx.ReadTimeout("slow", request=request)
        if request.url.params["query"] == "down":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(422, json={"status": "error", "errorType": "execution", "error": "boom"})

    src, seen = source(handler)
    assert src.query("up").value == 1.0
    assert "timed out" in src.query("slow").error
    assert "cannot reach" in src.query("down").error
    assert "execution" in src.query("bad").error
    assert seen == ["success", "timeout", "failed", "failed"]


def test_non_json_error_page():
    src, _ = source(lambda r: httpx.Response(503, text="<html>unavailable</html>"))
    assert "HTTP 503" in src.query("up").error


def test_is_online():
    up, _ = source(lambda r: httpx.Response(200, text="Prometheus Server is Ready."))
    down, _ = source(lambda r: httpx.Response(503))
    assert up.is_online() and not down.is_online()


# --- parsing the /api/v1/query body -------------------------------------------------------------

def test_parse_sample_names_the_value_that_is_not_a_number():
    with pytest.raises(MetricSourceError) as err:
        parse_sample(None)
    assert str(err.value) == "sample value None is not a number"
    with pytest.raises(MetricSourceError) as err:
        parse_sample("abc")
    assert str(err.value) == "sample value 'abc' is not a number"


def test_the_sample_value_is_read_not_its_timestamp():
    body = {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": {}, "value": [1700000000.5, "0.02"]}]}}
    assert parse_instant(body) == 0.02
    assert parse_series(body) == {(): 0.02}


def test_scalar_answer_reads_its_value_not_its_timestamp():
    body = {"status": "success", "data": {"resultType": "scalar", "result": [1700000000.5, "NaN"]}}
    assert math.isnan(parse_instant(body))


@pytest.mark.parametrize("result", [[1700000000.5], [1700000000.5, "1", "2"], "1"])
def test_a_malformed_scalar_is_an_error(result):
    body = {"status": "success", "data": {"resultType": "scalar", "result": result}}
    with pytest.raises(MetricSourceError) as err:
        parse_instant(body)
    assert str(err.value) == "expected an instant vector, got resultType 'scalar'"


@pytest.mark.parametrize("parse", [parse_instant, parse_series])
@pytest.mark.parametrize("body,message", [
    ({"status": "error", "errorType": "bad_data", "error": "parse error at char 4"},
     "query failed (bad_data): parse error at char 4"),
    ({"status": "error"}, "query failed (error): unknown error"),
    ({"data": {"resultType": "vector", "result": []}}, "query failed (error): unknown error"),
    ([1, 2], "query failed (bad_data): not a JSON object"),
    (None, "query failed (bad_data): not a JSON object"),
    ({"status": "success"}, "expected an instant vector, got resultType None"),
    ({"status": "success", "data": None}, "expected an instant vector, got resultType None"),
    ({"status": "success", "data": {"resultType": "matrix", "result": []}},
     "expected an instant vector, got resultType 'matrix'"),
    ({"status": "success", "data": {"resultType": "vector", "result": None}},
     "expected an instant vector, got resultType 'vector'"),
    ({"status": "success", "data": {"resultType": "vector", "result": {}}},
     "expected an instant vector, got resultType 'vector'"),
])
def test_failed_or_unexpected_answers_are_errors_with_their_reason(parse, body, message):
    with pytest.raises(MetricSourceError) as err:
        parse(body)
    assert str(err.value) == message


def test_several_series_for_one_value_asks_for_an_aggregation():
    with pytest.raises(MetricSourceError) as err:
        parse_instant(vector("1", "2", "3"))
    assert str(err.value) == "query returned 3 series; aggregate it to one (e.g. sum(...))"


@pytest.mark.parametrize("parse", [parse_instant, parse_series])
@pytest.mark.parametrize("item", [
    {"metric": {}},
    {"metric": {}, "value": [1700000000.5]},
    {"metric": {}, "value": None},
    "up 1",
    None,
])
def test_a_malformed_sample_is_an_error(parse, item):
    body = {"status": "success", "data": {"resultType": "vector", "result": [item]}}
    with pytest.raises(MetricSourceError) as err:
        parse(body)
    assert str(err.value) == "malformed sample in vector result"


def test_series_are_keyed_by_their_sorted_labels():
    body = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"version": "canary", "code": "500"}, "value": [1700000000.5, "3"]},
        {"metric": {"version": "stable", "code": 500}, "value": [1700000000.5, "+Inf"]},
        {"metric": {}, "value": [1700000000.5, "7.5"]},
    ]}}
    assert parse_series(body) == {
        (("code", "500"), ("version", "canary")): 3.0,
        (("code", "500"), ("version", "stable")): math.inf,
        (): 7.5,
    }


def test_an_empty_vector_has_no_series():
    assert parse_series(vector()) == {}


def test_a_series_without_labels_is_malformed():
    body = {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"value": [1700000000.5, "1"]}]}}
    with pytest.raises(MetricSourceError, match="^malformed sample in vector result$"):
        parse_series(body)


@pytest.mark.parametrize("labels", [["code", "500"], "code=500", None])
def test_labels_that_are_not_a_mapping_are_an_error(labels):
    body = {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": labels, "value": [1700000000.5, "1"]}]}}
    with pytest.raises(MetricSourceError) as err:
        parse_series(body)
    assert str(err.value) == "malformed labels in vector result"


def test_a_series_value_that_is_not_a_number_is_an_error():
    body = {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": {"code": "500"}, "value": [1.0, "many"]}]}}
    with pytest.raises(MetricSourceError, match=r"^sample value 'many' is not a number$"):
        parse_series(body)


# --- the HTTP source ----------------------------------------------------------------------------

class Recorder:
    """A Prometheus stand-in answering ``/api/v1/query`` and keeping every request it got."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)


def test_the_query_and_the_evaluation_time_are_sent():
    prom = Recorder(lambda r: httpx.Response(200, json=vector("0.5")))
    src = PrometheusSource("http://prom:9090/", transport=httpx.MockTransport(prom))
    assert src.query("sum(rate(errors[1m]))", at=1700000000.25).value == 0.5
    (request,) = prom.requests
    assert request.method == "GET"
    assert request.url.path == "/api/v1/query"
    assert dict(request.url.params) == {"query": "sum(rate(errors[1m]))", "time": "1700000000.250"}


def test_the_evaluation_time_is_rounded_to_milliseconds():
    prom = Recorder(lambda r: httpx.Response(200, json=vector("1")))
    src = PrometheusSource("http://prom:9090", transport=httpx.MockTransport(prom))
    src.query_value("up", at=1700000000.12345)
    src.query_series("up", at=0.0)
    assert [r.url.params["time"] for r in prom.requests] == ["1700000000.123", "0.000"]


def test_without_an_evaluation_time_prometheus_evaluates_now():
    prom = Recorder(lambda r: httpx.Response(200, json=vector("1")))
    src = PrometheusSource("http://prom:9090", transport=httpx.MockTransport(prom))
    src.query("up")
    src.query_series("up")
    assert [dict(r.url.params) for r in prom.requests] == [{"query": "up"}, {"query": "up"}]


def test_a_path_prefix_in_the_url_is_kept_and_a_trailing_slash_dropped():
    prom = Recorder(lambda r: httpx.Response(200, json=vector("1")))
    src = PrometheusSource("http://prom:9090/prometheus/", transport=httpx.MockTransport(prom))
    assert src.url == "http://prom:9090/prometheus"
    src.query("up")
    assert prom.requests[0].url.path == "/prometheus/api/v1/query"


@pytest.mark.parametrize("kwargs,seconds", [({}, 5.0), ({"timeout": 0.25}, 0.25)])
def test_every_query_is_bounded_by_the_timeout(kwargs, seconds):
    prom = Recorder(lambda r: httpx.Response(200, json=vector("1")))
    src = PrometheusSource("http://prom:9090", transport=httpx.MockTransport(prom), **kwargs)
    src.query("up")
    assert prom.requests[0].extensions["timeout"] == {"connect": seconds, "read": seconds,
                                                      "write": seconds, "pool": seconds}


def test_no_data_is_not_a_value():
    src = PrometheusSource("http://prom:9090", transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json=vector())))
    result = src.query("up")
    assert result.value is None and result.error is None and not result.has_data
    assert src.query_value("up") is None


@pytest.mark.parametrize("raw", ["NaN", "+Inf", "-Inf"])
def test_nan_and_inf_are_kept_and_never_count_as_data(raw):
    src = PrometheusSource("http://prom:9090", transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json=vector(raw))))
    result = src.query("up")
    assert result.error is None and not result.has_data
    assert str(result.value) == str(float(raw))


def test_a_value_is_data():
    src = PrometheusSource("http://prom:9090", transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json=vector("0.01"))))
    result = src.query("up")
    assert result.value == 0.01 and result.error is None and result.has_data


def test_a_prometheus_error_is_reported_with_its_type_and_message():
    src, seen = source(lambda r: httpx.Response(
        400, json={"status": "error", "errorType": "bad_data", "error": "1:5: parse error"}))
    result = src.query("sum(")
    assert result.value is None
    assert result.error == "query failed (bad_data): 1:5: parse error"
    with pytest.raises(MetricSourceError) as err:
        src.query_value("sum(")
    assert err.value.kind == "error"
    assert seen == ["failed", "failed"]


def test_an_error_page_without_json_names_the_http_status():
    src, seen = source(lambda r: httpx.Response(502, text="Bad Gateway"))
    assert src.query("up").error == "HTTP 502 without a JSON body"
    assert src.query_series("up").error == "HTTP 502 without a JSON body"
    assert seen == ["failed", "failed"]


def test_a_timeout_is_its_own_kind_of_error():
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    src, seen = source(slow)
    with pytest.raises(MetricSourceError) as err:
        src.query_value("up", at=1700000000.0)
    assert err.value.kind == "timeout"
    assert str(err.value) == "timed out querying http://prom:9090"
    assert src.query("up").error == "timed out querying http://prom:9090"
    assert src.query_series("up").error == "timed out querying http://prom:9090"
    assert seen == ["timeout", "timeout", "timeout"]


def test_an_unreachable_prometheus_is_an_error_naming_the_url():
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    src, seen = source(refused)
    with pytest.raises(MetricSourceError) as err:
        src.query_value("up")
    assert err.value.kind == "error"
    assert str(err.value) == "cannot reach http://prom:9090: ConnectError"
    result = src.query("up")
    assert result.value is None and result.error == "cannot reach http://prom:9090: ConnectError"
    assert src.query_series("up") == SeriesResult(error="cannot reach http://prom:9090: ConnectError")
    assert seen == ["failed", "failed", "failed"]


def test_a_real_unreachable_port_is_reported_not_raised():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with PrometheusSource(f"http://127.0.0.1:{port}", timeout=0.5) as src:
        assert src.query("up").error == f"cannot reach http://127.0.0.1:{port}: ConnectError"
        assert src.is_online() is False


def test_query_series_returns_every_series_by_labels():
    body = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"code": "200"}, "value": [1700000000.5, "90"]},
        {"metric": {"code": "500"}, "value": [1700000000.5, "10"]},
    ]}}
    prom = Recorder(lambda r: httpx.Response(200, json=body))
    seen: list = []
    src = PrometheusSource("http://prom:9090", transport=httpx.MockTransport(prom),
                           observer=lambda s, outcome: seen.append(outcome))
    result = src.query_series("http_requests_total", at=1700000000.5)
    assert result == SeriesResult(series={(("code", "200"),): 90.0, (("code", "500"),): 10.0})
    assert dict(prom.requests[0].url.params) == {"query": "http_requests_total", "time": "1700000000.500"}
    assert seen == ["success"]


def test_query_series_of_nothing_is_an_empty_answer_not_an_error():
    src = PrometheusSource("http://prom:9090", transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json=vector())))
    assert src.query_series("up") == SeriesResult(series={}, error=None)


def test_query_series_folds_a_bad_answer_into_the_result():
    src = PrometheusSource("http://prom:9090", transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json={"status": "success",
                                            "data": {"resultType": "scalar", "result": [1.0, "1"]}})))
    assert src.query_series("up") == SeriesResult(
        series=None, error="expected an instant vector, got resultType 'scalar'")


def test_the_observer_gets_the_duration_of_each_query():
    def answer(request: httpx.Request) -> httpx.Response:
        time.sleep(0.05)
        return httpx.Response(200, json=vector("1"))

    timings: list = []
    src = PrometheusSource("http://prom:9090", transport=httpx.MockTransport(answer),
                           observer=lambda seconds, outcome: timings.append((seconds, outcome)))
    src.query("up")
    ((seconds, outcome),) = timings
    assert outcome == "success"
    assert 0.05 <= seconds < 2.0


def test_queries_work_without_an_observer():
    src = PrometheusSource("http://prom:9090", transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json=vector("2"))))
    assert src.query("up").value == 2.0
    assert src.query_series("up").series == {(): 2.0}


def test_is_online_asks_the_readiness_endpoint():
    prom = Recorder(lambda r: httpx.Response(200 if r.url.path == "/-/ready" else 404))
    src = PrometheusSource("http://prom:9090/", transport=httpx.MockTransport(prom))
    assert src.is_online() is True
    assert [(r.method, r.url.path) for r in prom.requests] == [("GET", "/-/ready")]


@pytest.mark.parametrize("status", [204, 301, 500, 503])
def test_is_online_only_for_a_ready_answer(status):
    src = PrometheusSource("http://prom:9090", transport=httpx.MockTransport(lambda r: httpx.Response(status)))
    assert src.is_online() is False


@pytest.mark.parametrize("failure", [httpx.ConnectError, httpx.ReadTimeout])
def test_an_unreachable_prometheus_is_not_online(failure):
    def fail(request: httpx.Request) -> httpx.Response:
        raise failure("down", request=request)

    src = PrometheusSource("http://prom:9090", transport=httpx.MockTransport(fail))
    assert src.is_online() is False


class ClosingTransport(httpx.MockTransport):
    closed = False

    def close(self) -> None:
        self.closed = True


def test_leaving_the_context_closes_the_connection():
    transport = ClosingTransport(lambda r: httpx.Response(200, json=vector("1")))
    with PrometheusSource("http://prom:9090", transport=transport) as src:
        assert isinstance(src, PrometheusSource)
        assert src.query("up").value == 1.0
        assert not transport.closed
    assert transport.closed


def test_close_closes_the_connection():
    transport = ClosingTransport(lambda r: httpx.Response(200, json=vector("1")))
    src = PrometheusSource("http://prom:9090", transport=transport)
    src.close()
    assert transport.closed


def test_a_password_in_the_url_is_sent_as_basic_auth_and_never_appears_in_errors():
    seen: list[str] = []

    def refused(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        raise httpx.ConnectError("refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    src = PrometheusSource("http://admin:s3cret@prom:9090/", transport=httpx.MockTransport(refused))
    assert src.url == "http://prom:9090"
    assert src.query("up").error == "cannot reach http://prom:9090: ConnectError"
    assert seen == ["Basic " + base64.b64encode(b"admin:s3cret").decode()]
    timed_out = PrometheusSource("http://admin:s3cret@prom:9090", transport=httpx.MockTransport(slow)).query("up")
    assert timed_out.error == "timed out querying http://prom:9090" and "s3cret" not in repr(timed_out)
