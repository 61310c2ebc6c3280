"""How a release the receiver started ended: ``GET /hooks/runs/{flow_run_id}``, for a CI job to gate on.

A pipeline that posted a delivery holds the answer: the flow run's id and a **status token**. It
polls ``/hooks/runs/<id>`` with ``Authorization: Bearer <token>`` until ``ended`` is true, then
exits with ``exit_code`` — the codes of ``canaryflow wait`` (0 promoted, 1 rolled back, 2 refused,
4 crashed or cancelled; 3 while it runs). The job needs no Prefect credentials and no canaryflow
install: curl and jq, as for the delivery itself.

Why a token per run and not the route's secret again: the token is an HMAC of the run's id keyed
by the secret that authenticated the delivery, so it grants reading that one run's outcome and
nothing else; it can be shown in a job's log without exposing the secret or any other run. The
receiver keeps no state for it: it recomputes the HMAC under each configured secret and compares
in constant time. A wrong or missing token is 401 and the same answer whether the run exists or
not, so the endpoint does not tell run ids apart to a caller without a token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from canaryflow.waiting import WaitResult, outcome_line, result_of

#: What the token's HMAC covers besides the run id: a token is never a valid signature of a delivery.
_PURPOSE = b"canaryflow-run-status:"
_RUN_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: How long a CI job should wait between two polls, sent as ``Retry-After`` while the run goes on.
POLL_SECONDS = 15


@dataclass(frozen=True)
class RunSeen:
    """A flow run as the orchestrator has it now: its name and its current (Prefect) state."""

    name: str | None
    state: Any
    ui_url: str | None = None


class RunLookup(Protocol):
    """Where the receiver reads a run (None: no such run; ``StarterUnavailable``: cannot tell now)."""

    async def run_status(self, flow_run_id: str) -> RunSeen | None: ...


def status_token(secret: str, flow_run_id: str) -> str:
    """The token that reads ``flow_run_id``'s outcome: hex HMAC-SHA256 keyed by ``secret``."""
    return hmac.new(secret.encode(), _PURPOSE + flow_run_id.encode(), hashlib.sha256).hexdigest()


def is_run_id(value: str) -> bool:
    """A flow run id as Prefect writes it (lower-case UUID): anything else is not looked up."""
    return bool(_RUN_ID.match(value))


def token_valid(secrets: Iterable[str], flow_run_id: str, presented: str) -> bool:
    """Whether ``presented`` is the status token of ``flow_run_id`` under any configured secret.
    Every secret is tried (no early exit), each comparison in constant time."""
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(status_token(secret, flow_run_id), presented)
    return matched


def bearer(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; empty when absent or another scheme."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def status_body(flow_run_id: str, seen: RunSeen) -> dict[str, Any]:
    """The answer: the state, whether it ended, the ``canaryflow wait`` exit code and its one line."""
    state, run_name = seen.state, seen.name
    result = result_of(state)
    ended = result is not WaitResult.TIMEOUT
    run = _Run(flow_run_id, run_name or flow_run_id, state)
    return {
        "flow_run_id": flow_run_id, "flow_run_name": run_name,
        "state": state.name if state is not None else None,
        "ended": ended, "outcome": result.label if ended else "running",
        "exit_code": int(result), "line": outcome_line(run, result),
        "message": (state.message or "") if state is not None else "", "ui_url": seen.ui_url,
    }


class _Run:
    """The two fields of a flow run ``outcome_line`` reads, and the state."""

    def __init__(self, run_id: str, name: str, state: Any) -> None:
        self.id, self.name, self.state = run_id, name, state
