"""``LocalStack(seed=...)`` hands a stream of its seed to every process that draws at random.

The processes are not started: ``procs.spawn`` records each argument vector instead, which is
exactly what reaches a child.
"""

from __future__ import annotations

import pytest

from canaryflow.local import procs
from canaryflow.local import stack as stack_module
from canaryflow.local.seeds import derive_seed
from canaryflow.local.stack import LocalStack


class ExitedProcess:
    pid = 2**31 - 1  # beyond any pid_max: a stray signal to it can reach nobody

    def poll(self) -> int:
        return 0


@pytest.fixture
def started(monkeypatch) -> dict[str, list[str]]:
    """Argument vectors by program, of a stack whose processes only pretend to start."""
    spawned: dict[str, list[str]] = {}

    def spawn(args, **_):
        args = [str(a) for a in args]
        module = next((a for a in args if a.startswith("canaryflow.local.")), args[0])
        spawned[module.rsplit(".", 1)[-1]] = args
        return ExitedProcess()

    monkeypatch.setattr(stack_module, "find_binary", lambda *names: names[0])
    monkeypatch.setattr(procs, "spawn", spawn)
    monkeypatch.setattr(procs, "wait_http", lambda *a, **k: None)
    monkeypatch.setattr(procs, "stop_all", lambda *a, **k: None)
    monkeypatch.setattr(procs, "stop", lambda *a, **k: 0)
    return spawned


def seed_of(args: list[str]) -> int | None:
    return int(args[args.index("--seed") + 1]) if "--seed" in args else None


def test_the_seed_reaches_the_controller_and_the_load_generator(started, tmp_path):
    with LocalStack(seed=7, rps=10, workdir=tmp_path):
        pass
    assert seed_of(started["controller"]) == derive_seed(7, "controller")
    assert seed_of(started["loadgen"]) == derive_seed(7, "loadgen")
    assert seed_of(started["controller"]) != seed_of(started["loadgen"])


def test_without_a_seed_no_process_is_given_one(started, tmp_path):
    with LocalStack(rps=10, workdir=tmp_path):
        pass
    assert {"controller", "loadgen", "prometheus"} <= set(started)
    assert [name for name, args in started.items() if "--seed" in args] == []
