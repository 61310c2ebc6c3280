"""The guard rails' confidence sequence: hand values, the bounds against the no-root-finding checks,
its width, its coverage under a healthy canary, and how fast it sees a bad one."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from canaryflow.stats import (
    beta_binomial_cs,
    beta_binomial_log_martingale,
    credibly_above,
    credibly_below,
    prior_b,
)

# -- hand-computed values --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("events", "trials", "p", "b", "expected"),
    [(0, 0, 0.3, 100.0, 1.0),          # no data: M = 1
     (1, 1, 0.5, 1.0, 1.0),            # B(2,1)/B(1,1) = 1/2, over p = 1/2
     (0, 1, 0.5, 1.0, 1.0),            # B(1,2) = 1/2, over 1-p = 1/2
     (1, 2, 0.5, 1.0, 2 / 3),          # B(2,2) = 1/6, over 1/4
     (2, 2, 0.5, 3.0, 2 / 5),          # B(3,3)/B(1,3) = (1/30)/(1/3), over 1/4
     (0, 3, 0.0, 1.0, 0.25)],          # B(1,4) = 1/4, and p = 0 costs nothing without events
)
def test_log_martingale_known_values(events, trials, p, b, expected):
    assert beta_binomial_log_martingale(events, trials, p, b=b) == pytest.approx(math.log(expected), abs=1e-12)


def test_an_event_rules_out_a_zero_rate():
    assert beta_binomial_log_martingale(1, 10, 0.0, b=10.0) == math.inf


def test_the_martingale_works_elementwise_on_arrays():
    events, trials = np.array([0, 3, 7]), np.array([10, 30, 7])
    values = beta_binomial_log_martingale(events, trials, 0.2, b=5.0)
    assert values.shape == (3,)
    np.testing.assert_allclose(values, [beta_binomial_log_martingale(int(y), int(n), 0.2, b=5.0)
                                        for y, n in zip(events, trials, strict=False)])


# -- the sequence ----------------------------------------------------------------------------------

def test_no_trials_no_knowledge():
    assert beta_binomial_cs(0, 0, alpha=0.01, b=100.0) == (0.0, 1.0)


def test_no_events_leave_zero_in_and_all_events_leave_one_in():
    lower, upper = beta_binomial_cs(0, 500, alpha=0.01, b=100.0)
    assert lower == 0.0 and 0.0 < upper < 0.05
    lower, upper = beta_binomial_cs(40, 40, alpha=0.01, b=1.0)
    assert upper == 1.0 and 0.5 < lower < 1.0


@pytest.mark.parametrize(("events", "trials", "b"),
                         [(5, 100, 100.0), (1, 10, 10.0), (300, 1000, 2.0), (7, 10**7, 1000.0)])
def test_the_bounds_are_where_m_reaches_one_over_alpha(events, trials, b):
    alpha = 0.01
    lower, upper = beta_binomial_cs(events, trials, alpha=alpha, b=b)
    assert 0.0 < lower < events / trials < upper < 1.0
    for bound in (lower, upper):
        assert beta_binomial_log_martingale(events, trials, bound, b=b) == pytest.approx(math.log(1 / alpha), abs=1e-7)
    inside = beta_binomial_log_martingale(events, trials, (lower + upper) / 2, b=b)
    outside = [beta_binomial_log_martingale(events, trials, p, b=b) for p in (lower * 0.99, upper + (1 - upper) * 0.01)]
    assert inside < math.log(1 / alpha) <= min(outside)


def test_the_sequence_narrows_as_trials_grow_at_a_fixed_rate():
    widths = []
    for trials in (100, 400, 1600, 6400, 25600):
        lower, upper = beta_binomial_cs(trials // 20, trials, alpha=0.01, b=100.0)
        assert lower < 0.05 < upper
        widths.append(upper - lower)
    assert all(later < earlier for earlier, later in zip(widths, widths[1:], strict=False))


def test_a_smaller_alpha_widens_the_sequence():
    narrow = beta_binomial_cs(20, 400, alpha=0.1, b=100.0)
    wide = beta_binomial_cs(20, 400, alpha=0.001, b=100.0)
    assert wide[0] < narrow[0] and narrow[1] < wide[1]


@settings(max_examples=150, deadline=None, database=None)
@given(trials=st.integers(1, 5000), fraction=st.floats(0.0, 1.0), limit=st.floats(1e-4, 0.9),
       alpha=st.sampled_from([0.001, 0.01, 0.05]), b=st.sampled_from([1.0, 20.0, 100.0, 1000.0]))
def test_credibly_above_and_below_agree_with_the_bounds(trials, fraction, limit, alpha, b):
    events = round(fraction * trials)
    lower, upper = beta_binomial_cs(events, trials, alpha=alpha, b=b)
    assume(abs(lower - limit) > 1e-9 * limit and abs(upper - limit) > 1e-9 * limit)  # not on a bound
    assert credibly_above(events, trials, limit, alpha=alpha, b=b) == (lower > limit)
    assert credibly_below(events, trials, limit, alpha=alpha, b=b) == (upper < limit)


def test_the_checks_answer_elementwise_for_arrays_and_with_python_bools_for_scalars():
    events, trials = np.array([0, 5, 30, 30]), np.array([0, 100, 100, 3000])
    above = credibly_above(events, trials, 0.05, alpha=0.01, b=20.0)
    below = credibly_below(events, trials, 0.05, alpha=0.01, b=20.0)
    np.testing.assert_array_equal(above, [False, False, True, False])
    np.testing.assert_array_equal(below, [False, False, False, True])
    assert credibly_above(30, 100, 0.05, alpha=0.01, b=20.0) is True
    assert credibly_below(0, 0, 0.05, alpha=0.01, b=20.0) is False


def test_prior_b_is_one_over_the_limit():
    assert prior_b(0.01) == pytest.approx(100.0)
    assert prior_b(0.001) == pytest.approx(1000.0)
    assert prior_b(0.8) == pytest.approx(1.25)


@pytest.mark.parametrize(
    ("call", "message"),
    [(lambda: beta_binomial_cs(5, 4, alpha=0.01, b=1.0), "events cannot exceed trials"),
     (lambda: beta_binomial_cs(-1, 4, alpha=0.01, b=1.0), "non-negative"),
     (lambda: beta_binomial_cs(1.0, 4, alpha=0.01, b=1.0), "integer"),
     (lambda: beta_binomial_cs(1, 4, alpha=1.0, b=1.0), "alpha"),
     (lambda: beta_binomial_cs(1, 4, alpha=0.01, b=0.0), "b must be"),
     (lambda: beta_binomial_cs(1, 4, alpha=0.01, a=-1.0, b=1.0), "a must be"),
     (lambda: beta_binomial_cs([1], [4], alpha=0.01, b=1.0), "scalar"),
     (lambda: beta_binomial_log_martingale(1, 4, 1.5, b=1.0), "p is a failure rate"),
     (lambda: credibly_above(1, 4, 0.0, alpha=0.01, b=1.0), "limit"),
     (lambda: credibly_below(1, 4, 0.1, alpha=0.0, b=1.0), "alpha"),
     (lambda: prior_b(1.0), "limit")],
)
def test_bad_input_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- what the guard rail is for --------------------------------------------------------------------------

def test_a_canary_exactly_at_the_limit_is_rarely_called_either_side():
    # A/A for the guard rail: the canary's true rate IS the limit, checked after every 5 s round.
    alpha, runs, rounds, limit = 0.05, 2000, 100, 0.01
    rng = np.random.default_rng(20240613)
    requests = rng.poisson(50, size=(runs, rounds))
    trials = np.cumsum(requests, axis=-1)
    events = np.cumsum(rng.binomial(requests, limit), axis=-1)
    b = prior_b(limit)
    wrong = (credibly_above(events, trials, limit, alpha=alpha, b=b)
             | credibly_below(events, trials, limit, alpha=alpha, b=b))
    ever = wrong.any(axis=-1)
    allowed = binom.ppf(0.999, runs, alpha)  # a rate of exactly alpha exceeds this with probability 0.001
    assert ever.sum() <= allowed, f"{ever.sum()} of {runs} runs excluded the true rate (allowed {allowed})"


def test_five_percent_errors_are_credibly_over_a_one_percent_limit_within_a_few_hundred_requests():
    # Checked after every canary request; the figure (median first request at which the guard rail
    # fires) is printed for the release notes, the assertion only guards against a collapse.
    alpha, limit, runs, horizon = 0.01, 0.01, 1000, 1000
    rng = np.random.default_rng(20240614)
    events = np.cumsum(rng.random((runs, horizon)) < 0.05, axis=-1)
    fired = credibly_above(events, np.arange(1, horizon + 1), limit, alpha=alpha, b=prior_b(limit))
    assert fired.any(axis=-1).all()
    first = fired.argmax(axis=-1) + 1
    print(f"5 % vs 1 % limit, alpha 0.01, b=100: median {np.median(first):.0f} canary requests "
          f"(10-90 %: {np.percentile(first, 10):.0f}-{np.percentile(first, 90):.0f})")
    assert 50 <= np.median(first) <= 400


# -- the scalar paths the judge takes every round ----------------------------------------------------

@pytest.mark.parametrize(("events", "trials", "b"), [(1, 3, 1.0), (3, 3000, 200.0), (0, 3000, 200.0), (250, 251, 20.0),
                                                     (7, 10**7, 1000.0), (4000, 5000, 2.0)])
def test_the_bounds_are_the_roots_a_bracketing_solver_finds(events, trials, b):
    from scipy.optimize import brentq

    alpha = 0.005
    level = math.log(1 / alpha)

    def excess(p: float) -> float:
        return beta_binomial_log_martingale(events, trials, p, b=b) - level

    lower, upper = beta_binomial_cs(events, trials, alpha=alpha, b=b)
    tiny, top = float(np.finfo(float).tiny), float(np.nextafter(1.0, 0.0))
    expected_lower = (brentq(excess, tiny, events / trials, xtol=1e-300, rtol=1e-13)
                      if events and excess(tiny) > 0 else 0.0)
    expected_upper = brentq(excess, events / trials, top, xtol=1e-300, rtol=1e-13) if excess(top) > 0 else 1.0
    assert lower == pytest.approx(expected_lower, rel=1e-10) and upper == pytest.approx(expected_upper, rel=1e-10)


def test_scalar_counts_get_the_answers_arrays_get():
    events, trials = np.array([0, 1, 5, 30, 30, 2]), np.array([0, 10, 100, 100, 3000, 2])
    for limit in (0.001, 0.05, 0.5):
        above = credibly_above(events, trials, limit, alpha=0.01, b=20.0)
        below = credibly_below(events, trials, limit, alpha=0.01, b=20.0)
        for i, (y, n) in enumerate(zip(events.tolist(), trials.tolist(), strict=False)):
            assert credibly_above(y, n, limit, alpha=0.01, b=20.0) is bool(above[i])
            assert credibly_below(np.int64(y), np.int32(n), limit, alpha=0.01, b=20.0) is bool(below[i])
