"""Settings of the webhook receiver: ``CANARYFLOW_WEBHOOK_*`` variables (or constructor arguments).

Secrets come from the environment (``..._GITHUB_SECRET``, ``..._GITLAB_TOKEN``,
``..._GENERIC_SECRET``, ``..._FLEET_SECRET``, ``..._ALERTMANAGER_TOKEN``) or from Prefect Secret blocks named by
``..._SECRET_BLOCK`` / ``..._TOKEN_BLOCK`` variables,
resolved once at startup by :func:`resolve_secrets`. A source without a secret is disabled: it
answers 401 to everything, and the receiver says so once in its log when it starts.
Lists accept JSON (``["a","b"]``) or comma-separated values (``a,b``).
"""

from __future__ import annotations

import json
import logging
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from canaryflow.errors import ConfigError
from canaryflow.webhook.alertmanager import DEFAULT_MAX_ALERTS
from canaryflow.webhook.payload import DEFAULT_MAX_DEPTH

log = logging.getLogger("canaryflow.webhook")

#: Sources whose deliveries start releases.
CI_SOURCES = ("github", "gitlab", "generic")
#: Every authenticated route: the CI sources, fleet releases (one version to many services, signed
#: like the generic route but with a secret of its own: it moves every service it names) and
#: Alertmanager (firing alerts start rollbacks).
SOURCES = (*CI_SOURCES, "fleet", "alertmanager")
#: Services one fleet delivery may name: each becomes a child release run.
DEFAULT_MAX_FLEET_SERVICES = 200

#: GitHub events that may start a release, each with its own condition (see mapping.py). `workflow_run`
#: is supported but opt-in: every successful workflow of the repository (tests, lint) would start one.
DEFAULT_GITHUB_EVENTS = ["deployment", "release", "registry_package"]  # workflow_run: opt-in
DEFAULT_GITLAB_EVENTS = ["Pipeline Hook", "Deployment Hook"]
#: Alerts of monitoring/prometheus/alerts.yml that mean "this canary is hurting users": they carry
#: `service` and `environment` labels. Pipeline-health alerts (DeploymentRollbackDetected, ...) do not
#: call for a rollback: DeploymentRollbackDetected would even answer a rollback with another one.
DEFAULT_ROLLBACK_ALERTS = ["HighErrorRateProduction", "HighErrorRateStaging", "HighLatencyProduction",
                           "HighLatencyStaging"]

CommaList = Annotated[list[str], NoDecode]


def _split(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class WebhookConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CANARYFLOW_WEBHOOK_", extra="ignore", allow_inf_nan=False)

    github_secret: SecretStr | None = Field(default=None,
                                            description="GitHub webhook secret; unset: the route is disabled")
    gitlab_token: SecretStr | None = Field(default=None,
                                           description="GitLab secret token; unset: the route is disabled")
    generic_secret: SecretStr | None = Field(default=None,
                                             description="Generic route's HMAC secret; unset: the route is disabled")
    github_secret_block: str | None = Field(default=None, description="Prefect Secret block name")
    gitlab_token_block: str | None = Field(default=None, description="Prefect Secret block name")
    generic_secret_block: str | None = Field(default=None, description="Prefect Secret block name")
    fleet_secret: SecretStr | None = Field(default=None,
                                           description="Fleet route's HMAC secret; unset: the route is disabled")
    fleet_secret_block: str | None = Field(default=None, description="Prefect Secret block name")
    alertmanager_token: SecretStr | None = Field(default=None, description="Alertmanager's bearer credentials")
    alertmanager_token_block: str | None = Field(default=None, description="Prefect Secret block name")

    max_body_bytes: int = Field(default=1024 * 1024, ge=1, description="larger bodies answer 413")
    max_json_depth: int = Field(default=DEFAULT_MAX_DEPTH, ge=2, le=256,
                                description="deeper bodies answer 400")
    max_alerts: int = Field(default=DEFAULT_MAX_ALERTS, ge=1, description="alerts per Alertmanager notification")
    max_fleet_services: int = Field(default=DEFAULT_MAX_FLEET_SERVICES, ge=1, le=10_000,
                                    description="services per fleet delivery (more: 422)")
    rate_limit_per_second: float = Field(default=10.0, ge=0, description="0 disables the limit")
    rate_limit_burst: int = Field(default=20, ge=0, description="token bucket size per route and client")
    timestamp_tolerance_seconds: int = Field(default=300, ge=1, description="generic route window")

    # Slow or greedy clients (applied by serve(); see canaryflow.webhook.server).
    body_timeout_seconds: float = Field(default=10.0, gt=0, description="whole body by then, else 408")
    header_timeout_seconds: float = Field(default=10.0, gt=0,
                                          description="request head by then, else the connection is closed")
    max_header_bytes: int = Field(default=16 * 1024, ge=1024,
                                  description="request head size cap (431; 400 from h11 when it arrives in pieces)")
    max_connections: int = Field(default=100, ge=1,
                                 description="open connections before new requests answer 503 (uvicorn)")
    keep_alive_seconds: int = Field(default=5, ge=1, description="idle time before a kept-alive connection closes")

    github_events: CommaList = Field(default_factory=lambda: list(DEFAULT_GITHUB_EVENTS),
                                     description="GitHub allow-list (`workflow_run` supported, opt-in)")
    github_workflows: CommaList = Field(default_factory=list,
                                        description="workflow_run: only these workflow names (empty: any)")
    gitlab_events: CommaList = Field(default_factory=lambda: list(DEFAULT_GITLAB_EVENTS),
                                     description="GitLab allow-list")
    allow_spec_overrides: bool = Field(default=True, description="accept `spec` overrides from payloads")

    deployment_template: str = Field(default="canary-release/{environment}",
                                     description="Prefect deployment per release ({environment}, {service})")
    rollback_alerts: CommaList = Field(default_factory=lambda: list(DEFAULT_ROLLBACK_ALERTS),
                                       description="alertnames whose firing starts a rollback")
    rollback_deployment: str = Field(default="canary-rollback/manual",
                                     pattern=r"^[^/\s]+/[^/\s]+$", description="'<flow name>/<deployment name>'")
    fleet_deployment: str = Field(default="canary-fleet/fleet", pattern=r"^[^/\s]+/[^/\s]+$",
                                  description="fleet route: '<flow name>/<deployment name>'")
    base_spec: Path | None = Field(default=None, description="spec file merged under the mapped values")
    start_timeout_seconds: float = Field(default=8.0, gt=0, description="Prefect API call budget")
    trusted_proxies: str | None = Field(
        default=None, description="addresses whose X-Forwarded-For is trusted (uvicorn forwarded_allow_ips)")

    @field_validator("github_events", "github_workflows", "gitlab_events", "rollback_alerts", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("deployment_template")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        names = {field for _, field, _, _ in string.Formatter().parse(value) if field is not None}
        unknown = sorted(names - {"environment", "service"})
        if unknown:
            raise ValueError(f"unknown placeholder(s) {unknown}; allowed: ['environment', 'service']")
        if "/" not in value:
            raise ValueError("must be '<flow name>/<deployment name>'")
        return value

    def deployment_name(self, *, environment: str, service: str) -> str:
        return self.deployment_template.format(environment=environment, service=service)

    def load_base_spec(self) -> dict[str, Any]:
        if self.base_spec is None:
            return {}
        from canaryflow.spec import read_spec_file

        return read_spec_file(self.base_spec)


@dataclass(frozen=True)
class WebhookSecrets:
    """The resolved secrets; ``repr`` never shows them."""

    github: SecretStr | None = None
    gitlab: SecretStr | None = None
    generic: SecretStr | None = None
    alertmanager: SecretStr | None = None
    fleet: SecretStr | None = None

    def get(self, source: str) -> str | None:
        value: SecretStr | None = getattr(self, source)
        return value.get_secret_value() if value is not None and value.get_secret_value() else None

    def enabled(self) -> dict[str, bool]:
        return {source: self.get(source) is not None for source in SOURCES}


def _load_block(name: str, source: str) -> SecretStr:
    from prefect.blocks.system import Secret

    from canaryflow.prefect_sync import sync_result

    try:
        # _sync: the receiver may resolve secrets from its event loop; Prefect's sync_compatible
        # wrapper accepts it, its signature does not show it.
        block = sync_result(Secret.load(name, _sync=True), "Secret.load")  # type: ignore[call-arg]
    except Exception as exc:  # noqa: BLE001 - name the block and the kind of failure, never a value
        raise ConfigError(f"cannot load Prefect Secret block {name!r} for the {source} webhook: "
                          f"{type(exc).__name__}", fields=(f"{source}_secret_block",)) from None
    value = block.get()
    if not isinstance(value, str) or not value:
        raise ConfigError(f"Prefect Secret block {name!r} for the {source} webhook is empty or not a string",
                          fields=(f"{source}_secret_block",))
    return SecretStr(value)


def resolve_secrets(config: WebhookConfig) -> WebhookSecrets:
    """Environment values win; a named Secret block fills a source the environment left empty."""
    pairs = {"github": (config.github_secret, config.github_secret_block),
             "gitlab": (config.gitlab_token, config.gitlab_token_block),
             "generic": (config.generic_secret, config.generic_secret_block),
             "fleet": (config.fleet_secret, config.fleet_secret_block),
             "alertmanager": (config.alertmanager_token, config.alertmanager_token_block)}
    resolved: dict[str, SecretStr | None] = {}
    for source, (direct, block) in pairs.items():
        if direct is not None and direct.get_secret_value():
            resolved[source] = direct
        elif block:
            resolved[source] = _load_block(block, source)
        else:
            resolved[source] = None
    return WebhookSecrets(**resolved)
