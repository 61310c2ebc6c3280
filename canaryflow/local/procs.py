"""Start and stop child processes without leaving orphans behind.

Every process of the local platform is started through :func:`spawn`, which
puts it in its own session (so a terminal Ctrl-C reaches only the parent,
which then shuts children down in order) and arms ``PR_SET_PDEATHSIG`` (so a
parent that is SIGKILLed or crashes still takes its children with it).

Caveat: Linux delivers the death signal when the *thread* that spawned the
child exits, so spawn long-lived children from a long-lived thread (normally
the main thread).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

_PR_SET_PDEATHSIG = 1
# Resolved once here: loading libraries between fork and exec can deadlock.
_LIBC = ctypes.CDLL(None, use_errno=True)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _death_signal_preexec(parent_pid: int) -> Callable[[], None]:
    """Build a preexec_fn that kills the child when its parent goes away."""

    def arm() -> None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl; then nobody would
        # ever signal us, so exit now instead of running as an orphan.
        if os.getppid() != parent_pid:
            os._exit(1)

    return arm


def python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for ``python -m canaryflow...`` children.

    The project root is prepended to PYTHONPATH so children can import the
    package even when it is not installed (e.g. running from a checkout).
    """
    env = dict(os.environ)
    paths = [str(PROJECT_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


def python_module(module: str, *args: object) -> list[str]:
    """Argument vector running ``module`` with the current interpreter."""
    return [sys.executable, "-m", module, *(str(a) for a in args)]


def spawn(
    args: Sequence[str],
    *,
    log_path: str | Path,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    die_with_parent: bool = True,
    user: int | None = None,
    group: int | None = None,
) -> subprocess.Popen:
    """Start ``args`` in a new session, dying with us (unless told not to), logging to ``log_path``.

    ``user``/``group`` (uids, as root) run it as another account without supplementary groups;
    Python switches them before the death signal is armed, so the switch does not clear it."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_death_signal_preexec(os.getpid()) if die_with_parent else None,
            # Another account gets no supplementary groups; without one, the group is left alone too.
            user=user,
            group=group if user is not None else None,
            extra_groups=[] if user is not None else None,
        )


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(proc: subprocess.Popen, timeout: float = 5) -> int | None:
    """Stop ``proc`` and its process group: SIGTERM, then SIGKILL after ``timeout``.

    Returns the exit code. Safe to call on an already exited process; any
    stragglers left in its group are killed either way.
    """
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
    _signal_group(proc.pid, signal.SIGKILL)
    return proc.returncode


def stop_all(procs: Sequence[subprocess.Popen], timeout: float = 5) -> None:
    """Stop several processes concurrently: SIGTERM all first, then wait each."""
    for proc in procs:
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        stop(proc, timeout=max(0.0, deadline - time.monotonic()))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (small race window)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reserve_port(port: int) -> socket.socket:
    """Hold ``port`` on 127.0.0.1 (bound, not listening) so no other program can take it.

    The socket has ``SO_REUSEPORT``, so a process started with :func:`shared_listener` can listen on
    the same port while the reservation stands; a program that binds it the usual way gets
    EADDRINUSE instead of silently answering in the owner's place. A bound socket that does not
    listen is never handed a connection. Raises OSError if the port is taken already.
    """
    return _bound(port, socket.SO_REUSEPORT)


def shared_listener(port: int) -> socket.socket:
    """A socket bound to a port :func:`reserve_port` holds (the server listens on it)."""
    return _bound(port, socket.SO_REUSEADDR, socket.SO_REUSEPORT)


def _bound(port: int, *options: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        for option in options:
            sock.setsockopt(socket.SOL_SOCKET, option, 1)
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def wait_http(
    url: str,
    timeout: float,
    ok: Callable[[httpx.Response], bool] = lambda r: r.status_code == 200,
    *,
    proc: subprocess.Popen | None = None,
    interval: float = 0.1,
) -> httpx.Response:
    """Poll ``url`` until ``ok(response)``; raise TimeoutError naming the url.

    When ``proc`` is given, fail fast with RuntimeError if it exits, instead
    of waiting out the timeout for a server that will never come up.
    """
    deadline = time.monotonic() + timeout
    last = "no response"
    with httpx.Client(timeout=min(2.0, timeout)) as client:
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f"process {proc.args!r} exited with code {proc.returncode} "
                    f"before {url} became ready"
                )
            try:
                resp = client.get(url)
                if ok(resp):
                    return resp
                last = f"HTTP {resp.status_code}"
            except httpx.HTTPError as err:
                last = f"{type(err).__name__}: {err}"
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{url} not ready after {timeout:.1f}s (last: {last})")
            time.sleep(interval)
