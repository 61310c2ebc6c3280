"""Operator verbs on a running release, from the CLI, on a real Prefect server and local platform:
what the person sees (the CLI's line), what the run ends as (its state and summary through the
Prefect API) and where the traffic went."""

from __future__ import annotations

import contextvars
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from canaryflow.release import ReleaseRolledBack
from flows.release import canary_release
from tests.e2e.conftest import FAST_SPEC, ROOT, cli_env, controller_state, weights_seen

pytestmark = pytest.mark.e2e

#: Long steps, so only a person's command can end the release early.
SLOW = {**FAST_SPEC, "version": "v2", "step_wait_seconds": 600, "max_hold_seconds": 60}


def cli(prefect_server: Any, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "canaryflow", *args], cwd=ROOT, env=cli_env(prefect_server),
                          capture_output=True, text=True, timeout=timeout)


def wait_for_weight(stack: Any, weight: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while controller_state(stack)["canary_weight"] != weight:
        assert time.monotonic() < deadline, f"the canary never reached {weight}%"
        time.sleep(0.5)


def release_operated_by(
        person: Callable[[], None], spec: dict[str, Any]) -> tuple[Any, Any, list[BaseException], float]:
    """Run the release here (flows belong in the main thread); a person acts from another thread."""
    errors: list[BaseException] = []

    def act() -> None:
        try:
            person()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    thread = threading.Thread(target=contextvars.copy_context().run, args=(act,), daemon=True)
    thread.start()
    started = time.monotonic()
    state = canary_release(spec, return_state=True)
    thread.join(timeout=150)
    return state, state.result(raise_on_failure=False), errors, time.monotonic() - started


def test_promote_from_the_cli_skips_the_remaining_steps(prefect_server, stack):
    said: list[str] = []

    def promote() -> None:
        wait_for_weight(stack, 10)
        done = cli(prefect_server, "promote", "checkout", "--reason", "hotfix", "--by", "bob@ci")
        said.append(done.stdout)
        assert done.returncode == 0, done.stdout + done.stderr

    state, summary, errors, seconds = release_operated_by(promote, SLOW)
    assert not errors, errors
    assert state.is_completed(), state.message
    assert (summary["status"], summary["reason"]) == ("promoted", "manual")
    assert summary["explanation"].startswith("promoted by bob@ci: hotfix at 10% canary")
    assert seconds < 240  # well before the 600 s step, even on a loaded machine
    proxy = controller_state(stack)
    assert proxy["stable"]["version"] == "v2" and weights_seen(proxy)[:1] == [10] and 50 not in weights_seen(proxy)
    assert "promote sent to release/checkout/" in said[0] and "by bob@ci: hotfix" in said[0]
    assert ": Completed:" in said[0].replace("\n", " ")


def test_abort_from_the_cli_rolls_back_manual_and_ends_promptly(prefect_server, stack):
    said: list[str] = []

    def abort() -> None:
        wait_for_weight(stack, 10)
        done = cli(prefect_server, "abort", "checkout", "--reason", "tickets", "--by", "alice@laptop")
        said.append(done.stdout + done.stderr)
        assert done.returncode == 0, done.stdout + done.stderr

    state, outcome, errors, seconds = release_operated_by(abort, SLOW)
    assert not errors, errors
    assert state.is_failed() and isinstance(outcome, ReleaseRolledBack)
    assert (outcome.reason, outcome.explanation) == ("manual", "aborted by alice@laptop: tickets at 10% canary")
    assert seconds < 240  # well before the 600 s step, even on a loaded machine
    proxy = controller_state(stack)
    assert proxy["canary"] is None and proxy["canary_weight"] == 0 and proxy["stable"]["version"] == "v1"
    assert "Traceback" not in said[0] and "rolled back (manual): aborted by alice@laptop" in said[0]


def test_rollback_of_a_running_release_moves_users_first_and_the_release_rolls_back_itself(
        prefect_server, stack, tmp_path):
    from canaryflow.pipeline_metrics import fetch_group

    spec = tmp_path / "spec.yaml"
    spec.write_text("service: checkout\nversion: v2\nenvironment: production\n")
    said: list[str] = []

    def rollback() -> None:
        wait_for_weight(stack, 10)
        done = cli(prefect_server, "rollback", "--spec", str(spec), "--detail", "pager 4711")
        said.append(done.stdout + done.stderr)
        assert done.returncode == 0, done.stdout + done.stderr

    state, outcome, errors, _ = release_operated_by(rollback, SLOW)
    assert not errors, errors
    assert state.is_failed() and isinstance(outcome, ReleaseRolledBack)
    # The release read the abort before it noticed its weight gone: manual, not traffic_mismatch.
    assert outcome.reason == "manual" and "canary-rollback (manual): pager 4711" in outcome.explanation
    proxy = controller_state(stack)
    assert proxy["canary"] is None and proxy["stable"]["version"] == "v1"
    changes = [(h["canary_weight"], h["reason"]) for h in proxy["history"]]
    assert changes.index((0, "set")) < changes.index((0, "rollback"))  # users off the canary first
    assert "nothing left to roll back" in said[0] or "nothing to roll back" in said[0], said[0]
    group = fetch_group(stack.pushgateway_url, {"service": "checkout", "environment": "production"})
    reasons = {m["labels"]["reason"]: float(m["value"]) for m in group["deployment_rollback_total"]["metrics"]}
    assert reasons["manual"] == 1  # counted once, by the release's own rollback


def test_pause_holds_the_weight_past_the_step_and_resume_lets_it_go_on(prefect_server, stack):
    spec = {**FAST_SPEC, "version": "v2", "step_wait_seconds": 20, "max_hold_seconds": 60}
    held: list[int] = []

    def pause_then_resume() -> None:
        wait_for_weight(stack, 10)
        paused = cli(prefect_server, "pause", "checkout", "--reason", "looking", "--by", "carol@ops")
        assert paused.returncode == 0 and "pause sent to" in paused.stdout, paused.stdout + paused.stderr
        # A loaded machine may take a while to start the CLI: the pause holds whichever step it found.
        held.append(controller_state(stack)["canary_weight"])
        time.sleep(25)  # past the whole 20 s step and several leases: still where the pause found it
        held.append(controller_state(stack)["canary_weight"])
        resumed = cli(prefect_server, "resume", "checkout", "--by", "carol@ops")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    state, summary, errors, _ = release_operated_by(pause_then_resume, spec)
    assert not errors, errors
    assert state.is_completed(), state.message
    assert held[0] in (10, 50) and held == [held[0], held[0]], held
    assert summary["reason"] == "analysis_passed" and weights_seen(controller_state(stack))[:3] == [10, 50, 100]


def test_a_verb_with_no_release_running_says_so_and_exits_1(prefect_server):
    # A service no test releases: the server is shared, and a release another test killed on
    # purpose stays Running there until a reconcile ends it.
    done = cli(prefect_server, "abort", "ledger", "--reason", "x")
    assert done.returncode == 1 and "no release of ledger is running" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_a_rollback_with_nothing_to_roll_back_says_so_and_counts_nothing(prefect_server, stack, tmp_path):
    from canaryflow.pipeline_metrics import fetch_group

    spec = tmp_path / "spec.yaml"
    spec.write_text("service: checkout\nversion: v2\nenvironment: production\n")
    done = cli(prefect_server, "rollback", "--spec", str(spec))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing to roll back" in done.stdout and "rolled back checkout" not in done.stdout
    group = fetch_group(stack.pushgateway_url, {"service": "checkout", "environment": "production"}) or {}
    assert "deployment_rollback_total" not in group
