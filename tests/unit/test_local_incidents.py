"""Incidents: the controller's plan (schedule and admin requests), the service's view, the push between."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from canaryflow.local.catalog import IncidentSpec
from canaryflow.local.incidents import (
    ADMIN,
    SCHEDULE,
    Incident,
    IncidentPlan,
    ServiceIncident,
    parse_incident_request,
    push_incident,
)
from tests.unit.local_support import FakeClock

EVERY_300_FOR_120 = IncidentSpec(every_s=300, duration_s=120, error_rate=0.05)


# -- the plan ------------------------------------------------------------------------------------------

def test_without_schedule_nothing_happens_by_itself():
    clock = FakeClock()
    plan = IncidentPlan(clock=clock)
    for _ in range(10):
        clock.now += 100
        assert plan.current() is None


def test_schedule_starts_every_period_and_lasts_its_duration():
    clock = FakeClock()
    plan = IncidentPlan(EVERY_300_FOR_120, clock=clock)
    clock.now += 299
    assert plan.current() is None
    clock.now += 1
    first = plan.current()
    assert first == Incident(0.05, 1300, 1420, SCHEDULE)
    clock.now += 119.9
    assert plan.current() == first
    clock.now += 0.1
    assert plan.current() is None
    clock.now = 1600 + 5
    assert plan.current() == Incident(0.05, 1600, 1720, SCHEDULE)


def test_admin_incident_starts_now_and_ends_after_its_duration():
    clock = FakeClock()
    plan = IncidentPlan(clock=clock)
    started = plan.start(duration_s=30, error_rate=0.1)
    assert started == Incident(0.1, 1000, 1030, ADMIN) and plan.current() == started
    assert started.to_json(1010) == {"error_rate": 0.1, "started_at": 1000, "ends_at": 1030,
                                     "remaining_s": 20.0, "source": ADMIN}
    clock.now += 30
    assert plan.current() is None


def test_ending_an_incident_keeps_the_schedule():
    clock = FakeClock()
    plan = IncidentPlan(EVERY_300_FOR_120, clock=clock)
    clock.now += 310
    assert plan.current().source == SCHEDULE
    assert plan.end().source == SCHEDULE
    assert plan.current() is None  # the window that was ended does not start again
    clock.now += 20
    assert plan.current() is None and plan.end() is None
    clock.now = 1600
    assert plan.current().started_at == 1600


def test_the_latest_incident_to_start_wins():
    clock = FakeClock()
    plan = IncidentPlan(EVERY_300_FOR_120, clock=clock)
    clock.now = 1290
    plan.start(duration_s=60, error_rate=0.5)
    clock.now = 1300
    assert plan.current().source == SCHEDULE  # the window began after the admin incident
    clock.now = 1310
    admin = plan.start(duration_s=200, error_rate=0.5)
    assert plan.current() == admin
    clock.now = 1450
    assert plan.current() == admin  # outlives the scheduled window it replaced


def test_an_admin_incident_started_after_a_window_began_is_not_overridden_by_it():
    """The window began at 1300 but nobody asked until after the admin request at 1301."""
    clock = FakeClock()
    plan = IncidentPlan(EVERY_300_FOR_120, clock=clock)
    clock.now = 1301
    admin = plan.start(duration_s=5, error_rate=0.9)
    clock.now = 1302
    assert plan.current() == admin


def test_a_window_nobody_looked_at_in_time_does_not_start_late():
    clock = FakeClock()
    plan = IncidentPlan(EVERY_300_FOR_120, clock=clock)
    clock.now = 1300 + 150  # the first window was 1300..1420
    assert plan.current() is None


# -- the service's view --------------------------------------------------------------------------------

def test_service_incident_runs_out_on_its_own_clock():
    clock = FakeClock(5.0)
    incident = ServiceIncident(clock)
    assert incident.error_rate() == 0.0 and incident.to_json() is None
    incident.apply(duration_s=2, error_rate=0.3)
    assert incident.error_rate() == 0.3
    assert incident.to_json() == {"error_rate": 0.3, "remaining_s": 2.0}
    clock.now += 2
    assert incident.error_rate() == 0.0 and incident.to_json() is None


def test_service_incident_clear_ends_it_at_once():
    incident = ServiceIncident(FakeClock())
    incident.apply(duration_s=60, error_rate=0.3)
    incident.clear()
    assert incident.error_rate() == 0.0


# -- the request body ----------------------------------------------------------------------------------

def test_request_body_parsed():
    assert parse_incident_request({"duration_s": 30, "error_rate": 0.05}) == (30.0, 0.05)
    assert parse_incident_request({"duration_s": 0.5, "error_rate": 0}) == (0.5, 0.0)


@pytest.mark.parametrize("body, field", [
    ({"error_rate": 0.05}, "duration_s"),
    ({"duration_s": -1, "error_rate": 0.05}, "duration_s"),
    ({"duration_s": float("inf"), "error_rate": 0.05}, "duration_s"),
    ({"duration_s": float("nan"), "error_rate": 0.05}, "duration_s"),
    ({"duration_s": 30}, "error_rate"),
    ({"duration_s": 30, "error_rate": -0.1}, "error_rate"),
    ({"duration_s": 30, "error_rate": "5%"}, "error_rate"),
    ({"duration_s": 30, "error_rate": 0.05, "version": "v2"}, "version"),
])
def test_bad_request_body_names_the_field(body, field):
    with pytest.raises(ValueError, match=field):
        parse_incident_request(body)


# -- the push ------------------------------------------------------------------------------------------

class RecordingService:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[str, str, object]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, request.url.path, body))
        return httpx.Response(self.status, json={})


def push(handler, incident, now) -> bool:
    async def send() -> bool:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await push_incident(client, "http://127.0.0.1:9101", incident, now)
    return asyncio.run(send())


def test_push_sends_the_remaining_duration():
    service = RecordingService()
    assert push(service, Incident(0.05, 1000, 1030, ADMIN), now=1010)
    assert service.requests == [("PUT", "/-/incident", {"duration_s": 20, "error_rate": 0.05})]


@pytest.mark.parametrize("incident", [None, Incident(0.05, 1000, 1030, ADMIN)])
def test_push_of_no_incident_or_one_run_out_deletes(incident):
    service = RecordingService()
    assert push(service, incident, now=1030)
    assert service.requests == [("DELETE", "/-/incident", None)]


def test_push_reports_a_service_that_did_not_confirm():
    assert not push(RecordingService(status=503), None, now=0)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    assert not push(refused, Incident(0.05, 0, 10, ADMIN), now=1)
