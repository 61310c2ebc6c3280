"""What a promotion is worth: the detectable regression, checked against independent simulations
and exact binomial sums, and the way it moves with traffic."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from canaryflow.stats import RatioGrid, credibly_above, detectable_rate, detectable_ratio, prior_b, ratio_log_eprocess

CANDIDATES = (1.25, 1.5, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 100)


def release_traffic(rounds, canary_rate, seed=5):
    """Per-round requests of a canary at 10 % (5 s rounds), as the judge would have seen them."""
    rng = np.random.default_rng(seed)
    return rng.poisson(canary_rate * 5, size=rounds), rng.poisson(canary_rate * 45, size=rounds)


def rollback_share(ratio, canary_requests, baseline_requests, *, baseline_rate, alpha, runs, seed):
    """An independent estimate: binomial events (not the function's coupled Poisson draws)."""
    rng = np.random.default_rng(seed)
    shape = (runs, canary_requests.size)
    canary_events = rng.binomial(canary_requests, min(1.0, ratio * baseline_rate), size=shape)
    baseline_events = rng.binomial(baseline_requests, baseline_rate, size=shape)
    log_e = ratio_log_eprocess(canary_events, baseline_events, canary_requests, baseline_requests)
    return float(np.mean(log_e.max(axis=-1) >= math.log(1 / alpha)))


# -- detectable_ratio --------------------------------------------------------------------------------------

def test_the_detectable_ratio_is_the_first_candidate_caught_often_enough():
    canary_requests, baseline_requests = release_traffic(120, canary_rate=2.0)
    simulations, probability, check_runs = 1000, 0.9, 2000
    ratio = detectable_ratio(canary_requests, baseline_requests, baseline_rate=0.002, alpha=0.01,
                             simulations=simulations, probability=probability)
    assert ratio is not None and ratio > CANDIDATES[0]
    previous = CANDIDATES[CANDIDATES.index(ratio) - 1]
    # Three standard errors of both Monte Carlo estimates (the function's and this one).
    margin = 3 * math.sqrt(probability * (1 - probability)) * (simulations ** -0.5 + check_runs ** -0.5)
    kwargs = dict(baseline_rate=0.002, alpha=0.01, runs=check_runs, seed=99)
    assert rollback_share(ratio, canary_requests, baseline_requests, **kwargs) >= probability - margin
    assert rollback_share(previous, canary_requests, baseline_requests, **kwargs) <= probability + margin


def test_more_traffic_makes_smaller_regressions_detectable():
    ratios = []
    for canary_rate in (2.0, 8.0, 32.0):
        canary_requests, baseline_requests = release_traffic(200, canary_rate)
        ratios.append(detectable_ratio(canary_requests, baseline_requests, baseline_rate=0.001, alpha=0.01))
    assert None not in ratios
    assert ratios[0] >= ratios[1] >= ratios[2] and ratios[0] > ratios[2]


def test_the_answer_is_deterministic_for_a_seed():
    canary_requests, baseline_requests = release_traffic(100, canary_rate=4.0)
    first = detectable_ratio(canary_requests, baseline_requests, baseline_rate=0.001, alpha=0.01, seed=3)
    assert first == detectable_ratio(canary_requests, baseline_requests, baseline_rate=0.001, alpha=0.01, seed=3)


def test_a_tolerance_makes_regressions_harder_to_prove():
    canary_requests, baseline_requests = release_traffic(200, canary_rate=8.0)
    plain = detectable_ratio(canary_requests, baseline_requests, baseline_rate=0.001, alpha=0.01)
    tolerant = detectable_ratio(canary_requests, baseline_requests, baseline_rate=0.001, alpha=0.01, tolerance=2.0,
                                grid=RatioGrid(low=2.5))
    assert plain is not None and tolerant is not None and tolerant > plain


@pytest.mark.parametrize(
    ("canary_requests", "baseline_requests", "baseline_rate"),
    [([1, 1, 1], [9, 9, 9], 0.001), ([], [], 0.001), ([100] * 50, [900] * 50, 0.0)],
)
def test_no_candidate_is_detectable_without_enough_traffic_or_errors(canary_requests, baseline_requests, baseline_rate):
    assert detectable_ratio(canary_requests, baseline_requests, baseline_rate=baseline_rate, alpha=0.01) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"canary_requests": [1, 2], "baseline_requests": [3]}, "one length"),
     ({"alpha": 1.5}, "alpha"), ({"baseline_rate": -0.1}, "baseline_rate"), ({"probability": 0.0}, "probability"),
     ({"candidates": ()}, "candidates"), ({"candidates": (2, -1)}, "candidates"), ({"simulations": 0}, "simulations"),
     ({"canary_requests": [1.5, 2], "baseline_requests": [3, 4]}, "integer")],
)
def test_detectable_ratio_refuses_bad_input(kwargs, message):
    call = dict(canary_requests=[10, 10], baseline_requests=[90, 90], baseline_rate=0.01, alpha=0.01) | kwargs
    with pytest.raises(ValueError, match=message):
        detectable_ratio(call.pop("canary_requests"), call.pop("baseline_requests"), **call)


# -- detectable_rate --------------------------------------------------------------------------------------------

def fire_probability(rate, trials, *, limit, alpha, b):
    """Exact: the binomial probability of every count at which the guard rail fires."""
    return sum(binom.pmf(y, trials, rate) for y in range(trials + 1)
               if credibly_above(y, trials, limit, alpha=alpha, b=b))


@pytest.mark.parametrize(("trials", "limit", "alpha"), [(300, 0.01, 0.01), (1000, 0.01, 0.01), (200, 0.1, 0.05)])
def test_the_detectable_rate_is_where_the_guard_rail_fires_with_the_asked_probability(trials, limit, alpha):
    rate = detectable_rate(trials, limit=limit, alpha=alpha)
    assert rate is not None and limit < rate < 1.0
    b = prior_b(limit)
    assert fire_probability(rate, trials, limit=limit, alpha=alpha, b=b) >= 0.9 - 1e-9
    assert fire_probability(rate * 0.995, trials, limit=limit, alpha=alpha, b=b) < 0.9


def test_more_trials_make_lower_rates_detectable():
    rates = [detectable_rate(trials, limit=0.01, alpha=0.01) for trials in (100, 300, 1000, 3000, 10000)]
    assert None not in rates
    assert all(later < earlier for earlier, later in zip(rates, rates[1:], strict=False))
    assert rates[-1] < 0.02


def test_the_default_prior_is_prior_b_of_the_limit():
    assert detectable_rate(500, limit=0.01, alpha=0.01) == detectable_rate(500, limit=0.01, alpha=0.01, b=100.0)
    assert detectable_rate(500, limit=0.01, alpha=0.01) != detectable_rate(500, limit=0.01, alpha=0.01, b=1000.0)


@pytest.mark.parametrize(("trials", "limit"), [(0, 0.01), (2, 0.5), (1, 0.01)])
def test_no_rate_is_detectable_when_even_all_failures_prove_nothing(trials, limit):
    assert detectable_rate(trials, limit=limit, alpha=0.01) is None


def test_five_percent_errors_are_detectable_against_a_one_percent_limit_after_a_few_hundred_requests():
    first = next(n for n in range(10, 2000, 5) if (detectable_rate(n, limit=0.01, alpha=0.01) or 1.0) <= 0.05)
    print(f"5 % vs 1 % limit, alpha 0.01, b=100: fires with 90 % probability at {first} canary requests")
    assert 100 <= first <= 600
