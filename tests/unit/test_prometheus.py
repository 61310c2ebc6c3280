"""The metric source distinguishes every kind of answer the Prometheus HTTP API gives."""

from __future__ import annotations

import math

import httpx
import pytest

from canaryflow.errors import MetricSourceError
from canaryflow.prometheus import PrometheusSource, parse_instant


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
