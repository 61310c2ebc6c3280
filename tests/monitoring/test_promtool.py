"""The alert rules through the real promtool (Debian package ``prometheus``): ``monitoring/validate``
checks the rules and runs their unit tests; broken rules or a changed threshold make it fail."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
VALIDATE = MONITORING / "validate"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

#: The seed catalogue (DESIGN.md section 4): severity, `for`, and the threshold in the expression.
SEED = {
    "DeploymentHighErrorRate": ("warning", "2m", "> 0.10"),
    "DeploymentRollbackDetected": ("critical", "0s", "> 0"),
    "SmokeTestFailing": ("warning", "3m", "> 0.05"),
    "HighErrorRateStaging": ("warning", "2m", "> 0.01"),
    "HighErrorRateProduction": ("critical", "1m", "> 0.001"),
    "HighLatencyStaging": ("warning", "5m", "> 500"),
    "HighLatencyProduction": ("critical", "3m", "> 200"),
    "DeploymentFrequencyAnomaly": ("info", "5m", "> 2"),
    "PrometheusQueryFailing": ("warning", "5m", "> 0.10"),
}

pytestmark = pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool missing: run scripts/bootstrap")


def run_validate(monitoring: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(monitoring / "validate")], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PROMTOOL": PROMTOOL})


def rules() -> dict[str, dict]:
    groups = yaml.safe_load((MONITORING / "prometheus" / "alerts.yml").read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"]}


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smh])", duration))


def test_validate_passes_with_the_real_promtool():
    result = run_validate()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout
    assert "Unit Testing:" in result.stdout and "FAILED" not in result.stdout


@pytest.fixture
def monitoring_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "monitoring"
    shutil.copytree(MONITORING, copy)
    return copy


def test_validate_fails_when_a_threshold_no_longer_matches_its_tests(monitoring_copy):
    alerts = monitoring_copy / "prometheus" / "alerts.yml"
    text = alerts.read_text()
    assert text.count(") > 0.05") == 1
    alerts.write_text(text.replace(") > 0.05", ") > 0.5"))  # SmokeTestFailing at 50% instead of 5%
    result = run_validate(monitoring_copy)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr and "SmokeTestFailing" in result.stdout + result.stderr


def test_validate_fails_on_invalid_promql(monitoring_copy):
    alerts = monitoring_copy / "prometheus" / "alerts.yml"
    alerts.write_text(alerts.read_text().replace("sum by (service, environment, reason) (increase(",
                                                 "sum by (service, environment, reason (increase(", 1))
    result = run_validate(monitoring_copy)
    assert result.returncode != 0
    assert "alerts.yml" in result.stdout + result.stderr


def test_validate_says_what_to_install_without_promtool(monitoring_copy, tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH with the shell tools the script uses, and no promtool
    bin_dir.mkdir()
    (bin_dir / "dirname").symlink_to(shutil.which("dirname"))
    result = subprocess.run([shutil.which("bash"), str(monitoring_copy / "validate")], capture_output=True,
                            text=True, timeout=30, env={"PATH": str(bin_dir)})
    assert result.returncode == 2
    assert "Debian package 'prometheus'" in result.stderr


@pytest.mark.parametrize("alert", sorted(SEED))
def test_alert_has_the_seed_severity_duration_threshold_and_annotations(alert):
    rule = rules()[alert]
    severity, for_, threshold = SEED[alert]
    assert rule["labels"]["severity"] == severity
    assert _seconds(rule.get("for", "0s")) == _seconds(for_)
    assert threshold in " ".join(rule["expr"].split())
    assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])


def test_every_runbook_url_points_at_a_section_of_the_runbooks():
    runbooks = (MONITORING / "runbooks.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
               for h in re.findall(r"^## (.+)$", runbooks, re.M)}
    for name, rule in rules().items():
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert path == "monitoring/runbooks.md" and (ROOT / path).is_file()
        assert anchor == name.lower() and anchor in anchors, name


def test_every_alert_has_a_firing_and_a_non_firing_case():
    tests = yaml.safe_load((MONITORING / "prometheus" / "alerts.test.yml").read_text())["tests"]
    cases: dict[str, set[bool]] = {}
    for test in tests:
        for case in test["alert_rule_test"]:
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    assert cases == {name: {True, False} for name in SEED}
