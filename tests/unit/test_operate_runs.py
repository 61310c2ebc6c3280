"""Which run is "the release of a service" for ``status`` and ``wait``: one in progress, else the latest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.states import Cancelling, Completed, Crashed, Failed, Paused, Pending, Running, Scheduled

from canaryflow.operate import in_progress, service_of

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def run_in(state, name: str = "release/checkout/v2/production") -> FlowRun:
    return FlowRun(id=uuid4(), name=name, flow_id=uuid4(), state=state)


@pytest.mark.parametrize("state", [Running(), Paused(), Pending(), Cancelling(),
                                   Scheduled(scheduled_time=NOW - timedelta(seconds=5))])
def test_a_run_under_way_or_due_is_in_progress(state):
    assert in_progress(run_in(state), now=NOW)


@pytest.mark.parametrize("state", [Completed(), Failed(name="RolledBack"), Failed(), Crashed(),
                                   Scheduled(scheduled_time=NOW + timedelta(minutes=10))])
def test_an_ended_run_or_a_retry_scheduled_for_later_is_not(state):
    assert not in_progress(run_in(state), now=NOW)


def test_the_service_is_read_from_the_run_name():
    assert service_of(run_in(Running(), "release/ledger-api/v3/staging")) == "ledger-api"
