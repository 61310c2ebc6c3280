"""The services one local platform runs: each with its own stable version, catalogue and load.

A platform team releases dozens of services on one afternoon; one service per stack could never
show two releases of different services competing for the same Prometheus, workers and cores.
A :class:`ServicePlan` is what :class:`~canaryflow.local.stack.LocalStack` needs per service; the
controller process receives the plans as a JSON file (:func:`write_plans` / :func:`read_plans`),
with the two fixed slot ports each service's stable and canary take turns on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: Service names double as HTTP Host names and Prometheus label values: DNS labels, like the spec's.
SERVICE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class ServicePlan(BaseModel):
    """One service of a local stack: the version it starts on, its catalogue and its load."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stable: str = "v1"
    rps: float = Field(default=100, ge=0)
    # None: the packaged catalogue. A service of its own catalogue behaves its own way per version
    # (the same v2 healthy on one service and failing on another, as a shared change can).
    catalog: Path | None = None


class PlannedService(BaseModel):
    """What the controller process needs to run one service (the stack fills in ports and paths)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str
    stable: str
    catalog: Path
    slot_ports: tuple[int, int]


def check_service_names(names: list[str]) -> None:
    """Refuse names that could not be a Host header or a label value, naming the bad one."""
    if not names:
        raise ValueError("services: a stack needs at least one service")
    for name in names:
        if not isinstance(name, str) or not SERVICE_NAME.fullmatch(name):
            raise ValueError(f"services: {name!r} is not a valid service name (a DNS label: a-z, 0-9, '-')")


def write_plans(path: Path, plans: list[PlannedService]) -> None:
    path.write_text(json.dumps([p.model_dump(mode="json") for p in plans], indent=1))


def read_plans(path: Path) -> list[PlannedService]:
    """The plans of a services file; a clear error naming the field when one is wrong."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read services file {path}: {err}") from None
    if not isinstance(raw, list):
        raise ValueError(f"{path}: a services file is a JSON list of services")
    try:
        plans = [PlannedService.model_validate(item) for item in raw]
    except ValidationError as err:
        first = err.errors()[0]
        raise ValueError(f"{path}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    names = [p.service for p in plans]
    check_service_names(names)
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: a service is listed twice")
    return plans
