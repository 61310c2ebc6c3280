"""Wave planning and the fleet summary: pure, checked exhaustively over small fleets."""

from __future__ import annotations

import itertools
import math

import pytest

from canaryflow.fleet import DEFAULT_WAVES, FleetSpec, Outcome, fleet_summary, plan_waves, should_stop, summary_markdown


def names(n: int) -> list[str]:
    return [f"s{i}" for i in range(n)]


@pytest.mark.parametrize("n, expected", [
    (1, [1]), (2, [1, 1]), (3, [1, 1, 1]), (4, [1, 1, 2]), (5, [1, 2, 2]), (8, [1, 2, 5]),
    (20, [1, 5, 14]), (50, [1, 13, 36]),
])
def test_default_waves_are_one_then_a_quarter_then_the_rest(n, expected):
    assert [len(w) for w in plan_waves(names(n))] == expected


WAVE_SHAPES = [("1",), ("rest",), ("1", "rest"), ("1", "25%", "rest"), (2, "50%"), ("10%",), (3, 3),
               ("100%",), ("1", "1", "1"), ("33.3%", "rest")]


@pytest.mark.parametrize("waves", WAVE_SHAPES)
def test_every_service_is_planned_exactly_once_in_order_for_every_fleet_size(waves):
    for n in range(1, 41):
        planned = plan_waves(names(n), waves)
        assert list(itertools.chain.from_iterable(planned)) == names(n), (n, waves)
        assert all(planned), (n, waves)  # no empty wave


@pytest.mark.parametrize("n", range(1, 41))
def test_a_percentage_is_of_the_whole_fleet_rounded_up_never_zero(n):
    planned = plan_waves(names(n), ("1", "25%", "rest"))
    if n > 1:
        assert len(planned[1]) == min(n - 1, max(1, math.ceil(n / 4)))


def test_services_beyond_the_waves_go_in_a_last_wave():
    assert plan_waves(names(5), (1, 2)) == [["s0"], ["s1", "s2"], ["s3", "s4"]]


@pytest.mark.parametrize("services, waves, message", [
    ([], DEFAULT_WAVES, "at least one service"),
    (["a", "a"], DEFAULT_WAVES, "listed twice: a"),
    (["a"], (), "at least one wave"),
    (["a"], ("rest", "1"), "'rest' can only be the last"),
    (["a"], (0,), r"waves\[0\]: a wave of 0"),
    (["a"], ("1", "0%"), r"waves\[1\]: a percentage"),
    (["a"], ("150%",), r"waves\[0\]: a percentage"),
    (["a"], ("half",), r"waves\[0\]: a wave is a count"),
    (["a"], (True,), r"waves\[0\]"),
    (["a"], (1.5,), r"waves\[0\]"),
])
def test_bad_plans_are_refused_naming_the_field(services, waves, message):
    with pytest.raises(ValueError, match=message):
        plan_waves(services, waves)


def spec(**changes) -> FleetSpec:
    return FleetSpec.model_validate({"version": "v2", "services": ["a", "b", "c"], **changes})


def test_the_spec_refuses_a_bad_wave_and_per_service_fields():
    with pytest.raises(ValueError, match="rest"):
        spec(waves=["rest", 1])
    with pytest.raises(ValueError, match="spec cannot set service, version"):
        spec(spec={"service": "x", "version": "v9"})
    with pytest.raises(ValueError, match="'Bad_Name'"):
        spec(services=["Bad_Name"])
    with pytest.raises(ValueError, match="max_concurrency"):
        spec(max_concurrency=0)


def test_each_service_gets_the_shared_spec_with_its_name():
    fleet = spec(environment="production", spec={"steps": [10, 100]})
    assert fleet.release_spec("b") == {"steps": [10, 100], "service": "b", "version": "v2",
                                       "environment": "production"}
    assert fleet.deployment_name == "canary-release/production"


@pytest.mark.parametrize("outcomes, stop_on_rollback, stops", [
    ({}, True, False),
    ({"a": Outcome.PROMOTED}, True, False),
    ({"a": Outcome.ROLLED_BACK}, True, True),
    ({"a": Outcome.FAILED}, True, True),
    ({"a": Outcome.ROLLED_BACK}, False, False),
    ({"a": Outcome.PROMOTED, "b": Outcome.ROLLED_BACK}, True, True),
])
def test_a_rollback_stops_what_has_not_started_unless_told_otherwise(outcomes, stop_on_rollback, stops):
    assert should_stop(outcomes, stop_on_rollback=stop_on_rollback) is stops


def test_the_summary_says_who_went_out_who_rolled_back_and_who_was_not_attempted():
    fleet = spec()
    waves = plan_waves(fleet.services, fleet.waves)
    summary = fleet_summary(fleet, waves, {"a": Outcome.PROMOTED, "b": Outcome.ROLLED_BACK})
    assert summary["status"] == "rolled_back"
    assert (summary["promoted"], summary["rolled_back"], summary["not_attempted"]) == (["a"], ["b"], ["c"])
    assert summary["waves"] == [[{"service": "a", "outcome": "promoted"}], [{"service": "b", "outcome": "rolled_back"}],
                                [{"service": "c", "outcome": "not_attempted"}]]
    text = summary_markdown(summary)
    assert "not attempted: c" in text and "| 2 | b | rolled_back |" in text
    everyone = fleet_summary(fleet, waves, {s: Outcome.PROMOTED for s in "abc"})
    assert everyone["status"] == "promoted" and everyone["not_attempted"] == []
    assert fleet_summary(fleet, waves, {"a": Outcome.FAILED})["status"] == "incomplete"
