"""Platform faults through a real controller and real service processes: incidents that hit every
running version at once, a misrouting mesh, and the seed handed to each service.

One controller (seeded, no load generator, so every routed request is one of ours) is shared by the
module; each test leaves no canary, incident or routing fault behind. Every wait is bounded.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest

from canaryflow.local import procs
from canaryflow.local.seeds import derive_seed
from tests.unit.local_support import within_binomial_margin

SEED = 42
CATALOG = "service: shop\nversions:\n  v1: {}\n  v2: {}\n  v3: {}\n"


@pytest.fixture(scope="module")
def controller(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("controller")
    (tmp / "versions.yaml").write_text(CATALOG)
    port = procs.free_port()
    proc = procs.spawn(procs.python_module(
        "canaryflow.local.controller", "--stable", "v1", "--port", port, "--catalog", tmp / "versions.yaml",
        "--log-dir", tmp / "services", "--seed", SEED), log_path=tmp / "controller.log", env=procs.python_env())
    try:
        procs.wait_http(f"http://127.0.0.1:{port}/-/healthz", 30, proc=proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        procs.stop(proc)


@pytest.fixture
def admin(controller):
    yield controller
    controller.delete("/-/incident")
    controller.delete("/-/routing")
    controller.post("/-/rollback")


def state(client: httpx.Client) -> dict:
    return client.get("/-/state").json()


def state_once(client: httpx.Client, condition) -> dict:
    """The controller's state as soon as ``condition(state)`` holds (within 20 s)."""
    return procs.wait_http(str(client.base_url.join("/-/state")), 20, ok=lambda r: condition(r.json()),
                           interval=0.05).json()


def deploy_ready(client: httpx.Client, version: str) -> dict:
    assert client.post("/-/canary", json={"version": version}).status_code == 201
    return state_once(client, lambda s: s["canary"]["ready"])


def served(client: httpx.Client, requests: int) -> Counter:
    """(version, status) of each of ``requests`` user requests through the proxy."""
    answers = (client.get("/api/orders") for _ in range(requests))
    return Counter((a.json()["version"], a.status_code) for a in answers)


def service_incident(track: dict) -> dict | None:
    return httpx.get(track["url"] + "/-/incident", timeout=5).json()["incident"]


def test_an_incident_hits_stable_and_canary_alike_until_it_is_ended(admin):
    deploy_ready(admin, "v2")
    assert admin.put("/-/weights", json={"canary_weight": 50}).status_code == 200
    answer = admin.post("/-/incident", json={"duration_s": 120, "error_rate": 0.5})
    assert answer.status_code == 200, answer.text
    started = answer.json()
    assert started["incident"]["error_rate"] == 0.5 and started["incident"]["source"] == "admin"
    for track in (started["stable"], started["canary"]):  # in force in both when the call returns
        assert track["incident_synced"] is True
        assert service_incident(track)["error_rate"] == 0.5

    during = served(admin, 200)
    assert during[("v1", 503)] > 0 and during[("v2", 503)] > 0
    assert during[("v1", 200)] > 0 and during[("v2", 200)] > 0

    ended = admin.delete("/-/incident").json()
    assert ended["incident"] is None
    assert service_incident(ended["stable"]) is None and service_incident(ended["canary"]) is None
    after = served(admin, 100)
    assert {status for _, status in after} == {200}


def test_a_canary_started_during_an_incident_joins_it(admin):
    assert admin.post("/-/incident", json={"duration_s": 120, "error_rate": 0.2}).status_code == 200
    assert admin.post("/-/canary", json={"version": "v3"}).status_code == 201
    joined = state_once(admin, lambda s: s["canary"]["ready"] and s["canary"]["incident_synced"])
    assert service_incident(joined["canary"])["error_rate"] == 0.2


def test_misrouting_gives_the_canary_a_fraction_of_the_weight_the_controller_reports(admin):
    deploy_ready(admin, "v2")
    assert admin.put("/-/weights", json={"canary_weight": 50}).status_code == 200
    faulty = admin.post("/-/routing", json={"canary_share_factor": 0.2})
    assert faulty.status_code == 200, faulty.text
    assert faulty.json()["routing"] == {"canary_share_factor": 0.2}

    before = state(admin)["routed"]
    canary = sum(n for (version, _), n in served(admin, 400).items() if version == "v2")
    after = state(admin)
    assert after["canary_weight"] == 50  # the router still says 50 %
    assert after["routed"]["canary"] - before["canary"] == canary
    assert within_binomial_margin(canary, 400, 0.5 * 0.2), canary

    assert admin.delete("/-/routing").json()["routing"] == {"canary_share_factor": 1.0}
    canary = sum(n for (version, _), n in served(admin, 200).items() if version == "v2")
    assert within_binomial_margin(canary, 200, 0.5), canary


@pytest.mark.parametrize("path, body, named", [
    ("/-/incident", {"duration_s": 30}, "error_rate"),
    ("/-/incident", {"duration_s": 0, "error_rate": 0.1}, "duration_s"),
    ("/-/incident", {"duration_s": 30, "error_rate": 0.1, "versions": ["v2"]}, "versions"),
    ("/-/routing", {"canary_share_factor": -1}, "canary_share_factor"),
    ("/-/routing", {"canary_share_factor": "low"}, "canary_share_factor"),
    ("/-/routing", {"factor": 0.2}, "factor"),
])
def test_bad_fault_requests_are_refused_naming_the_field(admin, path, body, named):
    answer = admin.post(path, json=body)
    assert answer.status_code == 400 and named in answer.json()["error"]
    after = state(admin)
    assert after["incident"] is None and after["routing"] == {"canary_share_factor": 1.0}


def test_each_service_process_gets_its_own_stream_of_the_controllers_seed(admin):
    def seed_of(track: dict) -> int:
        argv = Path(f"/proc/{track['pid']}/cmdline").read_bytes().decode().split("\0")
        return int(argv[argv.index("--seed") + 1])

    deployed = deploy_ready(admin, "v2")
    stable_seed, canary_seed = seed_of(deployed["stable"]), seed_of(deployed["canary"])
    assert stable_seed == derive_seed(SEED, "service", 1, "v1")  # the first process the controller started
    assert canary_seed != stable_seed
