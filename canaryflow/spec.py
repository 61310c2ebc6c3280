"""The release spec: what to release, where, and how strictly to judge it.

A spec is assembled from three layers, later ones winning: a file (YAML, JSON or TOML), the
environment (``CANARYFLOW_*``, nested fields with ``__``), then explicit overrides such as CLI flags.
Validation happens once, on the merged result, so an error names the field as the user wrote it
and nothing starts until the whole spec is valid.
"""

from __future__ import annotations

import json
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from canaryflow.analysis_spec import Analysis, QueryTemplates, render
from canaryflow.errors import ConfigError
from canaryflow.kube.target import KubernetesTarget

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
PROMQL_DURATION = r"^[0-9]+(ms|s|m|h|d)$"


_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(duration: str) -> float:
    """Seconds in a PromQL duration such as ``90s`` or ``1m`` (the forms ``analysis_window`` accepts)."""
    number = duration.rstrip("smhd")
    return float(number) * _DURATION_SECONDS[duration[len(number):]]


class Environment(StrEnum):
    staging = "staging"
    production = "production"


class Thresholds(BaseModel):
    """Limits a canary must stay under. A field left out takes the environment's default."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_error_rate: float | None = Field(
        default=None, ge=0, le=1, description="Fraction of 5xx responses, e.g. 0.001 = 0.1%"
    )
    max_p95_latency_ms: float | None = Field(default=None, gt=0, description="95th percentile latency in ms")


#: Seed thresholds: production is ten times stricter on errors than staging.
DEFAULT_THRESHOLDS: dict[Environment, Thresholds] = {
    Environment.production: Thresholds(max_error_rate=0.001, max_p95_latency_ms=200),
    Environment.staging: Thresholds(max_error_rate=0.01, max_p95_latency_ms=500),
}


class SmokeCheck(BaseModel):
    """One request sent straight to the canary before it gets any user traffic."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    path: str = Field(pattern=r"^/", description="Path on the canary (on Kubernetes, under `kubernetes.canary_url`)")
    method: Literal["GET", "HEAD", "POST"] = Field(default="GET", description="HTTP method")
    expect_status: int = Field(default=200, ge=100, le=599, description="Any other status fails the check")
    max_latency_ms: float = Field(default=1000, gt=0, description="A slower answer fails the check")
    body_contains: str | None = Field(default=None, description="Text the response body must contain")


#: Reasons that say nothing about the version itself: the same release may pass later.
RETRYABLE_REASONS = ("metrics_unavailable", "platform_error", "insufficient_data")


class RetryPolicy(BaseModel):
    """Scheduled retries of an aborted canary: a new run of the same deployment at now + backoff.

    Only for reasons that say nothing about the version (Prometheus down, a platform hiccup);
    a FAIL verdict, a failed smoke test or a stuck rollout are never retried.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_attempts: int = Field(default=3, ge=1, le=20, description="Attempts in all, the first one included")
    backoff_seconds: float = Field(default=300, ge=0, description="Delay before the first retry")
    backoff_factor: float = Field(default=2, ge=1, description="Each further delay is the previous one times this")
    max_backoff_seconds: float = Field(default=3600, gt=0, description="Cap on any delay")
    on_reasons: list[str] = Field(
        default_factory=lambda: ["metrics_unavailable", "platform_error"],
        description="Abort reasons that schedule a retry: metrics_unavailable, platform_error, "
                    "insufficient_data; any other reason is refused",
    )

    @field_validator("on_reasons")
    @classmethod
    def _only_transient(cls, reasons: list[str]) -> list[str]:
        wrong = sorted(set(reasons) - set(RETRYABLE_REASONS))
        if wrong:
            raise ValueError(f"{wrong} cannot be retried (a bad version is never retried); "
                             f"allowed: {list(RETRYABLE_REASONS)}")
        return reasons

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2 = the first retry): exponential, capped."""
        return min(self.backoff_seconds * self.backoff_factor ** max(attempt - 2, 0), self.max_backoff_seconds)


class ApprovalGate(BaseModel):
    """A person confirms before the last step (full traffic), in the environments listed."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    environments: list[Environment] = Field(
        default_factory=list,
        description="Environments where a person approves the last step; empty: no gate. "
                    "A single-step release is never gated",
    )
    timeout_seconds: int = Field(default=3600, ge=1, description="No answer by then: roll back (reason manual)")
    poll_seconds: int = Field(default=5, ge=1, description="How often the paused run looks for an answer")


class ReleaseSpec(BaseModel):
    """Everything the release flow needs to know, validated before anything starts."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    service: str = Field(pattern=NAME_PATTERN, max_length=63, description="Service to release")
    version: str = Field(pattern=VERSION_PATTERN, description="Version to release")
    environment: Environment = Field(
        default=Environment.staging,
        description="Picks the default thresholds; checked against `approval.environments`",
    )
    platform: Literal["local", "kubernetes"] = Field(
        default="local",
        description="`local`: the embedded platform; `kubernetes`: a cluster, needs the `kubernetes` section",
    )
    namespace: str = Field(
        default="default", pattern=NAME_PATTERN,
        description="`$namespace` in query templates; on Kubernetes, the namespace released into",
    )
    steps: list[int] = Field(
        default_factory=lambda: [10, 50, 100],
        description="Canary weights in percent, strictly increasing, ending at 100 (also `10,50,100`)",
    )
    step_wait_seconds: float = Field(default=300, ge=0, description="Time at each step, analysed all along")
    analysis_interval_seconds: float = Field(default=30, gt=0, description="Time between analysis rounds")
    analysis_window: str = Field(
        default="1m", pattern=PROMQL_DURATION,
        description="`$window` in threshold metrics' queries, a positive PromQL duration (`30s`, `1m`, `2h`); "
                    "the judge's own metrics read raw counters and need no window",
    )
    thresholds: Thresholds | None = Field(
        default=None, description="SLO limits; a limit left out keeps the environment's default",
    )
    min_canary_requests: int = Field(
        default=50, ge=1,
        description="Fewer canary requests at the current step: INCONCLUSIVE (the step cannot pass yet)",
    )
    max_consecutive_errors: int = Field(
        default=3, ge=1, description="Rounds in a row without metrics before `metrics_unavailable`",
    )
    max_hold_seconds: float = Field(default=120, ge=0, description="Extra time after a wait to obtain a PASS")
    max_step_backs: int = Field(
        default=1, ge=0,
        description="Times a release may step back to the previous weight when a limit is breached where no "
                    "baseline serves (100 %), to tell an incident on every version from the canary's fault; "
                    "0 rolls back at once",
    )
    ready_timeout_seconds: float = Field(
        default=300, gt=0, description="Deadline for the canary to be ready, else `rollout_stuck`",
    )
    traffic_lease_seconds: float | None = Field(
        default=None, gt=0,
        description="Canary weight reverts to 0 unless renewed within this time (crashed orchestrator). "
                    "Default: max(30 s, 3 x analysis interval).",
    )
    smoke: list[SmokeCheck] = Field(
        default_factory=lambda: [SmokeCheck(path="/api/health"), SmokeCheck(path="/api/orders")],
        description="Requests sent straight to the canary before it gets user traffic; a list replaces the default",
    )
    queries: QueryTemplates = Field(default_factory=QueryTemplates,
                                    description="Raw-counter templates the default metrics read")
    analysis: Analysis = Field(default_factory=Analysis, description="Which metrics judge the canary, and how strictly")
    query_preset: Literal["app", "istio"] | None = Field(
        default=None, description="Named query templates (canaryflow.kube.presets) used instead of `queries`",
    )
    kubernetes: KubernetesTarget | None = Field(
        default=None, description="Where the release lands when platform is kubernetes",
    )
    commit_timestamp: AwareDatetime | None = Field(
        default=None,
        description="When the released commit was made (ISO 8601 with offset, or Unix time), e.g. "
                    "`git show -s --format=%cI`. Starts the DORA lead-time clock; without it lead time "
                    "counts from the release start.",
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy,
                               description="Scheduled retries of an aborted canary (deployment runs only)")
    approval: ApprovalGate = Field(default_factory=ApprovalGate, description="Approval gate before the last step")
    queue_timeout_seconds: float = Field(
        default=900, ge=0,
        description="How long a release waits for another release of the same service to finish",
    )

    @field_validator("analysis_window")
    @classmethod
    def _positive_window(cls, window: str) -> str:
        # Prometheus answers 400 "duration must be greater than 0" to rate(x[0s]): every round
        # would be an ERROR and a healthy canary would roll back as metrics_unavailable.
        if duration_seconds(window) <= 0:
            raise ValueError("must be a positive PromQL duration, e.g. 30s, 1m or 2h")
        return window

    @field_validator("steps")
    @classmethod
    def _steps_climb_to_full(cls, steps: list[int]) -> list[int]:
        if not steps:
            raise ValueError("at least one step is required")
        if any(not 1 <= s <= 100 for s in steps):
            raise ValueError("every step is a canary weight between 1 and 100")
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError("steps must strictly increase")
        if steps[-1] != 100:
            raise ValueError("the last step must be 100 (the canary takes all traffic before promotion)")
        return steps

    @model_validator(mode="after")
    def _environment_thresholds(self) -> ReleaseSpec:
        defaults = DEFAULT_THRESHOLDS[self.environment]
        given = self.thresholds.model_dump(exclude_none=True) if self.thresholds else {}
        self.thresholds = defaults.model_copy(update=given)
        return self

    @model_validator(mode="after")
    def _platform_and_presets(self) -> ReleaseSpec:
        def invalid(field: str, error_type: str, message: str) -> ValidationError:
            return ValidationError.from_exception_data("ReleaseSpec", [InitErrorDetails(
                type=PydanticCustomError(error_type, message), loc=(field,), input=None)])

        if self.platform == "kubernetes" and self.kubernetes is None:
            raise invalid("kubernetes", "kubernetes_section_missing",
                          "platform kubernetes needs a kubernetes section (at least its router)")
        if self.query_preset is not None:
            from canaryflow.kube.presets import preset

            chosen = preset(self.query_preset)
            if "queries" in self.model_fields_set and self.queries not in (chosen, QueryTemplates()):
                raise invalid("query_preset", "preset_and_queries", "set either query_preset or queries, not both")
            self.queries = chosen
        return self

    @property
    def max_error_rate(self) -> float:
        assert self.thresholds and self.thresholds.max_error_rate is not None  # filled by the validator
        return self.thresholds.max_error_rate

    @property
    def max_p95_latency_ms(self) -> float:
        assert self.thresholds and self.thresholds.max_p95_latency_ms is not None  # filled by the validator
        return self.thresholds.max_p95_latency_ms

    def render(self, template: str, *, version: str | None = None) -> str:
        """A query template for this release; ``version`` defaults to the canary's (the baseline's
        queries are the same templates rendered with the stable version)."""
        return render(template, service=self.service, version=version or self.version,
                      namespace=self.namespace, window=self.analysis_window)

    @property
    def committed_at(self) -> float | None:
        """Unix time of the commit being released, for the lead-time metric."""
        return self.commit_timestamp.timestamp() if self.commit_timestamp else None

    @property
    def needs_approval(self) -> bool:
        return self.environment in self.approval.environments and len(self.steps) > 1

    @property
    def run_name(self) -> str:
        return f"release/{self.service}/{self.version}/{self.environment.value}"


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """Read a spec file by its suffix. Errors name the file, not a parser internals."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read spec file {p}: {exc.strerror}") from None
    try:
        if p.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif p.suffix == ".json":
            data = json.loads(text)
        elif p.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise ConfigError(f"spec file {p} must end in .yaml, .yml, .json or .toml")
    except (yaml.YAMLError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"spec file {p} is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"spec file {p} must hold a mapping of fields")
    return data


class _SpecFromEnvironment(BaseSettings, ReleaseSpec):
    """ReleaseSpec's fields as ``CANARYFLOW_*`` variables; only its source is used, never an instance."""

    model_config = SettingsConfigDict(env_prefix="CANARYFLOW_", env_nested_delimiter="__", extra="ignore")


class _SpecEnvironmentSource(EnvSettingsSource):
    """Lists and sections are JSON; ``CANARYFLOW_STEPS`` also takes ``10,50,100`` as ``--steps`` does.
    A value that does not decode is a ``ConfigError`` naming its variable, not a library traceback."""

    def decode_complex_value(self, field_name: str, field: Any, value: Any) -> Any:
        if field_name == "steps" and isinstance(value, str) and not value.lstrip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:  # never echo the value: a section may carry a secret
            variable = self._variable_holding(field_name, value)
            # The field as every other refusal names it: the dotted path (approval.environments), not
            # the last name alone that the library decodes a nested variable by.
            nested = self.env_nested_delimiter or "__"
            path = variable.lower().removeprefix(self.env_prefix.lower()).replace(nested, ".")
            raise ConfigError(f"invalid environment:\n  {variable}: not valid JSON (lists and sections are "
                              f"JSON, e.g. CANARYFLOW_SMOKE='[{{\"path\": \"/healthz\"}}]')",
                              fields=(path,)) from None

    def _variable_holding(self, field_name: str, value: Any) -> str:
        """The variable as the user wrote it: a nested field is decoded by its last name only."""
        top, nested = f"{self.env_prefix}{field_name}".lower(), f"{self.env_nested_delimiter}{field_name}".lower()
        for key, raw in self.env_vars.items():
            if raw == value and (key.lower() == top or key.lower().endswith(nested)):
                return key.upper()
        return top.upper()


def _environment_values() -> dict[str, Any]:
    """Raw ``CANARYFLOW_*`` values, parsed by pydantic-settings but validated later with the rest."""
    from canaryflow.envcheck import check_variable_names

    check_variable_names()
    try:
        return _SpecEnvironmentSource(_SpecFromEnvironment)()
    except SettingsError as exc:  # any other value pydantic-settings cannot parse; it names the field
        raise ConfigError(f"invalid environment: {exc}") from None


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, nested mappings merged key by key (a partial ``thresholds`` keeps the rest)."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def format_validation_error(exc: ValidationError) -> ConfigError:
    from canaryflow.envcheck import spec_field_hint

    fields = tuple(".".join(str(p) for p in err["loc"]) or "<spec>" for err in exc.errors())
    lines = [f"  {f}: {err['msg']}{spec_field_hint(ReleaseSpec, err)}"
             for f, err in zip(fields, exc.errors(), strict=False)]
    return ConfigError("invalid release spec:\n" + "\n".join(lines), fields=fields)


def load_spec(
    path: str | Path | None = None, *, overrides: dict[str, Any] | None = None, use_env: bool = True
) -> ReleaseSpec:
    """Merge file < environment < overrides and validate once."""
    data: dict[str, Any] = read_spec_file(path) if path else {}
    if use_env:
        data = deep_merge(data, _environment_values())
    data = deep_merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    return validate_spec(data)


def validate_spec(data: dict[str, Any] | ReleaseSpec) -> ReleaseSpec:
    if isinstance(data, ReleaseSpec):
        return data
    try:
        return ReleaseSpec.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(exc) from None
