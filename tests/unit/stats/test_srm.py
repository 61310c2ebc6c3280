"""The traffic split check: hand values, quiet on an honest split, loud on a broken one."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from canaryflow.stats import srm_log_bayes_factor


@pytest.mark.parametrize(
    ("canary", "baseline", "share", "k", "expected"),
    [(0, 0, 0.1, 100.0, 1.0),     # no requests, no evidence
     (1, 0, 0.5, 2.0, 1.0),       # B(2,1)/B(1,1) = 1/2, over w = 1/2
     (2, 0, 0.5, 2.0, 4 / 3),     # B(3,1) = 1/3, over 1/4
     (1, 1, 0.5, 2.0, 2 / 3)],    # B(2,2) = 1/6, over 1/4
)
def test_known_values(canary, baseline, share, k, expected):
    value = srm_log_bayes_factor(canary, baseline, expected_share=share, concentration=k)
    assert value == pytest.approx(math.log(expected), abs=1e-12)


def test_counts_that_match_the_share_give_no_evidence_of_a_mismatch():
    assert srm_log_bayes_factor(1000, 9000, expected_share=0.1) < 0.0
    assert srm_log_bayes_factor(5000, 5000, expected_share=0.5) < 0.0


def test_an_honest_split_rarely_reaches_the_threshold():
    alpha, draws, total, share = 0.05, 2000, 10_000, 0.1
    canary = np.random.default_rng(20240615).binomial(total, share, size=draws)
    rejected = sum(srm_log_bayes_factor(int(c), total - int(c), expected_share=share) >= math.log(1 / alpha)
                   for c in canary)
    assert rejected <= binom.ppf(0.999, draws, alpha)


def test_a_threefold_shortfall_over_thousands_of_requests_is_overwhelming():
    # 10 % expected of 5,000 requests is 500; the canary got a third of that.
    assert srm_log_bayes_factor(167, 4833, expected_share=0.1) > math.log(1000)
    assert srm_log_bayes_factor(1500, 3500, expected_share=0.1) > math.log(1000)  # and a 3x surplus


def test_the_factor_grows_with_the_shortfall():
    values = [srm_log_bayes_factor(c, 5000 - c, expected_share=0.1) for c in (500, 400, 300, 200, 100)]
    assert all(later > earlier for earlier, later in zip(values, values[1:], strict=False))


def test_swapping_the_arms_and_the_share_changes_nothing():
    assert srm_log_bayes_factor(300, 2700, expected_share=0.2) == pytest.approx(
        srm_log_bayes_factor(2700, 300, expected_share=0.8), rel=1e-12
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"expected_share": 0.0}, "expected_share"), ({"expected_share": 1.0}, "expected_share"),
     ({"expected_share": 0.1, "concentration": 0.0}, "concentration"),
     ({"expected_share": math.nan}, "expected_share")],
)
def test_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        srm_log_bayes_factor(10, 90, **kwargs)


@pytest.mark.parametrize(("canary", "baseline", "message"),
                         [(-1, 9, "non-negative"), (1.5, 9, "integer"), ([1], [9], "scalar")])
def test_bad_counts_are_refused(canary, baseline, message):
    with pytest.raises(ValueError, match=message):
        srm_log_bayes_factor(canary, baseline, expected_share=0.1)
