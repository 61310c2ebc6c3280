"""Fleet releases: one version change (a shared library, a base image) across many services, in waves.

A change that breaks one service usually breaks the others the same way, so it goes out to one
service first, then to a quarter of the rest, then to everyone, and a rolled-back service stops
what has not started yet. This module holds the decisions, pure and without Prefect:
:func:`plan_waves` (who goes in which wave) and :func:`fleet_summary` (what went out, what rolled
back, what was never attempted). ``flows/fleet.py`` runs each service's release as a child run.
"""

from __future__ import annotations

import math
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from canaryflow.local.services import SERVICE_NAME

WaveSize = int | str

#: One service first, then a quarter of the fleet, then the rest.
DEFAULT_WAVES: tuple[WaveSize, ...] = ("1", "25%", "rest")


class Outcome(StrEnum):
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"  # the child run ended otherwise (crashed, refused, cancelled)
    NOT_ATTEMPTED = "not_attempted"


def _wave_size(size: WaveSize, index: int) -> tuple[str, float]:
    """``("count", n)``, ``("percent", p)`` or ``("rest", 0)``; a clear error naming the wave."""
    where = f"waves[{index}]"
    if isinstance(size, bool):
        raise ValueError(f"{where}: a wave is a count, a percentage or 'rest', not {size!r}")
    if isinstance(size, int):
        if size < 1:
            raise ValueError(f"{where}: a wave of {size} services releases nothing")
        return "count", size
    if not isinstance(size, str):
        raise ValueError(f"{where}: a wave is a count, a percentage or 'rest', not {size!r}")
    text = size.strip().lower()
    if text == "rest":
        return "rest", 0
    if text.endswith("%"):
        try:
            percent = float(text[:-1])
        except ValueError:
            percent = math.nan
        if not 0 < percent <= 100:
            raise ValueError(f"{where}: a percentage is within (0, 100]%, not {size!r}")
        return "percent", percent
    if text.isdigit():
        return _wave_size(int(text), index)
    raise ValueError(f"{where}: a wave is a count, a percentage or 'rest', not {size!r}")


def plan_waves(services: list[str], waves: tuple[WaveSize, ...] | list[WaveSize] = DEFAULT_WAVES) -> list[list[str]]:
    """The services of each wave, in the order given.

    A count takes that many services; a percentage takes that share of the *whole* fleet, rounded
    up (25 % of 3 services is one, never none); ``rest`` takes all that are left and may only be
    last. Waves take from the services not yet planned; a wave with nothing left to take is
    dropped, and services the waves do not reach go in one final wave, so every service is
    planned exactly once whatever the sizes say.
    """
    if not services:
        raise ValueError("services: a fleet release needs at least one service")
    if len(set(services)) != len(services):
        twice = sorted({s for s in services if services.count(s) > 1})
        raise ValueError(f"services: listed twice: {', '.join(twice)}")
    sizes = [_wave_size(size, i) for i, size in enumerate(waves)]
    if not sizes:
        raise ValueError("waves: at least one wave")
    if any(kind == "rest" for kind, _ in sizes[:-1]):
        raise ValueError("waves: 'rest' can only be the last wave")
    left, planned = list(services), []
    for kind, amount in sizes:
        if not left:
            break
        if kind == "rest":
            take = len(left)
        elif kind == "percent":
            take = max(1, math.ceil(len(services) * amount / 100 - 1e-9))
        else:
            take = int(amount)
        planned.append(left[:take])
        left = left[take:]
    if left:
        planned.append(left)
    return planned


class FleetSpec(BaseModel):
    """What a fleet release is asked to do: the change, the services, the waves and the limits."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=128)
    environment: str = "staging"
    services: list[str] = Field(min_length=1)
    waves: list[WaveSize] = Field(default_factory=lambda: list(DEFAULT_WAVES))
    max_concurrency: int = Field(default=4, ge=1, le=100)
    stop_on_rollback: bool = True
    #: Release spec fields every service's release shares (steps, thresholds, waits).
    spec: dict = Field(default_factory=dict)
    #: The deployment each service's release runs on; ``{environment}`` is filled in.
    deployment: str = "canary-release/{environment}"

    @field_validator("services")
    @classmethod
    def _names(cls, services: list[str]) -> list[str]:
        for name in services:
            if not SERVICE_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid service name")
        return services

    @field_validator("spec")
    @classmethod
    def _no_per_service_fields(cls, spec: dict) -> dict:
        clash = sorted({"service", "version", "environment"} & set(spec))
        if clash:
            raise ValueError(f"spec cannot set {', '.join(clash)}: the fleet release sets them")
        return spec

    @model_validator(mode="after")
    def _waves_plan(self) -> FleetSpec:
        plan_waves(self.services, self.waves)  # refuses a bad wave now, naming it
        return self

    def release_spec(self, service: str) -> dict:
        return {**self.spec, "service": service, "version": self.version, "environment": self.environment}

    @property
    def deployment_name(self) -> str:
        return self.deployment.format(environment=self.environment)


def should_stop(outcomes: dict[str, Outcome], *, stop_on_rollback: bool) -> bool:
    """Whether nothing more may start. Once a service rolled back (or its release failed), the
    change is suspect everywhere: with ``stop_on_rollback`` not even the rest of its wave starts."""
    return stop_on_rollback and any(o in (Outcome.ROLLED_BACK, Outcome.FAILED) for o in outcomes.values())


class FleetNotPromoted(Exception):
    """A fleet release that stopped (a rollback) or did not finish; ``summary`` is fleet_summary's."""

    def __init__(self, message: str, summary: dict) -> None:
        super().__init__(message)
        self.summary = summary


def fleet_summary(spec: FleetSpec, waves: list[list[str]], outcomes: dict[str, Outcome]) -> dict:
    """Which services went out, rolled back, failed or were not attempted, wave by wave."""
    def of(kind: Outcome) -> list[str]:
        return [s for wave in waves for s in wave if outcomes.get(s, Outcome.NOT_ATTEMPTED) is kind]

    status = "promoted" if len(of(Outcome.PROMOTED)) == len(spec.services) else (
        "rolled_back" if of(Outcome.ROLLED_BACK) else "incomplete")
    return {
        "version": spec.version, "environment": spec.environment, "status": status,
        "waves": [[{"service": s, "outcome": outcomes.get(s, Outcome.NOT_ATTEMPTED).value} for s in wave]
                  for wave in waves],
        "promoted": of(Outcome.PROMOTED), "rolled_back": of(Outcome.ROLLED_BACK),
        "failed": of(Outcome.FAILED), "not_attempted": of(Outcome.NOT_ATTEMPTED),
    }


def summary_markdown(summary: dict) -> str:
    """The fleet run's artifact: one line per service, wave by wave."""
    lines = [f"# Fleet release {summary['version']} to {summary['environment']}: {summary['status']}", "",
             f"- promoted: {', '.join(summary['promoted']) or '—'}",
             f"- rolled back: {', '.join(summary['rolled_back']) or '—'}",
             f"- failed: {', '.join(summary['failed']) or '—'}",
             f"- not attempted: {', '.join(summary['not_attempted']) or '—'}", "",
             "| wave | service | outcome |", "|---|---|---|"]
    for number, wave in enumerate(summary["waves"], 1):
        lines += [f"| {number} | {entry['service']} | {entry['outcome']} |" for entry in wave]
    return "\n".join(lines) + "\n"
