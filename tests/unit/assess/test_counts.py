"""Counter snapshots to integer counts: per-series differences, resets, new series, histograms."""

from __future__ import annotations

import math

import pytest

from canaryflow.assess.counts import Counts, Histogram, bucket_increase, counts, increase, series_key

A = series_key({"code": "200", "instance": "a"})
B = series_key({"code": "500", "instance": "a"})


def test_increase_is_the_sum_of_per_series_differences():
    assert increase({A: 100, B: 3}, {A: 150, B: 5}) == 52


def test_a_series_that_went_down_was_reset_and_counts_its_new_value():
    assert increase({A: 100}, {A: 7}) == 7


def test_a_new_series_counts_from_zero_and_a_vanished_one_counts_nothing():
    assert increase({A: 100}, {A: 100, B: 4}) == 4
    assert increase({A: 100, B: 9}, {A: 110}) == 10


def test_nothing_before_means_everything_is_new_and_non_finite_samples_are_ignored():
    assert increase(None, {A: 5, B: math.nan}) == 5


def test_counts_round_and_never_let_events_exceed_requests():
    assert counts(10.4, 2.6) == Counts(10, 3)
    assert counts(3, 5) == Counts(3, 3)  # scrape skew between two series of one target
    with pytest.raises(ValueError):
        Counts(-1, 0)


def test_bucket_increase_groups_by_le_across_series():
    before = {series_key({"le": "0.1", "path": "/a"}): 10, series_key({"le": "+Inf", "path": "/a"}): 12}
    after = {series_key({"le": "0.1", "path": "/a"}): 15, series_key({"le": "+Inf", "path": "/a"}): 20,
             series_key({"le": "0.1", "path": "/b"}): 1, series_key({"le": "+Inf", "path": "/b"}): 2}
    assert bucket_increase(before, after) == {0.1: 6, math.inf: 10}


def test_histogram_slow_counts_quantile_and_addition():
    h = Histogram.from_increase({0.05: 80, 0.1: 95, 0.2: 99, math.inf: 100})
    assert h.requests == 100
    assert h.slower_than(0.1) == Counts(100, 5)
    assert h.quantile(0.5) == pytest.approx(0.05 * 50 / 80)
    assert (h + h).slower_than(0.05) == Counts(200, 40)
    with pytest.raises(ValueError):
        h + Histogram.from_increase({0.5: 1, math.inf: 1})


def test_histogram_repairs_a_bucket_that_scrape_skew_made_decrease():
    h = Histogram.from_increase({0.05: 81, 0.1: 80, math.inf: 100})
    assert [c for _, c in h.buckets] == [81, 81, 100]
