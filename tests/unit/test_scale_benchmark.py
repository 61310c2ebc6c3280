"""The scale benchmark's pure parts: late and missed analysis rounds, percentiles, Prometheus'
counter as text (benchmarks/scale.py; the benchmark itself is not part of the suite)."""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from benchmarks.scale import cpu_times, late_and_missed, parse_counter, percentile, phase_seconds, round_gaps


def test_rounds_are_the_distinct_elapsed_times_of_each_step_and_gaps_stay_within_a_step():
    rows = [{"step": 1, "elapsed_s": 0.1, "metric": "error_rate"}, {"step": 1, "elapsed_s": 0.1, "metric": "p95"},
            {"step": 1, "elapsed_s": 1.2}, {"step": 1, "elapsed_s": 2.2},
            {"step": 2, "elapsed_s": 0.0}, {"step": 2, "elapsed_s": 3.5}, {"step": 2, "elapsed_s": None}]
    assert [round(g, 6) for g in round_gaps(rows)] == [1.1, 1.0, 3.5]  # never across steps (2.2 -> 0.0)
    assert round_gaps([]) == []


def test_a_round_is_late_beyond_one_interval_past_due_and_each_whole_interval_is_a_missed_round():
    assert late_and_missed([1.0, 1.4, 2.0], interval=1.0) == (0, 0)  # on time, or less than one interval past due
    assert late_and_missed([2.01], interval=1.0) == (1, 1)
    assert late_and_missed([3.5, 1.0, 4.0], interval=1.0) == (2, 5)  # 2.5 and 3 intervals past due
    assert late_and_missed([1.1], interval=0.5) == (1, 1)
    assert late_and_missed([], interval=1.0) == (0, 0)


def test_percentile_is_the_nearest_rank():
    values = list(range(1, 101))
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)) == (50, 99, 100)
    assert percentile([7.0], 0.99) == 7.0 and percentile(reversed(values), 0.0) == 1
    assert math.isnan(percentile([], 0.5))


def test_the_query_counter_is_summed_over_the_matching_handlers():
    text = "\n".join([
        "# HELP prometheus_http_requests_total Counter of HTTP requests.",
        'prometheus_http_requests_total{code="200",handler="/api/v1/query"} 120',
        'prometheus_http_requests_total{code="400",handler="/api/v1/query"} 3',
        'prometheus_http_requests_total{code="200",handler="/api/v1/query_range"} 7',
        'prometheus_http_requests_total{code="200",handler="/metrics"} 50',
        'prometheus_http_requests_total_other{code="200",handler="/api/v1/query"} 1000'])
    queries = parse_counter(text, "prometheus_http_requests_total",
                            lambda labels: labels["handler"] in ("/api/v1/query", "/api/v1/query_range"))
    assert queries == 130


def test_each_run_splits_into_its_wait_for_running_and_the_release_itself():
    created = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    runs = [SimpleNamespace(created=created, start_time=created + timedelta(seconds=9),
                            end_time=created + timedelta(seconds=30)),
            SimpleNamespace(created=created, start_time=created + timedelta(seconds=2), end_time=None),
            SimpleNamespace(created=created, start_time=None, end_time=None)]  # never started
    assert phase_seconds(runs) == ([9.0, 2.0], [21.0])


def test_cpu_times_are_busy_within_total_and_grow():
    busy, total = cpu_times()
    later_busy, later_total = cpu_times()
    assert 0 <= busy <= total and later_busy >= busy and later_total >= total


def test_importing_the_benchmark_leaves_the_environment_alone():
    """The tests import it for its pure parts; a log level set at import would reach every Prefect
    worker a later test starts from this process."""
    import subprocess
    import sys
    from pathlib import Path

    probe = "import os; before = dict(os.environ); import benchmarks.scale; print(dict(os.environ) == before)"
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_LOGGING")}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=root, env=env)
    assert out.stdout.strip() == "True"
