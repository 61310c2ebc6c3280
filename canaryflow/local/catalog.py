"""Version catalogue: how each version of the demo service behaves.

The catalogue is the single source of truth for the fault profile of every
version, so the controller can refuse unknown versions up front and each
service process can look up its own behaviour by name. Validation is strict
(unknown fields are errors) because a typo such as ``eror_rate`` would
otherwise silently produce a healthy version and make a test meaningless.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_CATALOG = Path(__file__).with_name("versions.yaml")

# z-score of the 95th percentile of a standard normal distribution.
_Z95 = 1.6448536269514722


class CatalogError(ValueError):
    """The catalogue file is missing, malformed or fails validation."""


class UnknownVersionError(KeyError, ValueError):
    """A version name that is not in the catalogue.

    Subclasses both KeyError (it is a failed lookup) and ValueError (callers
    validating user input can catch one type). ``str()`` is the plain message,
    not KeyError's quoted repr.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LatencySpec(_Strict):
    """Latency quantiles; requests sleep a log-normal sample fitted to them."""

    p50: float = Field(gt=0)
    p95: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> LatencySpec:
        if self.p95 < self.p50:
            raise ValueError(f"p95 ({self.p95}) must be >= p50 ({self.p50})")
        return self

    def sample_seconds(self, rng: random.Random | None = None) -> float:
        """Draw one latency in seconds from the fitted log-normal."""
        gauss = rng.gauss if rng is not None else random.gauss
        mu = math.log(self.p50)
        sigma = (math.log(self.p95) - mu) / _Z95
        return math.exp(gauss(mu, sigma)) / 1000.0


class FaultSpec(_Strict):
    """A fixed response override applied to every request on one path."""

    status: int = Field(default=200, ge=100, le=599)
    latency_ms: float | None = Field(default=None, ge=0)
    body: str | None = None


class SlowSpec(_Strict):
    """A slow tail: ``fraction`` of the requests take ``extra_ms`` longer than the latency model.

    A log-normal fitted to p50/p95 has a thin tail; real regressions often hide there instead (a
    cache miss, a retry, a lock) and leave the median untouched, so the tail is its own field.
    """

    fraction: float = Field(gt=0.0, le=1.0)
    extra_ms: float = Field(gt=0)


class IncidentSpec(_Strict):
    """Recurring incidents that raise the error rate of every running version at once.

    The first starts ``every_s`` after the controller does, then one every ``every_s`` (start to
    start), each lasting ``duration_s``.
    """

    every_s: float = Field(gt=0)
    duration_s: float = Field(gt=0)
    error_rate: float = Field(gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _has_quiet_time(self) -> IncidentSpec:
        # An incident as long as its period would never end: say so instead of running a permanent outage.
        if self.duration_s >= self.every_s:
            raise ValueError(f"duration_s ({self.duration_s:g}) must be shorter than every_s ({self.every_s:g})")
        return self


class VersionSpec(_Strict):
    """Behaviour of one service version; every field is optional.

    ``error_rate`` is the probability that a request fails (HTTP 500), drawn independently for
    every request, as real failures are: they come in runs and gaps, not one in every 1/rate.
    """

    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    latency_ms: LatencySpec | None = None
    slow: SlowSpec | None = None
    faults: dict[str, FaultSpec] = Field(default_factory=dict)
    readiness_delay_s: float = Field(default=0.0, ge=0.0)
    crash_on_start: bool = False
    # Seconds after start at which a process that served normally dies: a canary that passes its
    # smoke tests and then fails mid-rollout, which crash_on_start cannot exercise.
    crash_after_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _fault_paths_absolute(self) -> VersionSpec:
        bad = [p for p in self.faults if not p.startswith("/")]
        if bad:
            raise ValueError(f"fault paths must start with '/': {bad}")
        return self

    @model_validator(mode="after")
    def _one_crash_mode(self) -> VersionSpec:
        # Both at once would silently mean crash_on_start; refuse the contradiction instead.
        if self.crash_on_start and self.crash_after_s is not None:
            raise ValueError("crash_on_start and crash_after_s are mutually exclusive")
        return self


class Catalog(_Strict):
    """The whole catalogue: default service name, the known versions and optional incidents."""

    service: str = "checkout"
    versions: dict[str, VersionSpec]
    incident: IncidentSpec | None = None

    @property
    def names(self) -> list[str]:
        return sorted(self.versions)

    def version(self, name: str) -> VersionSpec:
        """Return the spec for ``name`` or raise UnknownVersionError listing known ones."""
        try:
            return self.versions[name]
        except KeyError:
            known = ", ".join(self.names) or "(none)"
            raise UnknownVersionError(
                f"unknown version {name!r}; known versions: {known}"
            ) from None


def _describe(err: ValidationError) -> str:
    """Flatten pydantic errors to 'versions.v9.eror_rate: Extra inputs ...' lines."""
    lines = []
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"])
        lines.append(f"{loc}: {item['msg']}")
    return "; ".join(lines)


def parse_catalog(data: object, source: str = "<data>") -> Catalog:
    """Validate an already-parsed mapping into a Catalog."""
    if not isinstance(data, dict):
        raise CatalogError(f"{source}: catalogue must be a mapping, got {type(data).__name__}")
    try:
        return Catalog.model_validate(data)
    except ValidationError as err:
        raise CatalogError(f"{source}: invalid catalogue: {_describe(err)}") from None


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and validate a catalogue file (the packaged default when ``path`` is None)."""
    path = Path(path) if path is not None else DEFAULT_CATALOG
    try:
        text = path.read_text()
    except OSError as err:
        raise CatalogError(f"cannot read catalogue {path}: {err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise CatalogError(f"{path}: invalid YAML: {err}") from None
    return parse_catalog(data, str(path))


def resolve_catalog_path(path: str | Path | None) -> Path:
    """Absolute catalogue path, so child processes load exactly the same file."""
    return (Path(path) if path is not None else DEFAULT_CATALOG).resolve()
