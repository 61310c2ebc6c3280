"""Injected failures, matched and answered before the request touches any state.

Retry and idempotency code is only tested honestly if a failed write really did not happen, so a
matching rule short-circuits the request ahead of the store (unlike a mock that writes, then fails).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Fault:
    """One rule. `resource` is a plural (`deployments`) or `plural/subresource` (`deployments/scale`);
    a plain plural does not match its subresources, as in RBAC. None matches anything."""

    verb: str | None = None
    resource: str | None = None
    name: str | None = None
    status: int | None = 500
    times: int | None = 1  # None: until cleared
    delay: float = 0.0
    retry_after: int = 1
    hits: int = field(default=0, init=False)

    def matches(self, verb: str, resource: str, subresource: str, name: str) -> bool:
        if self.verb is not None and self.verb != verb:
            return False
        if self.resource is not None:
            label = f"{resource}/{subresource}" if subresource else resource
            if self.resource not in ("*", label):
                return False
        if self.name is not None and self.name != name:
            return False
        return self.times is None or self.hits < self.times


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []

    def add(
        self,
        *,
        verb: str | None = None,
        resource: str | None = None,
        name: str | None = None,
        status: int | None = 500,
        times: int | None = 1,
        delay: float = 0.0,
        retry_after: int = 1,
    ) -> Fault:
        """Queue a rule; `status` 0/None with `delay` > 0 only slows matching requests down."""
        rule = Fault(verb, resource, name, status or None, times, delay, retry_after)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def take(self, verb: str, resource: str, subresource: str, name: str) -> Fault | None:
        """The first live rule matching this request, with its hit counted."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(verb, resource, subresource, name):
                    rule.hits += 1
                    return rule
        return None
