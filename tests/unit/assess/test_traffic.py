"""The traffic-split check: the step's request counts against the routed share."""

from __future__ import annotations

from canaryflow.assess.counts import Counts
from canaryflow.assess.traffic import assess_traffic
from canaryflow.judge import Reason, Verdict


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
