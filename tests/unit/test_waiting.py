"""``canaryflow wait``: the exit code and the line for each way a release run can end, from the
states ``flows.release.final_state`` gives (built with Prefect's own state constructors)."""

from __future__ import annotations

from uuid import uuid4

import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.states import Cancelled, Completed, Crashed, Failed, Paused, Pending, Running

from canaryflow.artifacts import summary_markdown
from canaryflow.judge import Reason
from canaryflow.outcome import Outcome
from canaryflow.waiting import WaitResult, outcome_line, result_of, summary_reason

ROLLED_BACK = Outcome.rolled_back(Reason.HIGH_ERROR_RATE, "error_rate: canary 4.92% (9/183) vs baseline 0.05% "
                                  "(1/1,862) — evidence 35,828 >= 200 (alpha 0.50%) at 10% canary")
REFUSED = Outcome.refused(Reason.METRICS_UNAVAILABLE, "Prometheus at http://127.0.0.1:9090 is not ready")


def run_in(state) -> FlowRun:
    return FlowRun(id=uuid4(), name="release/checkout/v2/production", flow_id=uuid4(), state=state)


@pytest.mark.parametrize(("state", "code"), [
    (Completed(), 0),
    (Failed(message=ROLLED_BACK.describe(), name="RolledBack"), 1),
    (Failed(message=REFUSED.describe()), 2),
    (Failed(message="Flow run encountered an exception: ReleaseBlocked: another release of checkout is in "
                    "progress (concurrency limit canaryflow-release-checkout); waited 600 s, changed nothing"), 2),
    (Running(), 3), (Paused(), 3), (Pending(), 3),
    (Crashed(message="Execution was interrupted"), 4), (Cancelled(), 4),
])
def test_each_ending_has_its_exit_code(state, code):
    assert result_of(state) == code


def test_the_codes_are_the_documented_ones():
    assert [(r.name, int(r)) for r in WaitResult] == [
        ("PROMOTED", 0), ("ROLLED_BACK", 1), ("REFUSED", 2), ("TIMEOUT", 3), ("CRASHED", 4), ("NOT_FOUND", 5)]


def test_a_rollback_line_carries_the_reason_and_the_numbers():
    run = run_in(Failed(message=ROLLED_BACK.describe(), name="RolledBack"))
    line = outcome_line(run, WaitResult.ROLLED_BACK)
    assert line == (f"release/checkout/v2/production ({run.id}): rolled back (high_error_rate): error_rate: canary "
                    "4.92% (9/183) vs baseline 0.05% (1/1,862) — evidence 35,828 >= 200 (alpha 0.50%) at 10% canary")


def test_a_refusal_says_nothing_was_changed():
    line = outcome_line(run_in(Failed(message=REFUSED.describe())), WaitResult.REFUSED)
    assert line.endswith("refused (metrics_unavailable): Prometheus at http://127.0.0.1:9090 is not ready; "
                         "nothing was changed")
    blocked = outcome_line(run_in(Failed(message="Flow run encountered an exception: ReleaseBlocked: x")),
                           WaitResult.REFUSED)
    assert "refused: Flow run encountered an exception: ReleaseBlocked: x; nothing was changed" in blocked


def test_a_promotion_says_why_from_the_run_s_summary_artifact():
    summary = {"service": "checkout", "version": "v2", "environment": "production", "previous_version": "v1",
               "status": "promoted", "reason": "manual", "explanation": "promoted by bob@ci: hotfix at 10% canary",
               "duration_s": 12.0, "steps": []}
    reason = summary_reason(summary_markdown(summary))
    assert reason == "manual: promoted by bob@ci: hotfix at 10% canary"
    line = outcome_line(run_in(Completed()), WaitResult.PROMOTED, promotion=reason)
    assert line.endswith(": promoted (manual: promoted by bob@ci: hotfix at 10% canary)")
    assert outcome_line(run_in(Completed()), WaitResult.PROMOTED).endswith(": promoted")
    assert summary_reason("# something else\n") == ""


def test_a_timeout_and_a_crash_say_the_release_was_not_decided():
    assert outcome_line(run_in(Running()), WaitResult.TIMEOUT, waited=30.2).endswith(
        ": still Running after 30s; the release goes on")
    crashed = outcome_line(run_in(Crashed(message="Execution was interrupted")), WaitResult.CRASHED)
    assert crashed.endswith(": crashed: Execution was interrupted; no decision about the version")
