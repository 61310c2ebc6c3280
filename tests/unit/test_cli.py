from __future__ import annotations

from typer.testing import CliRunner

from canaryflow.cli import app

runner = CliRunner()


def test_invalid_input_names_every_field_and_exits_2():
    result = runner.invoke(app, ["release", "--service", "Bad_Name", "--version", "v2", "--steps", "50,10"])
    assert result.exit_code == 2
    assert "service:" in result.output and "steps:" in result.output
    assert "[a-z0-9]" in result.output  # the pattern is shown as written, not eaten as markup


def test_steps_must_be_integers():
    result = runner.invoke(app, ["release", "--service", "checkout", "--version", "v2", "--steps", "ten"])
    assert result.exit_code == 2
    assert "comma-separated integers" in result.output


def test_missing_spec_file_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["release", "--spec", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "cannot read spec file" in result.output


def test_local_versions_lists_the_catalogue():
    result = runner.invoke(app, ["local", "versions"])
    assert result.exit_code == 0
    for name in ("v1", "v2", "v3-errors", "v3-slow", "v3-smoke-broken", "v3-never-ready", "v3-crash"):
        assert name in result.output


def test_every_command_has_help():
    for args in (["--help"], ["release", "--help"], ["demo", "--help"], ["local", "--help"],
                 ["local", "release", "--help"], ["local", "up", "--help"]):
        assert runner.invoke(app, args).exit_code == 0, args


def test_threshold_flags_reach_the_spec(monkeypatch):
    seen = {}

    def fake_release(spec):
        seen["spec"] = spec
        return True

    monkeypatch.setattr("canaryflow.cli._release_and_report", fake_release)
    result = runner.invoke(app, ["release", "--service", "checkout", "--version", "v2", "--environment",
                                 "production", "--max-p95-ms", "250"])
    assert result.exit_code == 0, result.output
    assert (seen["spec"].max_error_rate, seen["spec"].max_p95_latency_ms) == (0.001, 250)


def test_threshold_flags_are_validated():
    result = runner.invoke(app, ["release", "--service", "checkout", "--version", "v2", "--max-error-rate", "2"])
    assert result.exit_code == 2 and "thresholds.max_error_rate" in result.output
