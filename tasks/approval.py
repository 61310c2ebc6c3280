"""The approval gate before the last step: pause for a person's answer, or time out.

Prefect shows ``Approval`` as a form when the run is paused (UI); ``canaryflow approve`` /
``canaryflow reject`` send the same input from a terminal.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput
from pydantic import Field

from canaryflow.approval import weight_held
from canaryflow.release import ReleaseRun
from tasks.prefect_api import prefect_api


class Approval(RunInput):
    """Promote to full traffic? A reason is kept in the run log and the summary."""

    approved: bool = Field(description="true: go on to the last step; false: roll back (reason manual)")
    reason: str = Field(default="", max_length=500, description="Why (shown in the run's summary)")
    by: str = Field(default="", max_length=100, description="Who decided")


#: Who answers when nobody did in time.
GATE_TIMER = "canaryflow (timeout)"
#: The pause itself outlives our deadline: Prefect fails a run whose pause expired, and that would
#: replace our rollback's reason with "paused and never resumed".
PAUSE_MARGIN_SECONDS = 120


def await_approval(run: ReleaseRun, weight: int) -> tuple[bool, str]:
    """(approved, explanation). Not a task: a paused *flow* is what the UI offers to resume.

    The canary keeps its current weight meanwhile (the lease is renewed in the background). At
    the deadline the gate answers itself with a rejection, so the run ends with our reason.
    """
    log = get_run_logger()
    gate = run.spec.approval
    record = run.begin("approval", weight)
    api = prefect_api(run)
    run_id = str(api.flow_run_id())
    log.warning("waiting up to %d s for approval to send 100%% of traffic to %s %s "
                "(resume in the UI, or: canaryflow approve %s / canaryflow reject %s)",
                gate.timeout_seconds, run.spec.service, run.spec.version, run_id, run_id)
    timeout_answer = f"no approval within {gate.timeout_seconds} s"
    try:
        with weight_held(run.platform, weight, lease_seconds=run.lease_seconds), \
                _reject_at_deadline(api, run_id, gate.timeout_seconds, timeout_answer):
            answer = api.pause_flow_run(wait_for_input=Approval, timeout=gate.timeout_seconds + PAUSE_MARGIN_SECONDS,
                                    poll_interval=gate.poll_seconds, key="approval")
    except FlowPauseTimeout:  # the deadline answer itself could not be delivered
        run.end(record, "timed_out", timeout_answer)
        return False, timeout_answer
    if answer.by == GATE_TIMER:
        run.end(record, "timed_out", timeout_answer)
        log.warning("%s", timeout_answer)
        return False, timeout_answer
    who = f" by {answer.by}" if answer.by else ""
    explanation = f"{'approved' if answer.approved else 'rejected'}{who}: {answer.reason or 'no reason given'}"
    run.end(record, "approved" if answer.approved else "rejected", explanation)
    (log.info if answer.approved else log.warning)("%s", explanation)
    return answer.approved, explanation


@contextmanager
def _reject_at_deadline(api: Any, flow_run_id: str, seconds: float, reason: str) -> Iterator[None]:
    """Resume the paused run with a rejection after ``seconds`` unless someone answered first."""
    answered = threading.Event()

    def answer_if_nobody_did() -> None:
        if answered.wait(seconds):
            return
        try:
            api.resume_flow_run(flow_run_id, run_input={"approved": False, "reason": reason, "by": GATE_TIMER})
        except Exception:  # already resumed by a person, or the pause is gone: theirs is the answer
            pass

    timer = threading.Thread(target=contextvars.copy_context().run, args=(answer_if_nobody_did,),
                             name="approval-deadline", daemon=True)
    timer.start()
    try:
        yield
    finally:
        answered.set()
        timer.join(timeout=10)
