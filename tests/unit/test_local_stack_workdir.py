"""LocalStack removes the temporary work directory it made itself, never one it was given.

A start that fails before any process runs (no Prometheus on PATH) exercises the same close()
as a normal exit; tests/e2e/test_local_stack.py covers a stack that really ran.
"""

from __future__ import annotations

import tempfile

import pytest

from canaryflow.local import stack as stack_module
from canaryflow.local.stack import LocalStack


@pytest.fixture
def no_prometheus(monkeypatch, tmp_path):
    """Temp dirs go under tmp_path/tmp (to be observable) and finding Prometheus fails."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))

    def missing(*names: str) -> str:
        raise RuntimeError("no prometheus here")

    monkeypatch.setattr(stack_module, "find_binary", missing)
    return tmp


def test_failed_start_removes_its_own_temporary_workdir(no_prometheus):
    stack = LocalStack()
    with pytest.raises(RuntimeError, match="no prometheus"):
        with stack:
            pass
    assert stack.workdir is not None and stack.workdir.parent == no_prometheus.resolve()
    assert not stack.workdir.exists()
    assert list(no_prometheus.iterdir()) == []


def test_given_workdir_survives_close(no_prometheus, tmp_path):
    given = tmp_path / "mine"
    stack = LocalStack(workdir=given)
    with pytest.raises(RuntimeError, match="no prometheus"):
        with stack:
            pass
    stack.close()  # idempotent, and still leaves the caller's directory alone
    assert given.is_dir()
