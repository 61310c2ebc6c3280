"""Prefect's engine logs a flow's returned Failed state as an unexpected exception; the filter drops
that record for the endings a flow returns on purpose, and only for them."""

from __future__ import annotations

import logging

import pytest

from canaryflow.deliberate_endings import ENGINE_LOGGERS, deliberate, is_deliberate
from canaryflow.release import ReleaseRolledBack

# Outside a flow run, Prefect's API handler on prefect.flow_runs warns that it has no run to send to.
pytestmark = pytest.mark.filterwarnings("ignore:Logger 'prefect.flow_runs' attempted to send logs:UserWarning")


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(params=ENGINE_LOGGERS)
def engine_log(request):
    logger, handler = logging.getLogger(request.param), Collect()
    logger.addHandler(handler)
    yield logger, handler.records
    logger.removeHandler(handler)


def test_a_deliberate_ending_is_not_logged_as_unexpected(engine_log):
    logger, records = engine_log
    rolled_back = deliberate(ReleaseRolledBack("high_error_rate", "canary 5% vs baseline 0.1%"))
    logger.error("Engine execution exited with unexpected exception", exc_info=rolled_back)
    assert records == []
    assert is_deliberate(rolled_back)


def test_a_real_crash_and_plain_records_are_still_logged(engine_log):
    logger, records = engine_log
    deliberate(ReleaseRolledBack("manual", "operator"))
    crash = ReleaseRolledBack("high_error_rate", "same type, never registered")
    logger.error("Engine execution exited with unexpected exception", exc_info=crash)
    logger.error("Engine execution exited with unexpected exception", exc_info=ValueError("boom"))
    logger.warning("Finished in state RolledBack")
    assert len(records) == 3
    assert records[0].exc_info[1] is crash
    assert isinstance(records[1].exc_info[1], ValueError)
    assert records[2].getMessage() == "Finished in state RolledBack"
    assert not is_deliberate(crash)


def test_registering_twice_installs_one_filter_and_builtin_exceptions_count_too():
    builtin = RuntimeError("the platform could not be asked")
    for _ in range(3):
        assert deliberate(builtin) is builtin
    assert is_deliberate(builtin) and not is_deliberate(RuntimeError("the platform could not be asked"))
    for name in ENGINE_LOGGERS:
        assert sum(type(f).__name__ == "QuietDeliberateEndings" for f in logging.getLogger(name).filters) == 1
