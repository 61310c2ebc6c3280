from __future__ import annotations

from canaryflow.analysis import measure, next_pause
from canaryflow.judge import QueryResult, Verdict
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
