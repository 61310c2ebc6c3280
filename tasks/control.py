"""The release's ear for a person: read the operator command left for this run (see canaryflow.control)."""

from __future__ import annotations

from prefect import get_run_logger, task

from canaryflow.control import OperatorCommand, Verb, clear, read
from tasks.common import PLAIN_TASK

#: The command each run last logged (by its time), so a pause is said once, not every round.
_announced: dict[str, str] = {}


@task(name="read-operator-command", **PLAIN_TASK)
def read_operator_command() -> OperatorCommand | None:
    """The latest command for this run, or None (also for ``resume``, which only lifts a pause).
    A server that cannot answer is no command: the release goes on judging by its metrics."""
    from prefect.runtime import flow_run

    run_id, log = str(flow_run.id), get_run_logger()
    try:
        command = read(run_id)
    except Exception as exc:  # noqa: BLE001 - a lost read must not end a release; the next round reads again
        log.warning("could not read operator commands this round: %s", exc)
        return None
    if command is None:
        return None
    if _announced.get(run_id) != command.at:
        _announced[run_id] = command.at
        log.warning("operator: %s", command.describe())
    if command.verb is Verb.RESUME:
        clear(run_id)
        return None
    if command.verb in (Verb.PROMOTE, Verb.ABORT):
        clear(run_id)  # acted on this round; the run ends with it
    return command
