"""Plain threshold metrics: bounds, failure limit, no data, errors."""

from __future__ import annotations

from canaryflow.analysis_spec import ThresholdMetric
from canaryflow.assess.threshold import ThresholdState, assess_threshold
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


QUEUE = ThresholdMetric(name="queue_depth", query='max(queue_depth{version="$version"})', max=50)
BAND = ThresholdMetric(name="conversion", query='avg(conversion{version="$version"})', min=0.2, max=0.8,
                       failure_limit=2)


def fields(m):
    return (m.metric, m.verdict, m.value, m.threshold, m.unit, m.requests, m.detail, m.reason)


def test_a_passing_round_reports_every_field_and_keeps_the_breach_count():
    (m,) = fold([QueryResult(12.0)])
    assert fields(m) == ("orders", Verdict.PASS, 12.0, 10, "value", None, "orders: 12 within >= 10",
                         Reason.THRESHOLD_BREACHED)
    assert m.state == ThresholdState(0)


def test_a_breach_reports_the_value_the_count_and_the_tolerance():
    (m,) = fold([QueryResult(3.0)])
    assert fields(m) == ("orders", Verdict.INCONCLUSIVE, 3.0, 10, "value", None,
                         "orders: 3 outside >= 10 (breach 1, 1 tolerated)", Reason.THRESHOLD_BREACHED)
    assert m.state == ThresholdState(1)


def test_a_failing_breach_still_reports_its_value():
    *_, m = fold([QueryResult(3.0), QueryResult(4.5)])
    assert (m.verdict, m.value, m.detail) == (Verdict.FAIL, 4.5, "orders: 4.5 outside >= 10 (breach 2, 1 tolerated)")


def test_the_bounds_themselves_pass():
    (at_min,) = fold([QueryResult(10.0)])
    assert (at_min.verdict, at_min.detail) == (Verdict.PASS, "orders: 10 within >= 10")
    at_max = assess_threshold(QUEUE, observed=QueryResult(50.0), previous=None)
    assert (at_max.verdict, at_max.detail) == (Verdict.PASS, "queue_depth: 50 within <= 50")


def test_a_max_only_metric_reports_its_max_as_the_threshold():
    ok = assess_threshold(QUEUE, observed=QueryResult(7.0), previous=None)
    assert fields(ok) == ("queue_depth", Verdict.PASS, 7.0, 50, "value", None, "queue_depth: 7 within <= 50",
                          Reason.THRESHOLD_BREACHED)
    over = assess_threshold(QUEUE, observed=QueryResult(51.0), previous=None)
    assert (over.verdict, over.threshold, over.detail) == (
        Verdict.FAIL, 50, "queue_depth: 51 outside <= 50 (breach 1, 0 tolerated)")


def test_a_metric_with_both_bounds_names_both_and_reports_the_max_as_the_threshold():
    inside = assess_threshold(BAND, observed=QueryResult(0.5), previous=None)
    assert (inside.verdict, inside.threshold, inside.detail) == (
        Verdict.PASS, 0.8, "conversion: 0.5 within >= 0.2 and <= 0.8")
    below = assess_threshold(BAND, observed=QueryResult(0.1), previous=None)
    above = assess_threshold(BAND, observed=QueryResult(0.9), previous=below.state)
    assert (below.verdict, below.detail) == (
        Verdict.INCONCLUSIVE, "conversion: 0.1 outside >= 0.2 and <= 0.8 (breach 1, 2 tolerated)")
    assert (above.verdict, above.detail) == (
        Verdict.INCONCLUSIVE, "conversion: 0.9 outside >= 0.2 and <= 0.8 (breach 2, 2 tolerated)")


def test_an_empty_result_is_no_data_and_reports_no_value():
    (m,) = fold([QueryResult(None)])
    assert fields(m) == ("orders", Verdict.INCONCLUSIVE, None, 10, "value", None, "orders: no data (empty result)",
                         Reason.THRESHOLD_BREACHED)


def test_an_error_reports_the_source_failure_and_no_value():
    (m,) = fold([QueryResult(error="cannot reach http://prom")])
    assert fields(m) == ("orders", Verdict.ERROR, None, 10, "value", None,
                         "orders: metric source failed: cannot reach http://prom", Reason.THRESHOLD_BREACHED)


def test_breaches_count_over_the_release_through_passes_gaps_and_errors():
    """The failure limit is a total, as Argo's failureLimit: rounds between breaches do not reset it."""
    for between in (QueryResult(12.0), QueryResult(None), QueryResult(error="timeout")):
        _, middle, second = fold([QueryResult(3.0), between, QueryResult(4.0)])
        assert middle.state == ThresholdState(1)
        assert (second.verdict, second.state) == (Verdict.FAIL, ThresholdState(2))
        assert "breach 2, 1 tolerated" in second.detail
