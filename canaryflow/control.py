"""Operator commands to a running release: promote now, abort, pause, resume.

A person's command reaches the flow through a Prefect Variable named after the flow run
(``canaryflow-control-<flow run id>``): the CLI writes it, the release's analysis loop reads it
every round (``tasks.control.read_operator_command``) and hands it to the judge, which folds it
into its one decision (:func:`canaryflow.judge.decide`). A Variable, not a cancellation or a
pause of the run, because it works the same for a CLI run and a worker's run, survives a restart
of either side, and leaves the release itself to end in one well-defined outcome: the lease keeps
being renewed while paused, an abort rolls back through the release's own exit, with reason
``manual`` and who asked and why.

Only the latest command counts: ``resume`` overwrites ``pause``; ``promote`` and ``abort`` end the run.
Prefect is imported inside the functions that talk to the server, so the judge can use the types.
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from canaryflow.errors import CanaryflowError

VARIABLE_PREFIX = "canaryflow-control-"


class Verb(StrEnum):
    PROMOTE = "promote"
    ABORT = "abort"
    PAUSE = "pause"
    RESUME = "resume"


#: What each verb reads as in a log line or a summary: "promoted by alice@ci: hotfix".
PAST = {Verb.PROMOTE: "promoted", Verb.ABORT: "aborted", Verb.PAUSE: "paused", Verb.RESUME: "resumed"}


@dataclass(frozen=True)
class OperatorCommand:
    """One person's command: the verb, who gave it and why, and when (so a log says it once)."""

    verb: Verb
    by: str
    reason: str = ""
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def describe(self) -> str:
        return f"{PAST[self.verb]} by {self.by}" + (f": {self.reason}" if self.reason else "")

    def as_value(self) -> dict[str, str]:
        return {**asdict(self), "verb": self.verb.value}

    @classmethod
    def from_value(cls, value: Any) -> OperatorCommand | None:
        """The command a Variable holds; None for anything else (a hand-edited Variable is ignored)."""
        if not isinstance(value, dict):
            return None
        try:
            return cls(verb=Verb(value["verb"]), by=str(value.get("by") or "unknown"),
                       reason=str(value.get("reason") or ""), at=str(value.get("at") or ""))
        except (KeyError, ValueError):
            return None


def operator_identity(by: str | None = None) -> str:
    """``--by`` if given, else ``user@host`` of the shell that runs the command."""
    if by:
        return by
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def variable_name(flow_run_id: str) -> str:
    return f"{VARIABLE_PREFIX}{flow_run_id}"


def send(flow_run_id: str, command: OperatorCommand) -> None:
    """Leave ``command`` for the run; the release acts on it at its next analysis round."""
    from prefect.variables import Variable

    Variable.set(variable_name(flow_run_id), command.as_value(), tags=["canaryflow", "control"], overwrite=True)


def read(flow_run_id: str) -> OperatorCommand | None:
    from prefect.variables import Variable

    return OperatorCommand.from_value(Variable.get(variable_name(flow_run_id), default=None))


def clear(flow_run_id: str) -> None:
    from prefect.variables import Variable

    try:
        Variable.unset(variable_name(flow_run_id))
    except ValueError:  # already gone
        pass


def running_release(service: str) -> Any:
    """The service's release run that is Running now (the one a command is for), or a
    ``CanaryflowError`` saying there is none: a command with nobody to read it must not wait."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterName,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(like_=f"release/{service}/"),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))),
            sort=FlowRunSort.START_TIME_DESC, limit=5)
    runs = [r for r in runs if r.name.startswith(f"release/{service}/")]
    if not runs:
        raise CanaryflowError(f"no release of {service} is running")
    return runs[0]


#: Where each verb leaves the run: promote and abort end it, pause and resume leave it Running.
ENDS_THE_RUN = frozenset({Verb.PROMOTE, Verb.ABORT})


def wait_for_end(flow_run_id: str, *, timeout: float, poll: float = 1.0) -> Any:
    """The run once it is in a final state, or None after ``timeout`` seconds."""
    import time
    from uuid import UUID

    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(UUID(flow_run_id))
            if run.state is not None and run.state.is_final():
                return run
            if time.monotonic() >= deadline:
                return None
            time.sleep(poll)
