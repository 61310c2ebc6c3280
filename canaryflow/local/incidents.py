"""Incidents: failures that hit every running version at once, for as long as they last.

A real outage (a database failover, a dependency's bad deploy) raises the error rate of the stable
and the canary together. A judge that compares the canary with a baseline serving at the same time
must not blame the canary for it; one that compares with a fixed threshold will. The local platform
reproduces that with incidents from the catalogue's schedule or started through the controller's
admin API.

The controller is the one authority and *pushes* the active incident to every service process
through the service's own admin endpoint (``PUT``/``DELETE /-/incident``, outside the user paths,
so never counted in ``http_requests_total``). Pushing rather than a schedule file every service
reads, because:

- only the controller knows everything that decides the incident: the schedule, admin requests and
  which processes run; a version started mid-incident (a new canary) is brought in line by the same
  reconcile loop that probes readiness, before it can get traffic;
- an admin request returns once every running version has confirmed, so a test knows the incident
  is in force when its call returns, without waiting out a file-polling interval;
- a service holds only "this rate for that many more seconds" on its own clock, so it ends the
  incident on time by itself, even if the controller died meanwhile, and reads no file per request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeGuard

import httpx

from canaryflow.local.catalog import IncidentSpec

INCIDENT_PATH = "/-/incident"
ADMIN, SCHEDULE = "admin", "schedule"
PUSH_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Incident:
    """One incident, with start and end on the controller's clock."""

    error_rate: float
    started_at: float
    ends_at: float
    source: str  # ADMIN or SCHEDULE

    def remaining_s(self, now: float) -> float:
        return max(0.0, self.ends_at - now)

    def to_json(self, now: float) -> dict:
        return {"error_rate": self.error_rate, "started_at": self.started_at, "ends_at": self.ends_at,
                "remaining_s": round(self.remaining_s(now), 3), "source": self.source}


class IncidentPlan:
    """Which incident is active now: the catalogue's schedule plus admin requests.

    Pure logic with an injectable clock. The latest incident to start wins: an admin request
    replaces a scheduled incident in progress and the next scheduled one replaces an admin one,
    the rule a person watching the platform can predict. Ending one (``end``) does not stop the
    schedule; the next window starts on time.
    """

    def __init__(self, schedule: IncidentSpec | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.schedule = schedule
        self._clock = clock
        self._origin = clock()
        self._current: Incident | None = None
        self._last_window = 0  # the schedule's windows already started (or skipped)

    def start(self, *, duration_s: float, error_rate: float, source: str = ADMIN) -> Incident:
        now = self._clock()
        self._current = Incident(error_rate, now, now + duration_s, source)
        return self._current

    def end(self) -> Incident | None:
        """End the active incident now; returns it (None when there was none)."""
        ended, self._current = self.current(), None
        return ended

    def current(self) -> Incident | None:
        """The incident in force now, starting the schedule's window when one has begun."""
        now = self._clock()
        if self.schedule is not None:
            window = math.floor((now - self._origin) / self.schedule.every_s)
            if window > self._last_window:
                self._last_window = window
                begun = self._origin + window * self.schedule.every_s
                later = self._current is None or begun >= self._current.started_at
                if now < begun + self.schedule.duration_s and later:
                    self._current = Incident(self.schedule.error_rate, begun,
                                             begun + self.schedule.duration_s, SCHEDULE)
        if self._current is not None and now >= self._current.ends_at:
            self._current = None
        return self._current


class ServiceIncident:
    """The incident as one service process knows it: an error rate until a deadline on its own clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._rate = 0.0
        self._ends_at = 0.0

    def apply(self, *, duration_s: float, error_rate: float) -> None:
        self._rate, self._ends_at = error_rate, self._clock() + duration_s

    def clear(self) -> None:
        self._rate, self._ends_at = 0.0, 0.0

    def error_rate(self) -> float:
        """The incident's error rate now; 0 when there is none or it has run out."""
        return self._rate if self._clock() < self._ends_at else 0.0

    def to_json(self) -> dict | None:
        remaining = self._ends_at - self._clock()
        if not self._rate or remaining <= 0:
            return None
        return {"error_rate": self._rate, "remaining_s": round(remaining, 3)}


def parse_incident_request(body: dict) -> tuple[float, float]:
    """``(duration_s, error_rate)`` from an admin request body, or ValueError naming the field.

    One parser for the controller's and the services' endpoints: they take the same body.
    """
    unknown = set(body) - {"duration_s", "error_rate"}
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")
    duration, rate = body.get("duration_s"), body.get("error_rate")
    if not _is_number(duration) or not 0 < duration < math.inf:
        raise ValueError("duration_s must be a positive number of seconds")
    if not _is_number(rate) or not 0 <= rate <= 1:
        raise ValueError("error_rate must be a number within 0..1")
    return float(duration), float(rate)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


async def push_incident(client: httpx.AsyncClient, service_url: str, incident: Incident | None,
                        now: float) -> bool:
    """Put ``incident`` (None: none) in force in the service at ``service_url``; True once it confirmed.

    A failure is not raised: the caller's reconcile loop pushes again on its next round.
    """
    remaining = incident.remaining_s(now) if incident is not None else 0.0
    try:
        if incident is not None and remaining > 0:
            resp = await client.put(service_url + INCIDENT_PATH, timeout=PUSH_TIMEOUT_S,
                                    json={"duration_s": remaining, "error_rate": incident.error_rate})
        else:
            resp = await client.delete(service_url + INCIDENT_PATH, timeout=PUSH_TIMEOUT_S)
    except httpx.HTTPError:
        return False
    return resp.status_code == 200
