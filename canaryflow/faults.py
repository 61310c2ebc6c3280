"""Fault injection by wrapping, not patching: ``Faulty(target, {method: fault})`` answers like
``target`` except for the named methods, which fail the way the real client would.

Used by the fault matrix (tests/unit/flows/test_fault_matrix.py) around the platform, the Prefect
API object (``tasks.prefect_api``), the Grafana side and the Pushgateway pusher: the code under test
takes these objects as they are handed to it, so no client is monkey-patched.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

from canaryflow.errors import PlatformError


class Fault(StrEnum):
    RAISE = "raise"  # an unexpected exception (a bug, a library surprise)
    TIMEOUT = "timeout"  # the call never answered within the client's timeout
    GARBAGE = "garbage"  # the call answered, with nonsense
    CONFLICT = "conflict"  # HTTP 409
    SERVER_ERROR = "5xx"  # HTTP 503


class Killed(BaseException):
    """SIGKILL, modelled: the process is gone, so no later call of it ever arrives."""


def failure(fault: Fault, operation: str) -> BaseException:
    """The exception a real client raises for ``fault`` (platform clients speak ``PlatformError``)."""
    if fault is Fault.RAISE:
        return RuntimeError(f"{operation}: unexpected failure")
    if fault is Fault.TIMEOUT:
        return PlatformError("timed out", operation=operation, transient=True)
    if fault is Fault.CONFLICT:
        return PlatformError("HTTP 409: conflict", operation=operation)
    if fault is Fault.SERVER_ERROR:
        return PlatformError("HTTP 503", operation=operation, transient=True)
    raise ValueError(f"{fault} is an answer, not an exception")


class Faulty:
    """``target`` with ``faults[method]`` applied: a fault raises its exception, GARBAGE returns
    ``garbage``. ``when`` narrows a fault to some calls (e.g. only ``set_weight(50)``)."""

    def __init__(self, target: Any, faults: dict[str, Any], *, garbage: Any = "<html>garbage",
                 when: Callable[..., bool] = lambda *a, **k: True) -> None:
        self._target, self._faults, self._garbage, self._when = target, faults, garbage, when
        self.injected = 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._target, name)
        fault = self._faults.get(name)
        if fault is None or not callable(real):
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            if not self._when(*args, **kwargs):
                return real(*args, **kwargs)
            self.injected += 1
            if callable(fault) and not isinstance(fault, Fault):  # e.g. SIGKILL: mark the process dead, raise
                return fault(*args, **kwargs)
            if isinstance(fault, BaseException):
                raise fault
            if fault is Fault.GARBAGE:
                return self._garbage
            raise failure(fault, name)

        return call
