"""``canaryflow status --watch`` in a real terminal (tmux, fixed size): the live screen follows a
running release, and Ctrl-C ends it cleanly (exit 0, no traceback, the last screen left in place)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import FAST_SPEC, ROOT, cli_env
from tests.e2e.test_operator_verbs import release_operated_by, wait_for_weight

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]

TMUX = shutil.which("tmux") or "tmux"
WIDTH, HEIGHT = 160, 45


#: A tmux server of the test's own (its socket, no config file): a server shared with other shells
#: could have other sizes, options or clients.
SOCKET = f"canaryflow-test-{uuid.uuid4().hex[:8]}"


def tmux(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TMUX, "-L", SOCKET, "-f", "/dev/null", *args], capture_output=True, text=True,
                          timeout=10, check=False)


@pytest.fixture
def session():
    name = f"status-{uuid.uuid4().hex[:8]}"
    yield name
    tmux("kill-session", "-t", name)
    tmux("kill-server")  # only this test's server, by its socket


def pane(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session).stdout


def test_watch_follows_the_release_and_ctrl_c_ends_it_cleanly(prefect_server, stack, session, tmp_path):
    # Only what the command needs: the Prefect server, the platform's settings, this checkout.
    env = {k: v for k, v in cli_env(prefect_server, TERM="xterm-256color", LANG="C.UTF-8").items()
           if k.startswith(("PREFECT_", "CANARYFLOW_")) or k in ("PATH", "HOME", "PYTHONPATH", "TERM", "LANG")}
    rc, err = tmp_path / "rc", tmp_path / "stderr"
    script = tmp_path / "watch.sh"
    script.write_text("\n".join([
        *(f"export {k}={shlex.quote(v)}" for k, v in env.items()),
        f"cd {shlex.quote(str(ROOT))}",
        # The pane's size, said outright: with tmux 3.3a the command sometimes measured 80 columns in a
        # pane tmux reported at 160.
        f"export COLUMNS={WIDTH} LINES={HEIGHT}",
        f"{shlex.quote(sys.executable)} -m canaryflow status checkout --watch --interval 1 2>{shlex.quote(str(err))}",
        f"echo $? > {shlex.quote(str(rc))}",
        "sleep 60",  # keep the pane (and its last screen) until the test has read it
    ]) + "\n")
    seen: dict[str, Any] = {}

    def watch() -> None:
        wait_for_weight(stack, 10)
        started = tmux("new-session", "-d", "-s", session, "-x", str(WIDTH), "-y", str(HEIGHT),
                       f"bash {shlex.quote(str(script))}")
        assert started.returncode == 0, started.stderr
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            screen = pane(session)
            if re.search(r"weight (10|50|100)%", screen) and "error_rate" in screen:
                seen["live"] = screen
                break
            time.sleep(0.5)
        else:
            seen["live"] = None
            size = tmux("display-message", "-p", "-t", session, "#{window_width}x#{window_height}").stdout.strip()
            seen["last"] = f"(window {size})\n{pane(session)}"
        tmux("send-keys", "-t", session, "C-c")
        deadline = time.monotonic() + 20
        while not rc.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        seen["after"] = pane(session)

    state, _, errors, _ = release_operated_by(watch, {**FAST_SPEC, "version": "v2", "step_wait_seconds": 8})
    assert not errors, errors
    assert state.is_completed(), state.message
    assert seen["live"] is not None, f"the watch never showed the release at a weight:\n{seen.get('last')}"
    live = seen["live"]
    (tmp_path / "screen.txt").write_text(live)  # kept with the test's files, to look at after a failure
    assert "checkout  v1 → v2  (production)  Running" in live and "stable v1   canary v2" in live
    assert max(len(line) for line in live.splitlines()) == WIDTH  # drawn to the pane's width, not past it
    assert rc.exists(), f"Ctrl-C did not end the watch:\n{seen['after']}"
    assert rc.read_text().strip() == "0"
    assert "Traceback" not in err.read_text() + seen["after"]
    assert "checkout" in seen["after"]  # the last screen stays in the terminal
