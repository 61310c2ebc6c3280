"""End-to-end: a real canary release on the embedded local platform.

One stack (Prometheus, Pushgateway, controller, load generator) is shared by
the module to keep the run short; each test leaves no canary behind.
"""

import os
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from canaryflow.local.catalog import load_catalog
from canaryflow.local.stack import LocalStack
from tests.unit.local_support import within_binomial_margin


def alive(pid: int) -> bool:
    """True for a running process; zombies count as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with LocalStack(rps=50, workdir=tmp_path_factory.mktemp("stack")) as s:
        yield s


@pytest.fixture
def admin(stack):
    with httpx.Client(base_url=stack.controller_url + "/-", timeout=10) as client:
        yield client
        client.post("/rollback")


def state(admin) -> dict:
    return admin.get("/state").json()


def deploy_ready(admin, version: str) -> dict:
    resp = admin.post("/canary", json={"version": version})
    assert resp.status_code == 201, resp.text
    assert resp.json()["version"] == version
    return wait_for(lambda: (state(admin)["canary"] or {}).get("ready") and state(admin)["canary"],
                    15, what=f"canary {version} ready")


def prom_query(stack, query: str) -> list:
    resp = httpx.get(stack.prometheus_url + "/api/v1/query", params={"query": query}, timeout=5)
    resp.raise_for_status()
    return resp.json()["data"]["result"]


def test_canary_split_and_promote(stack, admin):
    old_stable = state(admin)["stable"]
    assert old_stable["version"] == "v1" and old_stable["ready"]
    deploy_ready(admin, "v2")

    resp = admin.put("/weights", json={"canary_weight": 50, "lease_seconds": None})
    assert resp.status_code == 200, resp.text
    before = state(admin)["routed"]

    def forty_more() -> dict | None:  # counted in requests, not seconds: a busy machine is just slower
        routed = state(admin)["routed"]
        return routed if routed["stable"] + routed["canary"] - before["stable"] - before["canary"] >= 200 else None

    after = wait_for(forty_more, 30, what="200 requests through the proxy")
    to_stable = after["stable"] - before["stable"]
    to_canary = after["canary"] - before["canary"]
    # Each request goes to the canary with probability 1/2, as a mesh routes: a binomial margin, not a count.
    assert within_binomial_margin(to_canary, to_canary + to_stable, 0.5)

    wait_for(lambda: prom_query(stack, 'http_requests_total{version="v2"}'), 12, 0.5,
             "Prometheus to see v2 requests")

    promoted = admin.post("/promote").json()
    assert promoted["stable"]["version"] == "v2"
    assert promoted["canary"] is None and promoted["canary_weight"] == 0
    assert promoted["history"][-1]["reason"] == "promote"
    assert not alive(old_stable["pid"])
    assert httpx.get(stack.controller_url + "/api/orders").json()["version"] == "v2"


def test_rollback_stops_canary(admin):
    canary = deploy_ready(admin, "v3-errors")
    assert admin.put("/weights", json={"canary_weight": 10}).status_code == 200
    result = admin.post("/rollback").json()
    assert result["canary"] is None and result["canary_weight"] == 0
    assert result["history"][-1]["reason"] == "rollback"
    assert not alive(canary["pid"])
    assert admin.post("/rollback").status_code == 200  # idempotent
    assert admin.post("/promote").status_code == 409


def test_lease_expiry_reverts_weight(admin):
    deploy_ready(admin, "v1" if state(admin)["stable"]["version"] != "v1" else "v2")
    resp = admin.put("/weights", json={"canary_weight": 20, "lease_seconds": 0.8})
    assert resp.json()["lease_expires_at"] is not None
    expired = wait_for(lambda: state(admin)["canary_weight"] == 0 and state(admin), 5,
                       what="lease expiry")
    assert expired["history"][-1]["reason"] == "lease_expired"
    assert expired["lease_expires_at"] is None


def test_crashing_version_reports_exit_code(admin):
    assert admin.post("/canary", json={"version": "v3-crash"}).status_code == 201
    wait_for(lambda: (state(admin)["canary"] or {}).get("exit_code") == 3, 10,
             what="crash exit code")
    resp = admin.put("/weights", json={"canary_weight": 10})
    assert resp.status_code == 409 and "not ready" in resp.json()["error"]


def test_state_lists_the_catalogue_versions(admin):
    versions = state(admin)["versions"]
    assert versions == load_catalog().names and "v3-crash-later" in versions


def test_bad_requests_rejected(admin):
    resp = admin.post("/canary", json={"version": "nope"})
    assert resp.status_code == 400 and "v3-crash" in resp.json()["error"]
    stable = state(admin)["stable"]["version"]
    assert admin.post("/canary", json={"version": stable}).status_code == 400
    assert admin.put("/weights", json={"canary_weight": 101}).status_code == 400
    assert admin.put("/weights", json={"canary_weight": 5}).status_code == 409


def test_fault_profile_applies_to_canary(admin):
    canary = deploy_ready(admin, "v3-smoke-broken")
    assert httpx.get(canary["url"] + "/api/health").status_code == 503
    assert httpx.get(canary["url"] + "/api/orders").status_code == 200


def test_prometheus_restart_keeps_working(stack):
    stack.stop_prometheus()
    with pytest.raises(httpx.HTTPError):
        httpx.get(stack.prometheus_url + "/-/ready", timeout=1)
    stack.start_prometheus()
    assert httpx.get(stack.prometheus_url + "/-/ready").status_code == 200


def test_close_leaves_no_processes(stack):
    s = httpx.get(stack.controller_url + "/-/state").json()
    pids = [p.pid for p in stack.processes.values()]
    pids += [t["pid"] for t in (s["stable"], s["canary"]) if t]
    assert len(pids) >= 5
    stack.close()
    assert [pid for pid in pids if alive(pid)] == []
    assert (stack.workdir / "controller.log").is_file()  # a workdir the caller gave is kept


def test_exception_inside_block_cleans_up(tmp_path, monkeypatch):
    """Processes stop, and the temporary workdir the stack made itself (no workdir given) goes."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkdtemp puts it, to observe it
    pids, workdirs = [], []
    with pytest.raises(RuntimeError, match="boom"):
        with LocalStack(rps=5) as s:
            pids += [p.pid for p in s.processes.values()]
            pids.append(httpx.get(s.controller_url + "/-/state").json()["stable"]["pid"])
            workdirs.append(s.workdir)
            assert (s.workdir / "controller.log").is_file()
            raise RuntimeError("boom")
    assert len(pids) == 5
    assert [pid for pid in pids if alive(pid)] == []
    assert workdirs[0].parent == tmp_path.resolve() and not workdirs[0].exists()


def test_canary_crashing_mid_canary_is_noticed(tmp_path):
    """A canary that served, then died (crash_after_s): state shows its exit code, the proxy keeps
    answering. No load generator (rps=0), so the 50 % split alternates exactly and every routed
    request below is one of ours."""
    catalog = tmp_path / "versions.yaml"
    catalog.write_text("service: checkout\nversions:\n  v1: {}\n  v2-crash-later: {crash_after_s: 10}\n")
    with LocalStack(rps=0, catalog=catalog, workdir=tmp_path / "stack") as s, \
            httpx.Client(base_url=s.controller_url + "/-", timeout=10) as admin:
        assert state(admin)["versions"] == ["v1", "v2-crash-later"]
        canary = deploy_ready(admin, "v2-crash-later")
        assert admin.put("/weights", json={"canary_weight": 50}).status_code == 200
        served = [httpx.get(s.controller_url + "/api/orders").json().get("version") for _ in range(20)]
        assert within_binomial_margin(served.count("v2-crash-later"), len(served), 0.5), served

        crashed = wait_for(lambda: (state(admin)["canary"] or {}).get("exit_code") is not None
                           and state(admin)["canary"], 30, what="the canary's crash in state")
        assert crashed["exit_code"] == 3 and crashed["ready"] is False
        assert crashed["pid"] == canary["pid"] and not alive(canary["pid"])
        assert state(admin)["canary_weight"] == 50  # the controller reports; rolling back is the release's job

        # The dead canary keeps its share: those requests get 502 Bad Gateway, the rest are served.
        statuses = [httpx.get(s.controller_url + "/api/orders").status_code for _ in range(40)]
        assert within_binomial_margin(statuses.count(502), len(statuses), 0.5), statuses
        assert set(statuses) <= {200, 500, 502}  # 500: v1's own 0.1 % noise
        assert admin.post("/rollback").status_code == 200
        assert {httpx.get(s.controller_url + "/api/orders").status_code for _ in range(5)} == {200}
