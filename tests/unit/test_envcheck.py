"""Misspelt CANARYFLOW_* variables are refused with a hint; unrelated ones are left alone."""

from __future__ import annotations

import pytest

from canaryflow.envcheck import check_variable_names, known_variables, misspelt_variables
from canaryflow.errors import ConfigError


def test_every_spec_and_settings_field_is_known_including_nested_ones():
    known = known_variables()
    for name in ("CANARYFLOW_STEP_WAIT_SECONDS", "CANARYFLOW_THRESHOLDS__MAX_ERROR_RATE",
                 "CANARYFLOW_RETRY__MAX_ATTEMPTS", "CANARYFLOW_APPROVAL__TIMEOUT_SECONDS",
                 "CANARYFLOW_KUBERNETES__ROUTER", "CANARYFLOW_PROMETHEUS_URL", "CANARYFLOW_GRAFANA_TOKEN",
                 "CANARYFLOW_HOME"):
        assert name in known, name


@pytest.mark.parametrize("typed,meant", [
    ("CANARYFLOW_STEP_WAIT", "CANARYFLOW_STEP_WAIT_SECONDS"),            # shortened
    ("CANARYFLOW_PROMETHEUS_ULR", "CANARYFLOW_PROMETHEUS_URL"),          # swapped letters
    ("CANARYFLOW_THRESHOLDS__MAX_EROR_RATE", "CANARYFLOW_THRESHOLDS__MAX_ERROR_RATE"),
    ("CANARYFLOW_MIN_CANARY_REQUEST", "CANARYFLOW_MIN_CANARY_REQUESTS"),
])
def test_near_misses_are_found_with_the_name_meant(typed, meant):
    assert misspelt_variables({typed: "5"}) == {typed: meant}


@pytest.mark.parametrize("name", ["CANARYFLOW_IMAGE", "CANARYFLOW_TEST_ARTIFACTS", "CANARYFLOW_WEBHOOK_SECRET",
                                  "CANARYFLOW_WEBHOOK_GITHUB_SECRET", "PROMETHEUS_URL", "CANARYFLOW_STEPS"])
def test_known_and_unrelated_variables_pass(name):
    assert misspelt_variables({name: "x"}) == {}


def test_the_error_names_each_variable_and_never_its_value():
    with pytest.raises(ConfigError) as refused:
        check_variable_names({"CANARYFLOW_GRAFANA_TOKN": "glsa_secret_value", "CANARYFLOW_STEP_WAIT": "5"})
    message = str(refused.value)
    assert "CANARYFLOW_GRAFANA_TOKN: not a canaryflow variable; did you mean CANARYFLOW_GRAFANA_TOKEN?" in message
    assert "CANARYFLOW_STEP_WAIT: not a canaryflow variable; did you mean CANARYFLOW_STEP_WAIT_SECONDS?" in message
    assert "glsa_secret_value" not in message
    assert refused.value.fields == ("CANARYFLOW_GRAFANA_TOKN", "CANARYFLOW_STEP_WAIT")
