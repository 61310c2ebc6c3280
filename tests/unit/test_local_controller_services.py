"""One controller process running two services: each its own stable, catalogue, traffic and admin
paths, routed by Host. Real controller and service processes, no load generator; every wait bounded."""

from __future__ import annotations

import json

import httpx
import pytest

from canaryflow.local import procs
from canaryflow.local.services import PlannedService, write_plans

CHECKOUT = "service: x\nversions:\n  v1: {}\n  v2: {}\n"
PAYMENTS = "service: x\nversions:\n  p1: {}\n  p2: {}\n"


@pytest.fixture(scope="module")
def admin(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("controller")
    (tmp / "checkout.yaml").write_text(CHECKOUT)
    (tmp / "payments.yaml").write_text(PAYMENTS)
    write_plans(tmp / "services.json", [
        PlannedService(service="checkout", stable="v1", catalog=tmp / "checkout.yaml",
                       slot_ports=(procs.free_port(), procs.free_port())),
        PlannedService(service="payments", stable="p1", catalog=tmp / "payments.yaml",
                       slot_ports=(procs.free_port(), procs.free_port())),
    ])
    port = procs.free_port()
    proc = procs.spawn(procs.python_module(
        "canaryflow.local.controller", "--services-file", tmp / "services.json", "--port", port,
        "--targets-file", tmp / "targets.json", "--log-dir", tmp / "services", "--seed", 5),
        log_path=tmp / "controller.log", env=procs.python_env())
    try:
        procs.wait_http(f"http://127.0.0.1:{port}/-/healthz", 30, proc=proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            client.targets = json.loads((tmp / "targets.json").read_text())
            yield client
    finally:
        procs.stop(proc)


def test_each_service_runs_its_own_stable_from_its_own_catalogue(admin):
    assert admin.get("/-/services").json() == {"services": {
        "checkout": {"stable": "v1", "canary": None, "canary_weight": 0},
        "payments": {"stable": "p1", "canary": None, "canary_weight": 0}}}
    assert admin.get("/-/services/payments/state").json()["versions"] == ["p1", "p2"]
    refused = admin.post("/-/services/checkout/canary", json={"version": "p2"})
    assert refused.status_code == 400 and "unknown version 'p2'" in refused.json()["error"]


def test_requests_go_to_the_service_their_host_names(admin):
    for host, version in (("checkout", "v1"), ("payments", "p1"), ("payments.local:80", "p1")):
        answer = admin.get("/api/orders", headers={"Host": host})
        assert answer.status_code == 200 and answer.json()["version"] == version, host
    unknown = admin.get("/api/orders", headers={"Host": "orders"})
    assert unknown.status_code == 404 and unknown.json()["services"] == ["checkout", "payments"]


def test_unprefixed_admin_paths_ask_which_service(admin):
    answer = admin.get("/-/state")
    assert answer.status_code == 400 and "/-/services/<name>/" in answer.json()["error"]
    assert admin.get("/-/services/orders/state").status_code == 404


def test_a_canary_of_one_service_takes_none_of_the_others_traffic(admin):
    try:
        assert admin.post("/-/services/payments/canary", json={"version": "p2"}).status_code == 201
        procs.wait_http(str(admin.base_url.join("/-/services/payments/state")), 20,
                        ok=lambda r: r.json()["canary"]["ready"], interval=0.05)
        assert admin.put("/-/services/payments/weights", json={"canary_weight": 100}).status_code == 200
        seen = {admin.get("/api/orders", headers={"Host": h}).json()["version"]
                for h in ("checkout", "payments") for _ in range(10)}
        assert seen == {"v1", "p2"}
        assert admin.get("/-/services/checkout/state").json()["canary_weight"] == 0
    finally:
        admin.post("/-/services/payments/rollback")
    assert admin.get("/-/services/payments/state").json()["canary"] is None


def test_prometheus_finds_every_service_in_one_targets_file(admin):
    assert [g["labels"] for g in admin.targets] == [{"service": "checkout"}, {"service": "payments"}]
    assert all(len(g["targets"]) == 2 for g in admin.targets)


def test_every_slot_port_is_held_by_the_controller_while_it_runs(admin):
    """The canary slots stay free for minutes before a deploy; another program binding one would be
    scraped as that service's canary. The controller holds them, so such a bind is refused."""
    import errno
    import socket

    for group in admin.targets:
        for target in group["targets"]:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
                other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                with pytest.raises(OSError) as refused:
                    other.bind(("127.0.0.1", int(target.rsplit(":", 1)[1])))
                assert refused.value.errno == errno.EADDRINUSE, target
