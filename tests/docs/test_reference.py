"""The generated reference pages agree with the code they are generated from.

The first test is the one that guards the docs: it regenerates every page in memory and fails
when a committed page differs (a field, a flag, a metric or an alert changed without the docs).
The others check that the generator itself tells the truth and that the check can fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, Field

from canaryflow import docs_reference as ref
from canaryflow.analysis_spec import Grid, LatencyMetric, RatioMetric, ThresholdMetric
from canaryflow.kube.target import KubernetesTarget
from canaryflow.settings import Settings
from canaryflow.spec import ApprovalGate, ReleaseSpec, RetryPolicy, SmokeCheck
from canaryflow.webhook.config import WebhookConfig


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return ref.render_pages()


def test_committed_reference_pages_match_the_code(rendered):
    stale = ref.stale_pages(ref.REFERENCE_DIR, rendered)
    assert stale == [], f"stale docs/reference pages {stale}: run python -m canaryflow.docs_reference"


def test_every_page_the_generator_writes_is_in_the_site_navigation():
    nav = (ref.ROOT / "mkdocs.yml").read_text()
    for name in ref.PAGES:
        assert f"reference/{name}" in nav


def test_an_edited_page_is_reported_stale_and_a_missing_one_too(rendered, tmp_path):
    for name, text in rendered.items():
        (tmp_path / name).write_text(text)
    assert ref.stale_pages(tmp_path, rendered) == []
    (tmp_path / "spec.md").write_text(rendered["spec.md"].replace("Service to release.", "Service."))
    (tmp_path / "cli.md").unlink()
    assert ref.stale_pages(tmp_path, rendered) == ["spec.md", "cli.md"]


def test_check_exits_1_until_the_pages_are_written(tmp_path, capsys):
    assert ref.main(["--check", "--output", str(tmp_path)]) == 1
    assert "stale" in capsys.readouterr().err
    assert ref.main(["--output", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(ref.PAGES)
    assert ref.main(["--check", "--output", str(tmp_path)]) == 0


def test_a_field_without_a_description_is_refused_naming_it():
    class Undocumented(BaseModel):
        documented: int = Field(default=1, description="Has one")
        bare: int = 2

    with pytest.raises(ref.UndocumentedField, match=r"Undocumented\.bare"):
        ref.model_rows(Undocumented, {})


@pytest.mark.parametrize("model", [ReleaseSpec, SmokeCheck, RetryPolicy, ApprovalGate, RatioMetric, LatencyMetric,
                                   ThresholdMetric, Grid, KubernetesTarget, Settings, WebhookConfig])
def test_every_field_of_the_documented_models_has_a_description(model):
    missing = [name for name, field in model.model_fields.items() if not field.description]
    assert missing == []


def test_every_model_reachable_from_the_spec_gets_a_section_with_all_its_fields(rendered):
    found = {s.model for s in ref.sections(ReleaseSpec)}
    assert {SmokeCheck, RetryPolicy, ApprovalGate, RatioMetric, LatencyMetric, ThresholdMetric, Grid,
            KubernetesTarget} <= found
    page = rendered["spec.md"]
    for section in ref.sections(ReleaseSpec):
        assert f"{{#{section.anchor}}}" in page
        for name, field in section.model.model_fields.items():
            assert f"| `{name}` |" in page
            assert ref.cell(ref.description(section.model, name, field)) in page


def test_defaults_are_shown_as_a_spec_file_would_write_them(rendered):
    page = rendered["spec.md"]
    assert "| `steps` | list of integer | `[10, 50, 100]` |" in page
    assert "`[{path: /api/health}, {path: /api/orders}]`" in page
    # the discriminator is kept even though it is each kind's default
    assert "`[{name: error_rate, kind: ratio}, {name: p95_latency, kind: latency}]`" in page
    assert "`{low: 1.25, high: 20}`" in page  # latency's grid differs from Grid()
    assert "| `service` | string, at most 63 characters" in page and "| required |" in page
    assert "| `production` | `0.001` | `200` |" in page  # the environment's default thresholds


def test_settings_pages_name_the_variables_as_they_are_read(rendered):
    for name in Settings.model_fields:
        assert f"`CANARYFLOW_{name.upper()}`" in rendered["settings.md"]
    for name in WebhookConfig.model_fields:
        assert f"`CANARYFLOW_WEBHOOK_{name.upper()}`" in rendered["webhook.md"]
    assert "| `CANARYFLOW_GRAFANA_TOKEN` | secret string | unset |" in rendered["settings.md"]


def test_cli_page_documents_every_command_and_option(rendered):
    import typer.main

    from canaryflow.cli import app

    root = typer.main.get_command(app)

    def walk(command, prefix):
        yield prefix, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, f"{prefix} {name}")

    page = rendered["cli.md"]
    for path, command in walk(root, "canaryflow"):
        assert f"`{path}`" in page
        for param in command.params:
            for option in param.opts:
                assert option in page, (path, option)


def test_metrics_page_lists_every_registered_metric_with_its_labels(rendered):
    page = rendered["metrics.md"]
    docs = ref.metric_docs()
    seed = {"deployment_total", "deployment_duration_seconds", "deployment_rollback_total", "deployment_frequency",
            "canary_traffic_percentage", "smoke_test_total", "smoke_test_duration_seconds",
            "prometheus_query_total", "prometheus_query_duration_seconds"}
    assert seed <= {d.name for d in docs}
    for doc in docs:
        assert f"| `{doc.name}` | {doc.kind} |" in page
    rows = {d.name: d for d in docs}
    assert rows["deployment_total"].values["status"] == ("failed", "rolled_back", "success")
    assert "high_error_rate" in rows["deployment_rollback_total"].values["reason"]
    assert rows["deployment_duration_seconds"].buckets[0] == 60 and "Buckets: 1 min" in page


def test_alerts_page_lists_every_rule_with_its_expression(rendered):
    rules = [r for g in yaml.safe_load(ref.ALERTS_FILE.read_text())["groups"] for r in g["rules"] if "alert" in r]
    assert len(rules) >= 9
    page = rendered["alerts.md"]
    for rule in rules:
        assert f"## {rule['alert']} {{#{rule['alert'].lower()}}}" in page
        assert rule["expr"].strip() in page


def test_alerts_page_of_another_rule_file(tmp_path):
    rules = tmp_path / "alerts.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"record": "not:an_alert", "expr": "1"},
        {"alert": "Only", "expr": "up == 0", "for": "1m", "labels": {"severity": "info"},
         "annotations": {"summary": "a | b", "description": "down"}}]}]}))
    page = ref.alerts_page(Path(rules))
    assert "| [`Only`](#only) | info | 1m | a \\| b |" in page
    assert "not:an_alert" not in page


@pytest.mark.parametrize("text,expected", [
    ("`a|b` or c|d", "`a|b` or c\\|d"),
    ("default: <service>-canary, `<kept>`", "default: &lt;service>-canary, `<kept>`"),
    ("two\n   lines", "two lines"),
])
def test_cells_escape_pipes_and_tags_outside_code_spans_only(text, expected):
    assert ref.cell(text) == expected


def test_the_variable_list_envcheck_reads_matches_the_models_and_a_stale_one_is_caught(tmp_path):
    assert not ref.variables_stale(), "canaryflow/variables.txt is stale: run python -m canaryflow.docs_reference"
    listed = ref.variables_text()
    assert "CANARYFLOW_THRESHOLDS__MAX_ERROR_RATE\n" in listed and "CANARYFLOW_WEBHOOK_GITHUB_SECRET\n" in listed
    edited = tmp_path / "variables.txt"
    edited.write_text(listed.replace("CANARYFLOW_PROMETHEUS_URL\n", ""))
    assert ref.variables_stale(edited)
    assert ref.variables_stale(tmp_path / "missing.txt")
