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
    assert "{" not in result.output  # a table, not Python dicts


def test_a_version_row_says_how_the_version_behaves():
    from canaryflow.cli import version_row
    from canaryflow.local.catalog import VersionSpec

    assert version_row("v1", VersionSpec(error_rate=0.001, latency_ms={"p50": 20, "p95": 45})) == \
        ("v1", "0.10%", "20 ms", "45 ms", "")
    odd = VersionSpec(slow={"fraction": 0.05, "extra_ms": 300}, faults={"/api/health": {"status": 503}},
                      readiness_delay_s=5, crash_after_s=10)
    assert version_row("odd", odd) == ("odd", "0.00%", "default", "default",
                                       "5% of requests +300 ms; /api/health answers 503; ready after 5 s; "
                                       "exits 10 s after start")


def test_every_command_has_help():
    for args in (["--help"], ["release", "--help"], ["demo", "--help"], ["local", "--help"],
                 ["local", "release", "--help"], ["local", "up", "--help"], ["plan", "--help"],
                 ["rollback", "--help"], ["retry", "--help"], ["approve", "--help"], ["reject", "--help"],
                 ["webhook", "serve", "--help"], ["ui-stop", "--help"], ["local", "versions", "--help"],
                 ["status", "--help"], ["wait", "--help"]):
        assert runner.invoke(app, args).exit_code == 0, args


def test_threshold_flags_reach_the_spec(monkeypatch):
    seen = {}

    def fake_release(spec):
        from canaryflow.waiting import WaitResult

        seen["spec"] = spec
        return WaitResult.PROMOTED

    monkeypatch.setattr("canaryflow.cli._release_and_report", fake_release)
    result = runner.invoke(app, ["release", "--service", "checkout", "--version", "v2", "--environment",
                                 "production", "--max-p95-ms", "250"])
    assert result.exit_code == 0, result.output
    assert (seen["spec"].max_error_rate, seen["spec"].max_p95_latency_ms) == (0.001, 250)


def test_threshold_flags_are_validated():
    result = runner.invoke(app, ["release", "--service", "checkout", "--version", "v2", "--max-error-rate", "2"])
    assert result.exit_code == 2 and "thresholds.max_error_rate" in result.output


def test_plan_prints_the_release_and_changes_nothing(monkeypatch):
    monkeypatch.setenv("CANARYFLOW_PROMETHEUS_URL", "http://127.0.0.1:9")  # never contacted
    result = runner.invoke(app, ["plan", "--service", "checkout", "--version", "v2", "--environment", "production"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "release/checkout/v2/production" in out
    assert "10%" in out and "50%" in out and "100%" in out and "300 s" in out
    assert "error rate <= 0.1000%" in out and "p95 latency <= 200 ms" in out
    assert 'http_requests_total{service="checkout",version="v2",code=~"5.."}' in out
    assert "alpha 0.01" in out and "would catch" in out
    assert "nothing was changed" in out


def test_plan_shows_the_approval_gate_before_the_last_step(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("service: checkout\nversion: v2\nenvironment: production\n"
                    "approval: {environments: [production]}\n")
    result = runner.invoke(app, ["plan", "--spec", str(spec)], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "approval gate: before step 3 (100%)" in result.output


def test_plan_refuses_a_bad_spec_naming_the_field():
    result = runner.invoke(app, ["plan", "--service", "checkout", "--version", "v2", "--environment", "prod"])
    assert result.exit_code == 2 and "environment:" in result.output


def test_retry_explains_an_unreadable_time():
    result = runner.invoke(app, ["retry", "0c7f4c2e-0000-4000-8000-000000000000", "--at", "tomorrow"])
    assert result.exit_code == 1 and "use now, +10m, 90s" in result.output


def test_rollback_needs_a_service_or_a_spec():
    result = runner.invoke(app, ["rollback"])
    assert result.exit_code == 2 and "SERVICE or --spec" in result.output


def test_webhook_serve_refuses_a_bad_configuration_before_listening(monkeypatch, tmp_path):
    monkeypatch.setenv("CANARYFLOW_WEBHOOK_BASE_SPEC", str(tmp_path / "missing.yaml"))
    result = runner.invoke(app, ["webhook", "serve", "--port", "1"])
    assert result.exit_code == 2, result.output


def test_bad_settings_exit_2_before_any_run(monkeypatch):
    monkeypatch.setenv("CANARYFLOW_PROMETHEUS_TIMEOUT_SECONDS", "-1")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # a run would fail to reach this
    result = runner.invoke(app, ["release", "--service", "checkout", "--version", "v2"])
    assert result.exit_code == 2, result.output
    assert "CANARYFLOW_PROMETHEUS_TIMEOUT_SECONDS: Input should be greater than 0" in result.output


def test_plan_takes_every_release_flag(monkeypatch):
    result = runner.invoke(app, ["plan", "--service", "checkout", "--version", "v2", "--steps", "20,100",
                                 "--wait", "45", "--interval", "15", "--window", "2m", "--min-requests", "80",
                                 "--max-error-rate", "0.02", "--max-p95-ms", "350"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for shown in ("20%", "45 s", "15 s", "error rate <= 2.0000%", "p95 latency <= 350 ms",
                  "at least 80 canary requests", "window 2m"):
        assert shown in result.output, shown


def test_local_release_of_an_unknown_version_starts_nothing():
    result = runner.invoke(app, ["local", "release", "v9-nope"])
    assert result.exit_code == 2
    assert "unknown version 'v9-nope'" in result.output and "v3-errors" in result.output


def test_fleet_refuses_a_bad_wave_before_any_run_exists():
    result = runner.invoke(app, ["fleet", "--version", "v2", "--services", "a,b", "--waves", "rest,1"])
    assert result.exit_code == 2
    assert "'rest' can only be the last wave" in result.output
    result = runner.invoke(app, ["fleet", "--version", "v2", "--services", "a,Bad_Name"])
    assert result.exit_code == 2 and "Bad_Name" in result.output


def test_status_and_wait_need_a_prefect_server_named(monkeypatch):
    # Without one Prefect would start an empty server in the process and report nothing running.
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        status = runner.invoke(app, ["status", "checkout"])
        wait = runner.invoke(app, ["wait", "checkout"])
    assert status.exit_code == 1 and "PREFECT_API_URL is not set" in status.output
    assert wait.exit_code == 5 and "PREFECT_API_URL is not set" in wait.output


def test_wait_refuses_a_negative_timeout_and_status_a_too_short_interval():
    assert runner.invoke(app, ["wait", "checkout", "--timeout", "-1"]).exit_code == 2
    assert runner.invoke(app, ["status", "--watch", "--interval", "0.1"]).exit_code == 2


def test_release_exits_with_the_codes_of_wait(monkeypatch):
    """A pipeline running the release in its job branches on the same codes as `canaryflow wait`."""
    import canaryflow.cli as cli
    import canaryflow.report as report
    from canaryflow.errors import PreflightError

    printed: list[str] = []
    monkeypatch.setattr(report, "print_summary", lambda console, summary: printed.append(summary["status"]))
    outcomes = {
        0: lambda spec: (True, {"status": "promoted"}, "run-1"),
        1: lambda spec: (False, {"status": "rolled_back"}, "run-2"),
    }

    def refused(spec):
        raise PreflightError("Prometheus at http://127.0.0.1:9 is unreachable")

    for code, outcome in outcomes.items():
        monkeypatch.setattr(cli, "run_release", outcome)
        result = runner.invoke(app, ["release", "--service", "checkout", "--version", "v2"])
        assert result.exit_code == code, result.output
    assert printed == ["promoted", "rolled_back"]
    monkeypatch.setattr(cli, "run_release", refused)
    result = runner.invoke(app, ["release", "--service", "checkout", "--version", "v2"])
    assert result.exit_code == 2
    assert "refused, nothing was changed: Prometheus at http://127.0.0.1:9 is unreachable" in result.output


def test_fleet_and_retry_wait_for_the_run_they_start(monkeypatch):
    from types import SimpleNamespace

    import prefect.deployments

    import canaryflow.operate as operate
    import canaryflow.waiting as waiting

    started = SimpleNamespace(id="5f0c0d7e-0000-4000-8000-000000000001", name="fleet/v2/production/2-services",
                              expected_start_time="now", parameters={"attempt": 2})
    waited: list[tuple[str, float]] = []

    def wait_for(run, *, timeout):
        waited.append((run.id, timeout))
        return waiting.WaitResult.ROLLED_BACK, f"{run.name} ({run.id}): fleet release of v2: rolled_back"

    monkeypatch.setattr(prefect.deployments, "run_deployment", lambda *args, **kwargs: started)
    monkeypatch.setattr(operate, "schedule_retry_at", lambda run_id, when: started)
    monkeypatch.setattr(waiting, "wait_for", wait_for)
    fleet = runner.invoke(app, ["fleet", "--version", "v2", "--services", "a,b", "--environment", "production",
                                "--wait", "--timeout", "600"], env={"COLUMNS": "200"})
    assert fleet.exit_code == 1, fleet.output
    assert "fleet release of v2: rolled_back" in fleet.output
    retry = runner.invoke(app, ["retry", started.id, "--wait"])
    assert retry.exit_code == 1, retry.output
    assert waited == [(started.id, 600.0), (started.id, 0.0)]
    # Without --wait, both return as soon as the run exists.
    assert runner.invoke(app, ["fleet", "--version", "v2", "--services", "a,b"]).exit_code == 0
    assert runner.invoke(app, ["retry", started.id]).exit_code == 0
    assert len(waited) == 2
