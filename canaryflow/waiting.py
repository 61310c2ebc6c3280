"""What ``canaryflow wait`` answers: how a release run ended, as one line and an exit code a
pipeline can branch on.

The run's final state says it all (``flows.release.final_state``): Completed is a promotion;
Failed named ``RolledBack`` is a rollback (traffic went back to stable); ``Refused``, or any other
Failed, is a release that never started: preflight refused it (Prometheus down, an unknown version), another
release held the service past the queue timeout, the spec or the settings were refused. Crashed
and Cancelled are an orchestrator that went away: its crash hook, or the platform's traffic lease,
put users back on stable, and nobody decided anything about the version.
"""

from __future__ import annotations

import re
import time
from enum import IntEnum
from typing import Any

from canaryflow.errors import CanaryflowError


class WaitResult(IntEnum):
    """``canaryflow wait``'s exit codes."""

    PROMOTED = 0
    ROLLED_BACK = 1
    REFUSED = 2  # the release never started: nothing changed
    TIMEOUT = 3  # still going after --timeout (it goes on)
    CRASHED = 4  # crashed or cancelled: no decision about the version
    NOT_FOUND = 5  # no such run, or the Prefect API cannot be read

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", " ")


#: The ``Failed`` state name ``flows.release.final_state`` gives a rollback (and a fleet gives a
#: fleet release in which a service rolled back).
ROLLED_BACK_STATE = "RolledBack"
#: A fleet release in which some service's release failed or was refused: others may have gone out.
INCOMPLETE_STATE = "Incomplete"


def result_of(state: Any) -> WaitResult:
    """The exit code of a run in ``state`` (a Prefect ``State``); TIMEOUT while it has not ended."""
    if state is None or not state.is_final():
        return WaitResult.TIMEOUT
    if state.is_completed():
        return WaitResult.PROMOTED
    if state.is_failed():
        rolled_back = state.name == ROLLED_BACK_STATE or (state.message or "").startswith("rolled back")
        return WaitResult.ROLLED_BACK if rolled_back else WaitResult.REFUSED
    return WaitResult.CRASHED  # Crashed, Cancelled


_WHY = re.compile(r"^- \*\*Why:\*\* (?P<why>.+)$", re.MULTILINE)
_REASON = re.compile(r"^- \*\*Reason:\*\* `(?P<reason>[^`]+)`$", re.MULTILINE)


def summary_reason(markdown: str) -> str:
    """``reason: why`` from the run's summary artifact (``canaryflow.artifacts.summary_markdown``)."""
    reason, why = _REASON.search(markdown), _WHY.search(markdown)
    return ": ".join(part for part in (reason and reason["reason"], why and why["why"]) if part)


def outcome_line(run: Any, result: WaitResult, *, waited: float | None = None, promotion: str = "") -> str:
    """One line: the run, how it ended and why (the final state's message has the numbers)."""
    state = run.state
    message = (state.message or "").strip() if state else ""
    if result is WaitResult.PROMOTED:
        why = f"promoted ({promotion})" if promotion else "promoted"
    elif result is WaitResult.TIMEOUT:
        why = (f"still {state.name if state else 'unknown'} after {waited:.0f}s; the release goes on"
               if waited is not None else f"still {state.name if state else 'unknown'}")
    elif result is WaitResult.CRASHED:
        why = f"{state.name.lower()}: {message or 'no message'}; no decision about the version"
    elif result is WaitResult.REFUSED and state.name == INCOMPLETE_STATE:
        why = message or "incomplete"  # a fleet: some services may have gone out, the message says which
    elif result is WaitResult.REFUSED:
        why = (message if message.startswith("refused") else f"refused: {message or 'no message'}") + \
            "; nothing was changed"
    else:
        why = message or "rolled back"
    return f"{run.name} ({run.id}): {why}"


def find_run(run_or_service: str) -> Any:
    """The flow run with this id, or the service's release in progress (else its latest);
    ``CanaryflowError`` when there is none."""
    from uuid import UUID

    from canaryflow.operate import current_release

    try:
        run_id = UUID(run_or_service)
    except ValueError:
        run = current_release(run_or_service)
        if run is None:
            raise CanaryflowError(f"no release of {run_or_service} on record") from None
        return run
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_flow_run(run_id)
        except ObjectNotFound:
            raise CanaryflowError(f"no flow run {run_or_service}") from None


def promotion_reason(flow_run_id: str) -> str:
    """Why a promoted run was promoted (every step passed, or who promoted it), from its summary
    artifact; empty when the run published none."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]), type=ArtifactFilterType(any_=["markdown"])))
    return next((r for r in (summary_reason(str(a.data or "")) for a in artifacts) if r), "")


def wait_for(run: Any, *, timeout: float, poll: float = 1.0) -> tuple[WaitResult, str]:
    """Block until ``run`` ends (``timeout`` 0: for as long as it takes); the exit code and the line.
    A Prefect API that stops answering for a while is waited out, within the timeout."""
    from canaryflow.control import wait_for_end

    started = time.monotonic()
    deadline = started + timeout if timeout > 0 else float("inf")
    ended = None
    while ended is None:
        try:
            ended = wait_for_end(str(run.id), timeout=max(0.0, deadline - time.monotonic()), poll=poll)
        except Exception:  # noqa: BLE001 - a server restart is not the release's outcome
            ended = None
        if ended is None:
            if time.monotonic() >= deadline:
                return WaitResult.TIMEOUT, outcome_line(run, WaitResult.TIMEOUT, waited=time.monotonic() - started)
            time.sleep(poll)
    result = result_of(ended.state)
    promotion = ""
    if result is WaitResult.PROMOTED:
        try:
            promotion = promotion_reason(str(ended.id))
        except Exception:  # noqa: BLE001 - the outcome is known; the reason is a detail
            promotion = ""
    return result, outcome_line(ended, result, promotion=promotion)
