"""Prometheus as a metric source: instant queries that never mistake "no data" for a value.

Built on httpx rather than a heavier client because the judge needs the exact distinctions the
HTTP API makes: an error status, an empty vector, NaN and +/-Inf sent as strings, and a timeout
are different answers and lead to different verdicts. Pass ``transport=`` to swap the network.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from canaryflow.assess.counts import SeriesKey, series_key
from canaryflow.errors import MetricSourceError, safe_url
from canaryflow.judge import QueryResult

#: Called after every query with (seconds, outcome) where outcome is success | failed | timeout.
QueryObserver = Callable[[float, str], None]


def parse_sample(raw: Any) -> float:
    """Prometheus sends sample values as strings: "1.5", "NaN", "+Inf", "-Inf"."""
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise MetricSourceError(f"sample value {raw!r} is not a number") from None


def parse_instant(body: Any) -> float | None:
    """Turn an ``/api/v1/query`` body into one value, ``None`` for an empty vector.

    More than one series is an error: analysis queries must aggregate to a single number, and
    picking one series at random would judge the wrong thing.
    """
    if not isinstance(body, dict) or body.get("status") != "success":
        err = body.get("error", "unknown error") if isinstance(body, dict) else "not a JSON object"
        kind = body.get("errorType", "error") if isinstance(body, dict) else "bad_data"
        raise MetricSourceError(f"query failed ({kind}): {err}")
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return parse_sample(result[1])
    if kind != "vector" or not isinstance(result, list):
        raise MetricSourceError(f"expected an instant vector, got resultType {kind!r}")
    if not result:
        return None
    if len(result) > 1:
        raise MetricSourceError(f"query returned {len(result)} series; aggregate it to one (e.g. sum(...))")
    try:
        return parse_sample(result[0]["value"][1])
    except (KeyError, IndexError, TypeError):
        raise MetricSourceError("malformed sample in vector result") from None


def parse_series(body: Any) -> dict[SeriesKey, float]:
    """Every series of an instant vector, by its labels: raw counters are read series by series."""
    if not isinstance(body, dict) or body.get("status") != "success":
        err = body.get("error", "unknown error") if isinstance(body, dict) else "not a JSON object"
        kind = body.get("errorType", "error") if isinstance(body, dict) else "bad_data"
        raise MetricSourceError(f"query failed ({kind}): {err}")
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind != "vector" or not isinstance(result, list):
        raise MetricSourceError(f"expected an instant vector, got resultType {kind!r}")
    series: dict[SeriesKey, float] = {}
    for item in result:
        try:
            labels, value = item["metric"], item["value"][1]
        except (KeyError, IndexError, TypeError):
            raise MetricSourceError("malformed sample in vector result") from None
        if not isinstance(labels, dict):
            raise MetricSourceError("malformed labels in vector result")
        series[series_key({str(k): str(v) for k, v in labels.items()})] = parse_sample(value)
    return series


@dataclass(frozen=True)
class SeriesResult:
    """Every series a query answered (``{}`` for an empty vector), or the error instead."""

    series: dict[SeriesKey, float] | None = None
    error: str | None = None


class PrometheusSource:
    """``MetricSource`` over the Prometheus HTTP API: ``query`` and ``is_online``."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        observer: QueryObserver | None = None,
    ) -> None:
        base = url.rstrip("/")
        # Messages name the server without the user and password a URL may carry (httpx sends them
        # as Basic auth): an error text ends up in logs, run states and artifacts.
        self.url = safe_url(base)
        self._client = httpx.Client(base_url=base, timeout=timeout, transport=transport)
        self._observer = observer

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrometheusSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def is_online(self) -> bool:
        try:
            return self._client.get("/-/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def _get(self, promql: str, at: float | None, parse: Callable[[Any], Any]) -> Any:
        """One instant query at ``at`` (Unix time; now if None); raises ``MetricSourceError`` for
        anything that is not an answer."""
        started = time.monotonic()
        outcome = "failed"
        params: dict[str, str] = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            response = self._client.get("/api/v1/query", params=params)
            try:
                body = response.json()
            except ValueError:
                raise MetricSourceError(f"HTTP {response.status_code} without a JSON body") from None
            value = parse(body)
            outcome = "success"
            return value
        except httpx.TimeoutException:
            outcome = "timeout"
            raise MetricSourceError(f"timed out querying {self.url}", kind="timeout") from None
        except httpx.HTTPError as exc:
            raise MetricSourceError(f"cannot reach {self.url}: {type(exc).__name__}") from None
        finally:
            if self._observer is not None:
                self._observer(time.monotonic() - started, outcome)

    def query_value(self, promql: str, *, at: float | None = None) -> float | None:
        return self._get(promql, at, parse_instant)

    def query(self, promql: str, *, at: float | None = None) -> QueryResult:
        """Like ``query_value`` but folds failures into the result, as the judge expects."""
        try:
            value = self.query_value(promql, at=at)
        except MetricSourceError as exc:
            return QueryResult(error=str(exc))
        return QueryResult(value=value)  # NaN/Inf kept as is: the judge reports them as no data

    def query_series(self, promql: str, *, at: float | None = None) -> SeriesResult:
        """Every series of a raw counter selector, by labels; failures folded into the result."""
        try:
            return SeriesResult(series=self._get(promql, at, parse_series))
        except MetricSourceError as exc:
            return SeriesResult(error=str(exc))
