"""The Prefect API goes away mid-release (server stopped, then started again on the same port and
database): the release must end with traffic all on stable or carry on to a promotion, never split,
never promoted without evidence.

The flow runs in its own process, as a worker would run it; the test stops the session's server
while the canary takes 10 % of the traffic. ``OUTAGE_SECONDS`` is the shortest outage that still
outlasts the traffic lease (3 s) and the Prefect client's own retries (about 10 s), so the flow
meets a server that is really gone; the issue's 30 s behaves the same, only slower.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e import test_crash_safety
from tests.e2e.conftest import controller_state
from tests.e2e.test_crash_safety import release_log, wait_for_canary_at_ten_percent

release_process = test_crash_safety.release_process  # the fixture, shared with the crash tests

pytestmark = pytest.mark.e2e

OUTAGE_SECONDS = 15


@pytest.mark.parametrize("outage", [OUTAGE_SECONDS])
def test_a_prefect_outage_mid_step_never_leaves_traffic_split(stack, prefect_server, release_process, tmp_path,
                                                              outage):
    proc = release_process()
    wait_for_canary_at_ten_percent(stack, proc, tmp_path)
    prefect_server.stop()
    try:
        time.sleep(outage)
    finally:
        prefect_server.start()  # same port, same database: the session's other tests go on using it

    try:
        proc.wait(timeout=180)
    except Exception:
        raise AssertionError(f"the release never ended after the outage:\n{release_log(tmp_path)}") from None
    state = controller_state(stack)
    log = release_log(tmp_path)
    assert state["canary_weight"] == 0, log  # never split
    if state["stable"]["version"] == "v2":  # it carried on: only with a pass at every step
        assert "promoted" in log
        assert [h["canary_weight"] for h in state["history"] if h["reason"] != "lease_expired"][-2:] != [10, 0]
        passes = [line for line in log.splitlines() if "error_rate PASS" in line.replace("pass", "PASS")]
        assert passes, log
    else:
        assert state["stable"]["version"] == "v1" and state["canary"] is None or state["canary_weight"] == 0, log
