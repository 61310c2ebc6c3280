"""A throwaway PostgreSQL cluster on 127.0.0.1, for a Prefect server that runs the way a team runs it.

Prefect's embedded SQLite serialises every write; a platform team's server sits on PostgreSQL. The
tests and the scale benchmark start one from Debian's ``postgresql`` binaries in a temporary data
directory, listening only on a loopback TCP port (no Unix socket), with password authentication.

PostgreSQL refuses to run as root, so as root the cluster runs as an unprivileged system user
(Debian's ``postgres``, else ``nobody``) that owns the data directory. The server process gets the
same death signal as every other child of the local platform, armed *after* the switch of user (a
change of uid clears it), so a killed test session cannot leave it running.

Passwords are generated here, handed to ``psql`` through its environment and stdin (never on a
command line, where ``ps`` would show them) and only leave this object inside :meth:`url`.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from canaryflow.local import procs

#: Debian installs each major version side by side; the newest one found is used.
DEBIAN_BIN_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "postgres"
START_TIMEOUT_S = 60.0
#: Unprivileged accounts tried, in order, when started as root.
OS_USERS = ("postgres", "nobody")


class PostgresError(RuntimeError):
    """The cluster could not be created, started or given a database (the message says which step)."""


def find_bin_dir() -> Path:
    """The directory holding ``initdb``/``postgres``: Debian keeps them off ``PATH``."""
    candidates = sorted(DEBIAN_BIN_ROOT.glob("*/bin/postgres"), key=lambda p: _major(p.parent.parent.name))
    if candidates:
        return candidates[-1].parent
    found = shutil.which("postgres")
    if found:
        return Path(found).parent
    raise PostgresError("PostgreSQL is not installed: apt-get install postgresql (or scripts/bootstrap)")


def _major(name: str) -> int:
    return int(name) if name.isdigit() else -1


def os_user_for_server() -> pwd.struct_passwd | None:
    """The account the server runs as: None (this one) unless we are root, whom PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    for name in OS_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresError(f"running as root and none of the users {', '.join(OS_USERS)} exists to run PostgreSQL")


class PostgresCluster:
    """``with PostgresCluster() as pg: url = pg.create_database("prefect", owner="prefect")``."""

    def __init__(self, *, port: int | None = None, bin_dir: Path | None = None) -> None:
        self.port = port or procs.free_port()
        self.host = "127.0.0.1"
        self.bin_dir = bin_dir or find_bin_dir()
        self.os_user = os_user_for_server()
        self._superuser_password = secrets.token_urlsafe(24)
        self._passwords: dict[str, str] = {}
        self.workdir: Path | None = None
        self.process: subprocess.Popen | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> PostgresCluster:
        # Under /tmp itself, not a caller's tmp_path: pytest's are 0700 root, closed to the server's user.
        self.workdir = Path(tempfile.mkdtemp(prefix="canaryflow-pg-"))
        if self.os_user is not None:
            os.chown(self.workdir, self.os_user.pw_uid, self.os_user.pw_gid)
        data = self.workdir / "data"
        pwfile = self.workdir / "superuser.pw"
        pwfile.write_text(self._superuser_password + "\n")
        os.chmod(pwfile, 0o600)
        if self.os_user is not None:
            os.chown(pwfile, self.os_user.pw_uid, self.os_user.pw_gid)
        try:
            self._run_as_server_user([str(self.bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER,
                                      f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=reject",
                                      "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"],
                                     step="initdb")
        finally:
            pwfile.unlink(missing_ok=True)
        self.process = procs.spawn(
            [str(self.bin_dir / "postgres"), "-D", str(data), "-h", self.host, "-p", str(self.port),
             "-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "max_connections=200"],
            log_path=self.workdir / "postgres.log", **self._as_server_user())
        self._wait_ready()
        return self

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)  # "fast" shutdown: ends sessions, no waiting on clients
                try:
                    self.process.wait(15)
                except subprocess.TimeoutExpired:
                    pass
            procs.stop(self.process, timeout=5)
            self.process = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> PostgresCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- databases ---------------------------------------------------------------------------------
    def create_database(self, name: str, *, owner: str) -> str:
        """A login role ``owner`` (new password) owning a new database ``name``; returns its asyncpg URL.

        The statements are the ones the README's production set-up prints, run through ``psql``."""
        password = secrets.token_urlsafe(24)
        self.psql(f"CREATE ROLE {_ident(owner)} LOGIN PASSWORD '{password}';\n"
                  f"CREATE DATABASE {_ident(name)} OWNER {_ident(owner)};\n")
        self._passwords[owner] = password
        return self.url(name, user=owner)

    def url(self, database: str, *, user: str) -> str:
        """SQLAlchemy/asyncpg URL of ``database`` as ``user``: it carries the password, treat it as a secret."""
        return f"postgresql+asyncpg://{user}:{self._passwords[user]}@{self.host}:{self.port}/{database}"

    def psql(self, sql: str, *, database: str = "postgres") -> str:
        """Run ``sql`` as the superuser over TCP; raise naming psql's error (the statements are not echoed)."""
        done = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.host, "-p", str(self.port),
             "-U", SUPERUSER, "-d", database, "-At", "-f", "-"],
            input=sql, capture_output=True, text=True, timeout=30, check=False,
            env={**os.environ, "PGPASSWORD": self._superuser_password, "PGCONNECT_TIMEOUT": "5"})
        if done.returncode != 0:
            raise PostgresError(f"psql failed on database {database}: {done.stderr.strip()}")
        return done.stdout

    # -- internals ---------------------------------------------------------------------------------
    def _as_server_user(self) -> dict[str, Any]:
        if self.os_user is None:
            return {"env": {**os.environ, "LC_ALL": "C.UTF-8"}}
        return {"user": self.os_user.pw_uid, "group": self.os_user.pw_gid,
                "env": {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
                        "HOME": str(self.workdir)},
                "cwd": self.workdir}

    def _run_as_server_user(self, args: list[str], *, step: str) -> None:
        options = self._as_server_user()
        extra: dict[str, Any] = {"extra_groups": []} if "user" in options else {}
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False, **options, **extra)
        if done.returncode != 0:
            raise PostgresError(f"{step} failed: {(done.stderr or done.stdout).strip()[-2000:]}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise PostgresError(f"postgres exited with code {self.process.returncode}: {self._log_tail()}")
            ready = subprocess.run([str(self.bin_dir / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)],
                                   capture_output=True, timeout=10, check=False)
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise PostgresError(f"postgres not ready on port {self.port} after {START_TIMEOUT_S:.0f} s")
            time.sleep(0.1)

    def _log_tail(self) -> str:
        assert self.workdir is not None
        log = self.workdir / "postgres.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"


def _ident(name: str) -> str:
    """A role or database name as a quoted SQL identifier; refuses anything but [a-z0-9_]."""
    if not name or not all(c.isascii() and (c.isalnum() or c == "_") for c in name) or not name.islower():
        raise ValueError(f"PostgreSQL name {name!r}: use lowercase letters, digits and _")
    return f'"{name}"'
