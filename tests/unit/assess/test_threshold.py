"""Plain threshold metrics: bounds, failure limit, no data, errors."""

from __future__ import annotations

from canaryflow.analysis_spec import ThresholdMetric
from canaryflow.assess.threshold import assess_threshold
from canaryflow.judge import QueryResult, Reason, Verdict

ORDERS = ThresholdMetric(name="orders", query='sum(rate(orders_total{version="$version"}[$window]))', min=10,
                         failure_limit=1)


def fold(values):
    state, out = None, []
    for value in values:
        m = assess_threshold(ORDERS, observed=value, previous=state)
        state = m.state
        out.append(m)
    return out


def test_within_bounds_passes_with_the_value():
    (m,) = fold([QueryResult(12.0)])
    assert (m.verdict, m.value, m.detail) == (Verdict.PASS, 12.0, "orders: 12 within >= 10")


def test_breaches_are_tolerated_up_to_the_failure_limit_then_fail():
    first, second = fold([QueryResult(3.0), QueryResult(4.0)])
    assert first.verdict is Verdict.INCONCLUSIVE and "breach 1, 1 tolerated" in first.detail
    assert (second.verdict, second.reason) == (Verdict.FAIL, Reason.THRESHOLD_BREACHED)


def test_no_data_and_nan_are_inconclusive_never_pass():
    empty, nan = fold([QueryResult(None), QueryResult(float("nan"))])
    assert empty.verdict is nan.verdict is Verdict.INCONCLUSIVE
    assert "no data (nan)" in nan.detail


def test_an_error_is_an_error():
    (m,) = fold([QueryResult(error="cannot reach http://prom")])
    assert m.verdict is Verdict.ERROR and "cannot reach" in m.detail
