from datetime import UTC, datetime, timedelta

import pytest

from canaryflow.errors import CanaryflowError
from canaryflow.operate import parse_when

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "delta"), [("now", 0), ("+10m", 600), ("90s", 90), ("+1.5h", 5400), ("2d", 172800)])
def test_relative_times(text, delta):
    assert parse_when(text, now=NOW) == NOW + timedelta(seconds=delta)


def test_iso_times_keep_their_zone_and_naive_ones_are_utc():
    assert parse_when("2026-11-27T09:30:00+01:00", now=NOW) == datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
    assert parse_when("2026-11-27T09:30:00", now=NOW) == datetime(2026, 11, 27, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize("text", ["tomorrow", "10 minutes", "-5m", ""])
def test_unreadable_times_say_what_is_accepted(text):
    with pytest.raises(CanaryflowError, match="use now, \\+10m, 90s"):
        parse_when(text, now=NOW)
