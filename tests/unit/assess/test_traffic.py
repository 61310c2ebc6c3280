"""The traffic-split check: the step's request counts against the routed share."""

from __future__ import annotations

import math

import pytest

from canaryflow.assess.counts import Counts
from canaryflow.assess.traffic import assess_traffic
from canaryflow.judge import Reason, Verdict
from canaryflow.stats import srm_log_bayes_factor


def fold(rounds, *, share=0.1, step_index=0, spans=(30.0, 30.0)):
    state, m = None, None
    for canary, baseline in rounds:
        m = assess_traffic(canary=Counts(canary, 0), baseline=Counts(baseline, 0), expected_share=share,
                           previous=state, step_index=step_index, alpha=0.001, concentration=100, spans=spans)
        state = m.state
    return m


def test_the_first_round_of_a_step_is_not_counted():
    m = fold([(5, 995)])
    assert m.verdict is Verdict.INCONCLUSIVE and m.state.canary == 0


def test_a_matching_split_passes():
    m = fold([(0, 0)] + [(98, 902)] * 10)
    assert m.verdict is Verdict.PASS and "9.80% (980/10,000)" in m.detail


def test_a_canary_getting_a_fifth_of_its_weight_fails():
    m = fold([(0, 0)] + [(20, 980)] * 5)
    assert (m.verdict, m.reason) == (Verdict.FAIL, Reason.TRAFFIC_MISMATCH)
    assert "where the router sends 10.00%" in m.detail and m.evidence >= 1000


def test_nothing_to_check_at_full_weight():
    m = fold([(0, 0), (1000, 0)], share=1.0)
    assert m.verdict is Verdict.PASS and "not checked" in m.detail


def test_missing_counts_are_an_error():
    m = assess_traffic(canary=None, baseline=None, expected_share=0.1, previous=None, step_index=0,
                       alpha=0.001, concentration=100)
    assert m.verdict is Verdict.ERROR


def test_scrape_skew_is_not_a_routing_fault():
    # The baseline's target was scraped 15 s later each time than the canary's first sample: its
    # counts cover 45 s where the canary's cover 30 s. Counts alone say 6.9 %; rates say 10 %.
    m = fold([(0, 0)] + [(300, 4050)] * 10, spans=(30.0, 45.0))
    assert m.verdict is Verdict.PASS and "10.00% (3,000/30,000)" in m.detail


def test_rounds_without_sample_times_are_left_out():
    m = fold([(0, 0)] + [(20, 980)] * 5, spans=(None, None))
    assert m.verdict is Verdict.INCONCLUSIVE and m.state.canary == 0


def counted(rounds, *, share=0.1, alpha=0.001, concentration=100, spans=(30.0, 30.0)):
    """The measurement after a step's first round (left out) and then ``rounds`` of counts."""
    state = assess_traffic(canary=Counts(0, 0), baseline=Counts(0, 0), expected_share=share, previous=None,
                           step_index=0, alpha=alpha, concentration=concentration, spans=spans).state
    m = None
    for canary, baseline in rounds:
        m = assess_traffic(canary=Counts(canary, 0), baseline=Counts(baseline, 0), expected_share=share,
                           previous=state, step_index=0, alpha=alpha, concentration=concentration, spans=spans)
        state = m.state
    return m


def test_a_passing_split_reports_the_share_the_counts_and_the_evidence():
    m = fold([(0, 0)] + [(98, 902)] * 10)
    assert m.detail == "traffic_split: canary got 9.80% (980/10,000) of requests, 10.00% routed"
    assert (m.metric, m.verdict, m.unit, m.reason) == ("traffic_split", Verdict.PASS, "share",
                                                       Reason.TRAFFIC_MISMATCH)
    assert m.value == pytest.approx(0.098) and m.threshold == 0.1
    assert (m.requests, m.baseline_requests) == (980, 9020)
    assert m.evidence == pytest.approx(math.exp(srm_log_bayes_factor(980, 9020, expected_share=0.1,
                                                                     concentration=100)))
    assert m.evidence_threshold == 1000


def test_a_failing_split_says_what_the_router_sends_and_the_evidence_against_it():
    m = fold([(0, 0)] + [(20, 980)] * 5)
    assert m.detail == ("traffic_split: canary got 2.00% (100/5,000) of requests where the router sends 10.00% "
                        "— Bayes factor 1.8e+107 >= 1,000")
    assert m.value == pytest.approx(0.02) and (m.requests, m.baseline_requests) == (100, 4900)
    assert m.evidence_threshold == 1000


def test_the_evidence_threshold_is_one_over_alpha():
    m = counted([(98, 902)], alpha=0.01)
    assert m.evidence_threshold == pytest.approx(100)


def test_a_bayes_factor_exactly_at_the_threshold_fails():
    log_bf = srm_log_bayes_factor(30, 970, expected_share=0.1, concentration=100)
    alphas = (math.nextafter(math.exp(-log_bf), 0), math.exp(-log_bf), math.nextafter(math.exp(-log_bf), 1))
    alpha = next(a for a in alphas if math.log(1 / a) == log_bf)
    assert counted([(30, 970)], alpha=alpha).verdict is Verdict.FAIL


def test_the_prior_concentration_shapes_the_evidence():
    m = counted([(98, 902)], concentration=10)
    assert m.evidence == pytest.approx(math.exp(srm_log_bayes_factor(98, 902, expected_share=0.1,
                                                                     concentration=10)))


def test_overwhelming_evidence_is_capped_to_stay_a_finite_number():
    m = counted([(0, 10_000)] * 3, share=0.5)
    assert m.verdict is Verdict.FAIL and m.evidence == math.exp(690.0)
    assert m.detail == ("traffic_split: canary got 0.00% (0/30,000) of requests where the router sends 50.00% "
                        "— Bayes factor 4.6e+299 >= 1,000")


def test_the_baseline_requests_are_reported_raw_while_the_share_uses_the_aligned_count():
    m = fold([(0, 0)] + [(300, 4050)] * 10, spans=(30.0, 45.0))
    assert (m.requests, m.baseline_requests) == (3000, 40500)
    assert m.value == pytest.approx(0.1)


def test_an_even_split_with_equal_counts_is_checked_and_passes():
    m = counted([(500, 500)], share=0.5)
    assert m.detail == "traffic_split: canary got 50.00% (500/1,000) of requests, 50.00% routed"
    assert m.verdict is Verdict.PASS and m.value == pytest.approx(0.5) and m.evidence is not None


def test_nothing_to_check_with_no_traffic_routed_to_the_canary():
    m = counted([(5, 5)], share=0.0)
    assert (m.verdict, m.detail) == (Verdict.PASS, "traffic_split: not checked with 0.00% routed to the canary")
    assert m.evidence is None


@pytest.mark.parametrize("canary,baseline", [(None, Counts(900, 0)), (Counts(100, 0), None), (None, None)])
def test_a_missing_count_of_either_version_is_an_error(canary, baseline):
    state = counted([(100, 900)]).state
    m = assess_traffic(canary=canary, baseline=baseline, expected_share=0.1, previous=state, step_index=0,
                       alpha=0.001, concentration=100, spans=(30.0, 30.0))
    assert (m.verdict, m.detail) == (Verdict.ERROR, "traffic_split: no request counts this round")
    assert m.state == state and m.evidence is None


def test_the_first_round_of_a_step_says_it_is_not_counted():
    m = fold([(5, 995)])
    assert m.detail == "traffic_split: first round at 10.00% routed, not counted"
    assert m.value is None and m.evidence is None


def test_a_step_change_starts_the_counts_afresh():
    state = counted([(20, 980)] * 5).state
    m = assess_traffic(canary=Counts(500, 0), baseline=Counts(500, 0), expected_share=0.5, previous=state,
                       step_index=1, alpha=0.001, concentration=100, spans=(30.0, 30.0))
    assert m.verdict is Verdict.INCONCLUSIVE and m.state.step_index == 1 and m.state.canary == 0
    assert m.detail == "traffic_split: first round at 50.00% routed, not counted"


def test_no_requests_yet_is_inconclusive_and_says_so():
    m = counted([(0, 0)])
    assert (m.verdict, m.detail) == (Verdict.INCONCLUSIVE, "traffic_split: no requests yet at 10.00% routed")
    assert m.value is None


@pytest.mark.parametrize("spans", [(30.0, None), (None, 30.0), (0.0, 30.0)])
def test_a_round_missing_either_sample_span_is_left_out(spans):
    m = counted([(20, 980)] * 5, spans=spans)
    assert m.verdict is Verdict.INCONCLUSIVE and (m.state.canary, m.state.baseline) == (0, 0)
