"""``canaryflow status`` and ``canaryflow wait`` from another shell, on a real Prefect server and
local platform: what the operator reads while a release runs, and the exit code a pipeline gets."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest

from tests.e2e.conftest import FAST_SPEC, ROOT, cli_env
from tests.e2e.test_operator_verbs import release_operated_by, wait_for_weight

pytestmark = pytest.mark.e2e


def cli(prefect_server: Any, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    # A wide screen, so each verdict's numbers stay on one line of the captured output.
    return subprocess.run([sys.executable, "-m", "canaryflow", *args], cwd=ROOT,
                          env=cli_env(prefect_server, COLUMNS="200"), capture_output=True, text=True, timeout=timeout)


def start_cli(prefect_server: Any, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "canaryflow", *args], cwd=ROOT,
                            env=cli_env(prefect_server, COLUMNS="200"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_status_shows_the_running_release_and_wait_exits_0_once_it_is_promoted(prefect_server, stack):
    # Steps long enough that the release is still at its first steps when the status is read.
    spec = {**FAST_SPEC, "version": "v2", "step_wait_seconds": 8}
    seen: dict[str, Any] = {}

    def operator() -> None:
        wait_for_weight(stack, 10)
        seen["wait"] = start_cli(prefect_server, "wait", "checkout", "--timeout", "300")
        # Wait for a round of analysis in the run's log: the first status may come before it.
        for _ in range(20):
            seen["status"] = cli(prefect_server, "status", "checkout")
            if "error_rate" in seen["status"].stdout:
                break
        seen["waited"] = seen["wait"].communicate(timeout=300)

    state, summary, errors, _ = release_operated_by(operator, spec)
    assert not errors, errors
    assert state.is_completed(), state.message
    shown = seen["status"]
    assert shown.returncode == 0, shown.stdout + shown.stderr
    text = shown.stdout
    assert "checkout  v1 → v2  (production)  Running" in text
    assert "stable v1   canary v2" in text
    assert re.search(r"step [123]/3 {3}weight (10|50|100)%", text), text
    for metric in ("error_rate", "p95_latency", "traffic_split"):
        assert re.search(rf"{metric} +(PASS|INCONCLUSIVE) +(10|50|100)%", text), text
    assert "vs baseline" in text  # the numbers behind the verdict
    assert f"{prefect_server.ui_url}/runs/flow-run/" in text and "release/checkout/v2/production" in text
    out, err = seen["waited"]
    assert seen["wait"].returncode == 0, out + err
    assert "release/checkout/v2/production" in out and "promoted (analysis_passed: every step passed" in out
    assert "Traceback" not in out + err + shown.stderr


def test_wait_exits_1_when_the_release_rolls_back(prefect_server, stack):
    from canaryflow.operate import current_release

    waited: list[subprocess.CompletedProcess] = []

    def operator() -> None:
        wait_for_weight(stack, 10)
        run = current_release("checkout")  # by id: what a pipeline that started the run holds
        waited.append(cli(prefect_server, "wait", str(run.id), "--timeout", "300", timeout=320))

    state, outcome, errors, _ = release_operated_by(operator, {**FAST_SPEC, "version": "v3-errors"})
    assert not errors, errors
    assert state.is_failed()
    done = waited[0]
    assert done.returncode == 1, done.stdout + done.stderr
    assert "release/checkout/v3-errors/production" in done.stdout
    assert "rolled back (high_error_rate): error_rate: canary" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    after = cli(prefect_server, "status", "checkout")
    assert after.returncode == 0 and "RolledBack" in after.stdout and "stable now v1" in after.stdout
    assert re.search(r"error_rate +FAIL +10%", after.stdout), after.stdout
