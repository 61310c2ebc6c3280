"""A service version with ``crash_after_s`` serves normally, then really dies with CRASH_EXIT_CODE."""

from __future__ import annotations

import threading

import httpx

from canaryflow.local import procs
from canaryflow.local.service import CRASH_EXIT_CODE, schedule_crash


def test_schedule_crash_exits_with_the_crash_code(capsys):
    exited: list[int] = []
    done = threading.Event()

    def fake_exit(code: int) -> None:
        exited.append(code)
        done.set()

    timer = schedule_crash(0.05, "v9", exit=fake_exit)
    assert timer.daemon  # a normal shutdown must not wait for the pending crash
    assert done.wait(10), "the crash timer never fired"
    assert exited == [CRASH_EXIT_CODE]
    assert "v9 is configured to crash" in capsys.readouterr().err


def test_process_serves_then_exits_with_the_crash_code(tmp_path):
    """Uvicorn must not turn the crash into a clean exit: the supervisor sees code 3."""
    catalog = tmp_path / "versions.yaml"
    catalog.write_text("versions:\n  v9: {crash_after_s: 1.5}\n")
    port, log = procs.free_port(), tmp_path / "service.log"
    proc = procs.spawn(procs.python_module("canaryflow.local.service", "--version", "v9",
                                           "--port", port, "--catalog", catalog),
                       log_path=log, env=procs.python_env())
    try:
        procs.wait_http(f"http://127.0.0.1:{port}/ready", 20, proc=proc)
        assert httpx.get(f"http://127.0.0.1:{port}/api/orders").json()["version"] == "v9"
        assert proc.wait(timeout=30) == CRASH_EXIT_CODE
    finally:
        procs.stop(proc)
    assert "v9 is configured to crash 1.5s after start" in log.read_text()
