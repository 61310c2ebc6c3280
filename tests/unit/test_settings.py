"""Settings come from CANARYFLOW_* variables; a bad one is a ConfigError naming the variable."""

from __future__ import annotations

import pytest

from canaryflow.errors import ConfigError
from canaryflow.settings import get_settings, load_settings


def test_defaults_and_environment(monkeypatch):
    monkeypatch.setenv("CANARYFLOW_PROMETHEUS_URL", "http://prom.internal:9090")
    settings = load_settings()
    assert settings.prometheus_url == "http://prom.internal:9090"
    assert settings.prometheus_timeout_seconds == 5.0 and settings.pushgateway_url is None


@pytest.mark.parametrize("variable,value,message", [
    ("CANARYFLOW_PROMETHEUS_TIMEOUT_SECONDS", "-1", "greater than 0"),
    ("CANARYFLOW_METRICS_PORT", "http", "valid integer"),
    ("CANARYFLOW_METRICS_PORT", "70000", "less than or equal to 65535"),
    ("CANARYFLOW_KUBE_IN_CLUSTER", "perhaps", "valid boolean"),
])
def test_a_bad_value_names_its_variable(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"invalid settings:\n  {variable}: .*{message}"):
        get_settings()


def test_a_misspelt_setting_is_refused(monkeypatch):
    monkeypatch.setenv("CANARYFLOW_PUSHGATEWAY_ULR", "http://127.0.0.1:9091")
    with pytest.raises(ConfigError, match="did you mean CANARYFLOW_PUSHGATEWAY_URL"):
        load_settings()


def test_the_token_never_appears_in_an_error(monkeypatch):
    monkeypatch.setenv("CANARYFLOW_GRAFANA_TOKEN", "glsa_do_not_print")
    monkeypatch.setenv("CANARYFLOW_GRAFANA_TIMEOUT_SECONDS", "0")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert "CANARYFLOW_GRAFANA_TIMEOUT_SECONDS" in str(refused.value)
    assert "glsa_do_not_print" not in str(refused.value)
