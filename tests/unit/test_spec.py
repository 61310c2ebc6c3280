from __future__ import annotations

import pytest

from canaryflow.errors import ConfigError
from canaryflow.spec import Environment, ReleaseSpec, duration_seconds, load_spec, validate_spec

BASE = {"service": "checkout", "version": "v2"}


def test_defaults_follow_the_seed():
    spec = validate_spec(BASE)
    assert spec.steps == [10, 50, 100]
    assert spec.step_wait_seconds == 300
    assert spec.environment is Environment.staging
    assert (spec.max_error_rate, spec.max_p95_latency_ms) == (0.01, 500)


def test_production_is_stricter():
    spec = validate_spec({**BASE, "environment": "production"})
    assert (spec.max_error_rate, spec.max_p95_latency_ms) == (0.001, 200)


def test_a_partial_threshold_keeps_the_other_default():
    spec = validate_spec({**BASE, "environment": "production", "thresholds": {"max_p95_latency_ms": 300}})
    assert (spec.max_error_rate, spec.max_p95_latency_ms) == (0.001, 300)


@pytest.mark.parametrize("field,value", [
    ("steps", [50, 10, 100]), ("steps", [10, 50]), ("steps", [0, 100]), ("steps", []),
    ("environment", "prod"), ("step_wait_seconds", -1), ("analysis_window", "5 minutes"),
    ("service", "Check_Out"), ("min_canary_requests", 0), ("platform", "mars"),
])
def test_invalid_fields_are_named(field, value):
    with pytest.raises(ConfigError) as err:
        validate_spec({**BASE, field: value})
    assert field in err.value.fields
    assert field in str(err.value)


def test_nested_fields_are_named_with_their_path():
    with pytest.raises(ConfigError) as err:
        validate_spec({**BASE, "thresholds": {"max_error_rate": 5}, "smoke": [{"path": "no-slash"}]})
    assert set(err.value.fields) == {"thresholds.max_error_rate", "smoke.0.path"}


def test_unknown_fields_are_rejected():
    with pytest.raises(ConfigError) as err:
        validate_spec({**BASE, "stepz": [10]})
    assert err.value.fields == ("stepz",)


def test_query_placeholders_are_checked():
    with pytest.raises(ConfigError) as err:
        validate_spec({**BASE, "queries": {"errors": "x{svc='$svc',version='$version'}"}})
    assert "queries.errors" in err.value.fields and "svc" in str(err.value)


def test_a_counter_template_without_version_is_refused():
    # Rendered once for the canary and once for the baseline: without $version both would be the same.
    with pytest.raises(ConfigError) as err:
        validate_spec({**BASE, "queries": {"requests": 'http_requests_total{service="$service"}'}})
    assert err.value.fields == ("queries.requests",) and "$version" in str(err.value)


def test_queries_render_with_the_release_values():
    spec = validate_spec(BASE)
    assert spec.render(spec.queries.errors) == 'http_requests_total{service="checkout",version="v2",code=~"5.."}'
    assert spec.render(spec.queries.requests, version="v1") == 'http_requests_total{service="checkout",version="v1"}'


def test_layers_merge_file_then_environment_then_overrides(tmp_path, monkeypatch):
    spec_file = tmp_path / "release.yaml"
    spec_file.write_text("service: checkout\nversion: v1\nstep_wait_seconds: 10\n"
                         "thresholds: {max_error_rate: 0.02}\n")
    monkeypatch.setenv("CANARYFLOW_STEP_WAIT_SECONDS", "20")
    monkeypatch.setenv("CANARYFLOW_THRESHOLDS__MAX_P95_LATENCY_MS", "250")
    spec = load_spec(spec_file, overrides={"version": "v9", "environment": None})
    assert (spec.version, spec.step_wait_seconds) == ("v9", 20)
    assert (spec.max_error_rate, spec.max_p95_latency_ms) == (0.02, 250)


@pytest.mark.parametrize("suffix,text", [(".json", '{"service": "a", "version": "1"}'),
                                         (".toml", 'service = "a"\nversion = "1"\n')])
def test_json_and_toml_files(tmp_path, suffix, text):
    path = tmp_path / f"spec{suffix}"
    path.write_text(text)
    assert load_spec(path, use_env=False).service == "a"


@pytest.mark.parametrize("name,text,message", [
    ("bad.yaml", "service: [unclosed", "not valid"), ("list.yaml", "- a\n- b\n", "mapping"),
    ("spec.ini", "x=1", "must end in"), ("missing.yaml", None, "cannot read"),
])
def test_bad_files_say_what_is_wrong(tmp_path, name, text, message):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_spec(path, use_env=False)


def test_run_name():
    assert ReleaseSpec(**BASE).run_name == "release/checkout/v2/staging"


def test_steps_from_the_environment_as_the_flag_writes_them_or_as_json(monkeypatch):
    for value in ("10,50,100", " 20, 100 ", "[5, 100]"):
        monkeypatch.setenv("CANARYFLOW_STEPS", value)
        expected = [int(v) for v in value.strip("[] ").replace(" ", "").split(",")]
        assert load_spec(overrides={"service": "checkout", "version": "v2"}).steps == expected


@pytest.mark.parametrize("variable,value", [
    ("CANARYFLOW_SMOKE", "/api/health"),
    ("CANARYFLOW_THRESHOLDS", "{max_error_rate: 0.1"),
    ("CANARYFLOW_APPROVAL__ENVIRONMENTS", "production"),  # nested: named in full, not by its last part
])
def test_a_variable_that_is_not_json_is_named(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"\n  {variable}: not valid JSON") as refused:
        load_spec(overrides={"service": "checkout", "version": "v2"})
    assert value not in str(refused.value)


def test_a_misspelt_variable_is_refused_not_ignored(monkeypatch):
    monkeypatch.setenv("CANARYFLOW_STEP_WAIT", "5")
    with pytest.raises(ConfigError, match="did you mean CANARYFLOW_STEP_WAIT_SECONDS"):
        load_spec(overrides={"service": "checkout", "version": "v2"})
    assert load_spec(overrides={"service": "checkout", "version": "v2"}, use_env=False).step_wait_seconds == 300


@pytest.mark.parametrize("window", ["0s", "0m", "00h", "0ms"])
def test_an_empty_analysis_window_is_refused(window):
    with pytest.raises(ConfigError, match="analysis_window: .*positive PromQL duration"):
        validate_spec({"service": "checkout", "version": "v2", "analysis_window": window})


@pytest.mark.parametrize("window,seconds", [("90s", 90), ("1m", 60), ("2h", 7200), ("1d", 86400), ("250ms", 0.25)])
def test_analysis_window_durations_in_seconds(window, seconds):
    assert duration_seconds(window) == pytest.approx(seconds)


def test_queries_render_the_namespace_and_the_window():
    spec = validate_spec({**BASE, "namespace": "shop", "analysis_window": "2m"})
    template = 'sum(rate(x{namespace="$namespace",version="$version"}[$window]))'
    assert spec.render(template) == 'sum(rate(x{namespace="shop",version="v2"}[2m]))'


def test_a_yml_file_is_read_as_yaml(tmp_path):
    path = tmp_path / "release.yml"
    path.write_text("service: checkout\nversion: v3\n")
    assert load_spec(path, use_env=False).version == "v3"


def test_steps_as_json_may_start_with_spaces(monkeypatch):
    monkeypatch.setenv("CANARYFLOW_STEPS", "  [5, 100]")
    assert load_spec(overrides={"service": "checkout", "version": "v2"}).steps == [5, 100]


def test_a_nested_field_from_the_environment_alone_keeps_the_other_default(monkeypatch):
    monkeypatch.setenv("CANARYFLOW_THRESHOLDS__MAX_ERROR_RATE", "0.05")
    spec = load_spec(overrides={"service": "checkout", "version": "v2"})
    assert (spec.max_error_rate, spec.max_p95_latency_ms) == (0.05, 500)


def test_a_section_from_the_environment_replaces_a_scalar_written_in_the_file(tmp_path, monkeypatch):
    spec_file = tmp_path / "release.yaml"
    spec_file.write_text("service: checkout\nversion: v2\nretry: 3\n")
    monkeypatch.setenv("CANARYFLOW_RETRY__MAX_ATTEMPTS", "2")
    assert load_spec(spec_file).retry.max_attempts == 2


def test_a_variable_that_is_not_json_is_named_as_a_field(monkeypatch):
    monkeypatch.setenv("CANARYFLOW_SMOKE", "/api/health")
    with pytest.raises(ConfigError) as refused:
        load_spec(overrides={"service": "checkout", "version": "v2"})
    assert refused.value.fields == ("smoke",)
    assert str(refused.value) == ("invalid environment:\n  CANARYFLOW_SMOKE: not valid JSON (lists and sections are "
                                  "JSON, e.g. CANARYFLOW_SMOKE='[{\"path\": \"/healthz\"}]')")

@pytest.mark.parametrize("variable,field", [("CANARYFLOW_APPROVAL__ENVIRONMENTS", "approval.environments"),
                                            ("CANARYFLOW_RETRY__ON_REASONS", "retry.on_reasons")])
def test_a_nested_variable_that_is_not_json_is_named_by_its_dotted_path(monkeypatch, variable, field):
    monkeypatch.setenv(variable, "production")
    with pytest.raises(ConfigError) as refused:
        load_spec(overrides={"service": "checkout", "version": "v2"})
    assert refused.value.fields == (field,)  # not the last name alone, easily taken for another field
    assert f"{variable}: not valid JSON" in str(refused.value) and "production" not in str(refused.value)


def test_the_variable_named_is_the_one_that_is_not_json_not_another_with_the_same_text(monkeypatch):
    monkeypatch.setenv("CANARYFLOW_ENVIRONMENT", "production")  # valid: a plain value
    monkeypatch.setenv("CANARYFLOW_APPROVAL__ENVIRONMENTS", "production")  # a list, so JSON
    with pytest.raises(ConfigError) as refused:
        load_spec(overrides={"service": "checkout", "version": "v2"})
    assert str(refused.value).startswith("invalid environment:\n  CANARYFLOW_APPROVAL__ENVIRONMENTS: not valid JSON")
