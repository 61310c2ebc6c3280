"""A real Prefect server (API + UI) on 127.0.0.1, for the demo, the tests and the benchmark.

Runs ``prefect server start`` as a child process with its own ``PREFECT_HOME`` (SQLite, unless a
PostgreSQL ``database_url`` is given), with the UI pointed at the same port (otherwise it calls 4200)
and analytics off (no network here).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from canaryflow.local import procs

START_TIMEOUT_S = 90.0


def server_env(*, home: Path, port: int, database_url: str | None = None) -> dict[str, str]:
    api = f"http://127.0.0.1:{port}/api"
    database = {"PREFECT_API_DATABASE_CONNECTION_URL": database_url} if database_url else {}
    return procs.python_env({
        **database,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_UI_API_URL": api,
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    })


class PrefectServer:
    """``with PrefectServer() as server:`` gives ``server.api_url`` and ``server.ui_url``."""

    def __init__(self, *, port: int | None = None, home: str | Path | None = None, detached: bool = False,
                 database_url: str | None = None) -> None:
        self.port = port or procs.free_port()
        self._database_url = database_url  # a secret (it carries the password): only in the child's environment
        self.detached = detached  # outlive this process, so the UI stays up after the demo
        self.home = Path(home or tempfile.mkdtemp(prefix="canaryflow-prefect-")).resolve()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.ui_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> PrefectServer:
        self.home.mkdir(parents=True, exist_ok=True)
        prefect = shutil.which("prefect", path=os.path.dirname(sys.executable)) or "prefect"
        self.process = procs.spawn(
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            log_path=self.home / "server.log",
            env=server_env(home=self.home, port=self.port, database_url=self._database_url),
            die_with_parent=not self.detached)
        if self.detached:
            self.pid_file_in(self.home).write_text(str(self.process.pid))
        try:
            procs.wait_http(f"{self.api_url}/health", START_TIMEOUT_S, proc=self.process, interval=0.3)
        except (RuntimeError, TimeoutError):
            self.stop()
            raise
        return self

    @staticmethod
    def pid_file_in(home: Path) -> Path:
        """Where a detached server records its pid, so a later command can stop it."""
        return home / "server.pid"

    def stop(self) -> None:
        if self.process is not None:
            procs.stop(self.process, timeout=10)
            self.process = None

    def __enter__(self) -> PrefectServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
