"""The local stack's Prometheus config: optional Alertmanager target, checked by promtool when present."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from canaryflow.local.stack import prometheus_config


def make(tmp_path, **kwargs):
    return prometheus_config(scrape_interval="1s", pushgateway="127.0.0.1:9091",
                             targets_file=tmp_path / "targets.json", **kwargs)


def test_without_alertmanager_there_is_no_alerting_section(tmp_path):
    assert "alerting" not in make(tmp_path)


def test_alertmanager_url_becomes_a_static_alertmanager_target(tmp_path):
    assert make(tmp_path, alertmanager_url="http://127.0.0.1:9093")["alerting"] == {
        "alertmanagers": [{"scheme": "http", "static_configs": [{"targets": ["127.0.0.1:9093"]}]}]}
    behind_prefix = make(tmp_path, alertmanager_url="https://am.example:443/alertmanager")["alerting"]
    assert behind_prefix["alertmanagers"][0]["path_prefix"] == "/alertmanager"
    assert behind_prefix["alertmanagers"][0]["scheme"] == "https"


def test_promtool_accepts_the_config(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(make(tmp_path, alertmanager_url="http://127.0.0.1:9093")))
    done = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
