"""Webhook settings from the environment: lists, secrets, template, base spec."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from canaryflow.errors import ConfigError
from canaryflow.webhook.config import WebhookConfig, resolve_secrets


def test_defaults():
    config = WebhookConfig()
    assert config.max_body_bytes == 1024 * 1024
    assert (config.rate_limit_per_second, config.rate_limit_burst) == (10, 20)
    assert config.github_events == ["deployment", "release", "registry_package"]
    assert config.deployment_name(environment="production", service="x") == "canary-release/production"


def test_environment_lists_secrets_and_repr(monkeypatch):
    monkeypatch.setenv("CANARYFLOW_WEBHOOK_GITHUB_EVENTS", "deployment, workflow_run")
    monkeypatch.setenv("CANARYFLOW_WEBHOOK_GITLAB_EVENTS", '["Pipeline Hook"]')
    monkeypatch.setenv("CANARYFLOW_WEBHOOK_GITHUB_SECRET", "gh-very-secret")
    monkeypatch.setenv("CANARYFLOW_WEBHOOK_GENERIC_SECRET", "gen-very-secret")
    monkeypatch.setenv("CANARYFLOW_WEBHOOK_MAX_BODY_BYTES", "2048")
    config = WebhookConfig()
    assert config.github_events == ["deployment", "workflow_run"]
    assert config.gitlab_events == ["Pipeline Hook"]
    assert config.max_body_bytes == 2048
    secrets = resolve_secrets(config)
    assert secrets.get("github") == "gh-very-secret" and secrets.get("gitlab") is None
    assert secrets.enabled() == {"github": True, "gitlab": False, "generic": True, "fleet": False,
                                 "alertmanager": False}
    for text in (repr(config), str(config), repr(secrets), config.model_dump_json()):
        assert "very-secret" not in text


def test_template_placeholders_are_checked():
    assert WebhookConfig(deployment_template="canary-release/{service}-{environment}").deployment_name(
        environment="staging", service="checkout") == "canary-release/checkout-staging"
    for bad in ("canary-release/{env}", "no-slash-{environment}"):
        with pytest.raises(ValidationError):
            WebhookConfig(deployment_template=bad)


def test_base_spec_file(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text("environment: production\nstep_wait_seconds: 30\n")
    assert WebhookConfig(base_spec=path).load_base_spec() == {"environment": "production", "step_wait_seconds": 30}
    with pytest.raises(ConfigError):
        WebhookConfig(base_spec=tmp_path / "missing.yaml").load_base_spec()


def test_connection_limits_have_documented_defaults_and_refuse_non_finite_values(monkeypatch):
    config = WebhookConfig()
    assert (config.body_timeout_seconds, config.header_timeout_seconds, config.max_header_bytes,
            config.max_connections, config.keep_alive_seconds, config.max_json_depth, config.max_alerts) == (
        10, 10, 16 * 1024, 100, 5, 32, 100)
    for variable in ("CANARYFLOW_WEBHOOK_BODY_TIMEOUT_SECONDS", "CANARYFLOW_WEBHOOK_START_TIMEOUT_SECONDS"):
        for value in ("inf", "nan"):
            monkeypatch.setenv(variable, value)
            with pytest.raises(ValidationError):
                WebhookConfig()
        monkeypatch.delenv(variable)

