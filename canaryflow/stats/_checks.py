"""Checks at the door of every statistic: counts are integers, probabilities lie in range.

The guarantees in JUDGE.md hold for integer counts only ("Counts, not rates"): a fraction from
``rate()`` or an extrapolated ``increase()`` slipping in would not fail loudly, it would quietly make
the false-rollback bound wrong. So each public function rejects such input with a ``ValueError``
that names the argument, here in one place.
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt


def counts(name: str, value: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """``value`` as an int64 array, or a ``ValueError`` if it is not made of non-negative integers.

    numpy integers are welcome (they are what the judge gets from differencing counters); floats
    are refused even when whole, since a float count has usually been through a rate.
    """
    array = np.asarray(value)
    if array.size == 0 and np.issubdtype(array.dtype, np.number):
        return array.astype(np.int64)  # no rounds yet: ``[]`` is float64 to numpy, but holds no rate
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integer counts, got {array.dtype.name} values: {value!r}")
    if array.size and array.min() < 0:
        raise ValueError(f"{name} must be non-negative, got {array.min()}")
    return array.astype(np.int64)


def plain_count(value: object) -> TypeGuard[int | np.integer[Any]]:
    """A non-negative Python or numpy integer, not a bool: a valid count as it is.

    The judge calls the statistics with scalar counts every round; recognising them takes a
    fraction of what building and checking arrays costs, and anything else still goes through
    ``counts`` and gets its error message there.
    """
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and bool(value >= 0)


def events_within(events_name: str, events: np.ndarray, requests: np.ndarray, requests_name: str) -> None:
    """Events are a subset of requests: more errors than requests means the inputs are mixed up.

    ``events`` and ``requests`` have one shape (broadcast by the caller); the first offender is named.
    """
    over = np.argwhere(events > requests)
    if over.shape[0]:
        first = tuple(int(i) for i in over[0])
        at = f" at index {first}" if first else ""
        raise ValueError(f"{events_name} cannot exceed {requests_name}: {events[first]} > {requests[first]}{at}")


def open_unit(name: str, value: float) -> float:
    """A probability strictly within (0, 1): a level, a share, a limit."""
    number = float(value)
    if not 0.0 < number < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}")
    return number


def positive(name: str, value: float) -> float:
    """A finite positive parameter (a prior's pseudo-count, a concentration)."""
    number = float(value)
    if not (math.isfinite(number) and number > 0.0):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return number
