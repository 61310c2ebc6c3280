"""Every CANARYFLOW_* variable no model reads is refused, with the name meant when one is close;
spec keys get the same hint."""

from __future__ import annotations

import pytest

from canaryflow.envcheck import check_variable_names, known_variables, misspelt_variables, unknown_variables
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


@pytest.mark.parametrize("typed,meant", [
    ("CANARYFLOW_MAX_ERROR_RATE", "CANARYFLOW_THRESHOLDS__MAX_ERROR_RATE"),   # shaped like the flags
    ("CANARYFLOW_WAIT", "CANARYFLOW_STEP_WAIT_SECONDS"),
    ("CANARYFLOW_MIN_REQUESTS", "CANARYFLOW_MIN_CANARY_REQUESTS"),
    ("CANARYFLOW_MAX_P95_MS", "CANARYFLOW_THRESHOLDS__MAX_P95_LATENCY_MS"),
    ("CANARYFLOW_INTERVAL", "CANARYFLOW_ANALYSIS_INTERVAL_SECONDS"),
    ("CANARYFLOW_ROUTER", "CANARYFLOW_KUBERNETES__ROUTER"),                  # a section left out
    ("CANARYFLOW_WEBHOOK_GITHUB_SECRT", "CANARYFLOW_WEBHOOK_GITHUB_SECRET"),  # the receiver's own names too
])
def test_flag_shaped_and_sectionless_names_are_refused_with_the_name_to_use(typed, meant):
    assert unknown_variables({typed: "0.5"}) == {typed: meant}


def test_an_unknown_name_like_nothing_is_refused_too():
    assert unknown_variables({"CANARYFLOW_COLOUR": "blue"}) == {"CANARYFLOW_COLOUR": None}
    with pytest.raises(ConfigError,
                       match="CANARYFLOW_COLOUR: not a canaryflow variable; see docs/reference/settings.md"):
        check_variable_names({"CANARYFLOW_COLOUR": "blue"})


@pytest.mark.parametrize("name", ["CANARYFLOW_IMAGE", "CANARYFLOW_TEST_ARTIFACTS", "CANARYFLOW_WEBHOOK_URL",
                                  "CANARYFLOW_WEBHOOK_GITHUB_SECRET", "PROMETHEUS_URL", "CANARYFLOW_STEPS",
                                  "CANARYFLOW_CHECKOUT", "CANARYFLOW_WEBHOOK_BASE_SPEC"])
def test_known_and_unrelated_variables_pass(name):
    assert unknown_variables({name: "x"}) == {}


def test_every_canaryflow_name_the_project_itself_uses_is_known():
    """Tests, scripts, prefect.yaml, the deployment examples and the README set only known names
    (a placeholder such as CANARYFLOW_WEBHOOK_ or a deliberate misspelling excepted)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    used = set()
    for path in [root / "README.md", root / "prefect.yaml", *root.glob("scripts/*"), *root.glob("deployments/**/*"),
                 *root.glob("canaryflow/**/*.py")]:
        if path.is_file():
            used |= set(re.findall(r"CANARYFLOW_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="replace")))
    deliberate = {"CANARYFLOW_PROMETHEUS_ULR", "CANARYFLOW_STEP_WAIT", "CANARYFLOW_GRAFANA_TOKN",
                  "CANARYFLOW_MAX_ERROR_RATE", "CANARYFLOW_WAIT", "CANARYFLOW_MIN_REQUESTS", "CANARYFLOW_MAX_P95_MS",
                  "CANARYFLOW_ROUTER"}
    assert used, "no CANARYFLOW_ names found: the scan is broken"
    assert sorted(used - known_variables() - deliberate) == []


def test_the_error_names_each_variable_and_never_its_value():
    with pytest.raises(ConfigError) as refused:
        check_variable_names({"CANARYFLOW_GRAFANA_TOKN": "glsa_secret_value", "CANARYFLOW_STEP_WAIT": "5"})
    message = str(refused.value)
    assert "CANARYFLOW_GRAFANA_TOKN: not a canaryflow variable; did you mean CANARYFLOW_GRAFANA_TOKEN?" in message
    assert "CANARYFLOW_STEP_WAIT: not a canaryflow variable; did you mean CANARYFLOW_STEP_WAIT_SECONDS?" in message
    assert "glsa_secret_value" not in message
    assert refused.value.fields == ("CANARYFLOW_GRAFANA_TOKN", "CANARYFLOW_STEP_WAIT")


@pytest.mark.parametrize("overrides,hint", [
    ({"step_wait": 5}, "step_wait: Extra inputs are not permitted; did you mean step_wait_seconds?"),
    ({"thresholds": {"max_eror_rate": 0.1}}, "thresholds.max_eror_rate: Extra inputs are not permitted; "
                                             "did you mean max_error_rate?"),
    ({"max_error_rate": 0.1}, "did you mean thresholds.max_error_rate?"),
    ({"smoke": [{"pth": "/"}]}, "smoke.0.pth: Extra inputs are not permitted; did you mean path?"),
])
def test_spec_typos_get_the_field_meant(overrides, hint):
    from canaryflow.spec import load_spec

    with pytest.raises(ConfigError) as refused:
        load_spec(overrides={"service": "checkout", "version": "v2", **overrides}, use_env=False)
    assert hint in str(refused.value)


def test_an_unrelated_spec_key_gets_no_guess():
    from canaryflow.spec import load_spec

    with pytest.raises(ConfigError) as refused:
        load_spec(overrides={"service": "checkout", "version": "v2", "zzz": 1}, use_env=False)
    assert "zzz: Extra inputs are not permitted" in str(refused.value) and "did you mean" not in str(refused.value)


def test_the_check_imports_none_of_the_models_that_call_it():
    """settings and spec check the environment while they load: envcheck reading them back would be
    an import cycle, so it reads the generated list and never imports either."""
    import subprocess
    import sys

    probe = ("import sys; from canaryflow.envcheck import unknown_variables; "
             "found = unknown_variables({'CANARYFLOW_WAIT': '5', 'CANARYFLOW_PROMETHEUS_URL': 'x'}); "
             "print(found, sorted(m for m in sys.modules if m in "
             "('canaryflow.settings', 'canaryflow.spec', 'canaryflow.webhook.config')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "{'CANARYFLOW_WAIT': 'CANARYFLOW_STEP_WAIT_SECONDS'} []"
