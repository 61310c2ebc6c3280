"""The deployment dashboard: the checked-in JSON is the generator's output, and it has what the seed
and the issue ask for (seed panels, DORA, canary analysis, templated data source, configurable uid)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from canaryflow import dashboards

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "monitoring" / "grafana" / "deployment-overview.json"


def generate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "canaryflow.dashboards", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env=env)


@pytest.fixture(scope="module")
def model() -> dict:
    return json.loads(CHECKED_IN.read_text())


def panels(model: dict) -> dict[str, dict]:
    return {p["title"]: p for p in model["panels"] if p["type"] != "row"}


def test_checked_in_json_is_the_generators_output():
    assert CHECKED_IN.read_text() == dashboards.render(dashboards.DEFAULT_UID), \
        "stale: run python -m canaryflow.dashboards"


def test_check_mode_passes_on_the_checked_in_file():
    result = generate("--check", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


def test_check_mode_fails_on_a_stale_file_and_writing_fixes_it(tmp_path):
    stale = tmp_path / "dash.json"
    stale.write_text(CHECKED_IN.read_text().replace('"30s"', '"5s"'))
    result = generate("--check", "--output", str(stale))
    assert result.returncode == 1
    assert "stale" in result.stderr
    assert generate("--output", str(stale)).returncode == 0
    assert generate("--check", "--output", str(stale)).returncode == 0


def test_uid_comes_from_the_flag_then_the_environment(tmp_path):
    out = tmp_path / "dash.json"
    assert generate("--uid", "team-a-deploys", "--output", str(out)).returncode == 0
    assert json.loads(out.read_text())["uid"] == "team-a-deploys"
    env = {"PATH": "/usr/bin:/bin", dashboards.UID_ENV: "from-env"}
    assert generate("--output", str(out), env=env).returncode == 0
    assert json.loads(out.read_text())["uid"] == "from-env"
    assert generate("--check", env=env).returncode == 1  # the checked-in file has the default uid


def test_seed_basics(model):
    assert model["uid"] == "canaryflow-deployments"
    assert model["refresh"] == "30s"
    assert "id" not in model and "version" not in model  # Grafana assigns them
    titles = panels(model)
    for seed in ("Deployment success rate", "Rollback rate", "Smoke test pass rate"):
        assert titles[seed]["fieldConfig"]["defaults"]["unit"] == "percentunit"


def test_datasource_is_a_template_variable_used_by_every_panel_and_query(model):
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ref = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels(model).values():
        assert panel["datasource"] == ref
        assert all(t["datasource"] == ref for t in panel["targets"])
    for name in ("environment", "service"):
        assert variables[name]["datasource"] == ref
        assert variables[name]["includeAll"] and variables[name]["multi"]


def test_every_query_is_filtered_by_environment_and_service(model):
    for title, panel in panels(model).items():
        for target in panel["targets"]:
            assert 'environment=~"$environment"' in target["expr"], title
            assert 'service=~"$service"' in target["expr"], title


def test_dora_canary_and_rollback_panels_exist(model):
    titles = set(panels(model))
    assert {"Deployment frequency", "Lead time for changes (median)", "Change failure rate",
            "Time to restore (median)", "Canary traffic", "Canary error rate vs baseline and threshold",
            "Evidence against the canary", "Canary P95 latency vs threshold", "Rollback reasons"} <= titles


def test_every_panel_has_a_description_and_a_query(model):
    for title, panel in panels(model).items():
        assert len(panel["description"]) > 40, title
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), title


def test_panels_fit_the_grid_without_overlap(model):
    cells: set[tuple[int, int]] = set()
    for panel in model["panels"]:
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not area & cells, panel["title"]
        cells |= area
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))


def test_release_annotations_are_shown(model):
    releases = [a for a in model["annotations"]["list"] if a["name"] == "Releases"]
    assert releases and releases[0]["target"]["tags"] == ["canaryflow"]


def test_the_docs_describe_every_panel():
    section = (ROOT / "docs" / "operating" / "monitoring.md").read_text()
    for title in panels(json.loads(CHECKED_IN.read_text())):
        assert title in section, title
