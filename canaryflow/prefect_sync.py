"""Prefect calls made from synchronous code.

Several Prefect 3 functions (``Block.save``, ``Block.load``, ``run_deployment``) are dual: called in
a coroutine or an async flow or task, they return a coroutine instead of their result. canaryflow
calls them from synchronous flows, tasks and commands only; ``sync_result`` unwraps the result and
turns the other case into a clear error instead of a coroutine passed on as if it were the result.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def sync_result(value: T | Coroutine[Any, Any, T], call: str) -> T:
    """``value`` as the result of the Prefect call ``call``; ``RuntimeError`` if it is a coroutine."""
    if isinstance(value, Coroutine):
        value.close()  # never awaited: closing it spares a "never awaited" warning on top of the error
        raise RuntimeError(f"{call} ran in an async context and returned a coroutine; canaryflow calls it "
                           "from synchronous code only")
    return value
