"""Quiet Prefect's engine about the Failed states a flow returns on purpose.

A release that rolls back (or is refused, or a fleet that stops) has already logged one clear line
with its reason and numbers, and ends in a named Failed state (``RolledBack``, ``Refused``) whose
data is the exception that says why. A worker runs the flow through Prefect's engine, which turns
that Failed state back into its exception and logs it as ``Engine execution exited with unexpected
exception`` with a traceback: an SRE reading the worker log or the run's logs would take a normal
rollback for a crash. Each deliberate ending is registered here by identity, and a logging filter on
Prefect's engine loggers drops only records carrying one of those very exception objects; a real
crash, whose exception nobody registered, is logged as before.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TypeVar

# The loggers Prefect's engine reports an unexpected end on: the flow run's own (flow_engine.run_flow's
# error_logger) and the engine's (prefect.engine's handle_engine_signals).
ENGINE_LOGGERS = ("prefect.flow_runs", "prefect.engine")

E = TypeVar("E", bound=BaseException)

# Held by identity, strongly (a built-in exception cannot be weakly referenced) and boundedly: a
# process runs a few flows, and the engine logs an ending right after the flow returns it.
_deliberate: deque[BaseException] = deque(maxlen=256)


class QuietDeliberateEndings(logging.Filter):
    """Drops a record whose exception is a registered deliberate ending; keeps every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return exc is None or not is_deliberate(exc)


_FILTER = QuietDeliberateEndings()


def deliberate(exc: E) -> E:
    """Register ``exc`` as the data of a Failed state returned on purpose; returns it.

    Installs the filter on first use, so importing a flow changes no logging by itself."""
    for name in ENGINE_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    if not is_deliberate(exc):
        _deliberate.append(exc)
    return exc


def is_deliberate(exc: BaseException) -> bool:
    return any(exc is known for known in _deliberate)  # identity: an equal exception is another one
