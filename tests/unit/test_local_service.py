"""The demo service: random errors and latency per request, incidents put in force from outside,
and a version with ``crash_after_s`` that serves normally, then really dies with CRASH_EXIT_CODE."""

from __future__ import annotations

import asyncio
import random
import threading

import httpx
import pytest

from canaryflow.local import procs
from canaryflow.local.catalog import VersionSpec
from canaryflow.local.incidents import ServiceIncident
from canaryflow.local.service import CRASH_EXIT_CODE, VersionBehaviour, create_app, schedule_crash
from tests.unit.local_support import FakeClock, within_binomial_margin


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


# -- random errors, the slow tail and incidents ------------------------------------------------------

DRAWS = 20_000


def behaviour(seed: int, clock=None, **spec) -> VersionBehaviour:
    return VersionBehaviour(VersionSpec(**spec), rng=random.Random(seed),
                            incident=ServiceIncident(clock or FakeClock()))


def test_error_fraction_matches_the_rate_within_a_binomial_margin():
    draws = behaviour(1, error_rate=0.005)
    errors = sum(1 for _ in range(DRAWS) if draws.failure() == 500)
    assert within_binomial_margin(errors, DRAWS, 0.005), errors


def test_errors_come_in_runs_and_gaps_not_evenly_spaced():
    """At 5 % an even spacing fails exactly every 20th request and never two in a row; independent
    draws put two errors in a row about once in 400 requests and leave gaps of every length."""
    draws = behaviour(2, error_rate=0.05)
    failed = [draws.failure() == 500 for _ in range(DRAWS)]
    in_a_row = sum(1 for a, b in zip(failed, failed[1:], strict=False) if a and b)
    assert in_a_row > 0
    assert within_binomial_margin(in_a_row, DRAWS - 1, 0.05 ** 2), in_a_row
    at = [i for i, f in enumerate(failed) if f]
    gaps = [b - a for a, b in zip(at, at[1:], strict=False)]
    assert max(gaps) > 60 and len(set(gaps)) > 20


def test_same_seed_same_failures():
    def failures(seed: int) -> list:
        draws = behaviour(seed, error_rate=0.2)
        return [draws.failure() for _ in range(300)]

    assert failures(7) == failures(7) and failures(7) != failures(8)


def test_an_incident_raises_the_error_rate_for_its_duration_then_ends():
    clock = FakeClock()
    draws = behaviour(3, clock, error_rate=0.05)
    draws.incident.apply(duration_s=30, error_rate=0.2)
    during = [draws.failure() for _ in range(DRAWS)]
    failed = DRAWS - during.count(None)
    combined = 1 - (1 - 0.05) * (1 - 0.2)  # independent causes: at least the incident's rate
    assert within_binomial_margin(failed, DRAWS, combined), failed
    assert within_binomial_margin(during.count(503), DRAWS, 0.95 * 0.2)
    clock.now += 30
    after = [draws.failure() for _ in range(DRAWS)]
    assert 503 not in after
    assert within_binomial_margin(after.count(500), DRAWS, 0.05)


def test_slow_tail_adds_its_latency_to_its_fraction_of_requests():
    draws = behaviour(4, latency_ms={"p50": 20, "p95": 45}, slow={"fraction": 0.05, "extra_ms": 300})
    samples = sorted(draws.latency_s() * 1000 for _ in range(DRAWS))
    slow = sum(1 for ms in samples if ms > 300)
    assert within_binomial_margin(slow, DRAWS, 0.05), slow
    assert samples[DRAWS // 2] == pytest.approx(20, rel=0.1)  # the median stays where v1's is


def test_no_latency_model_means_no_delay():
    assert behaviour(5).latency_s() == 0.0


# -- the service's incident endpoint -----------------------------------------------------------------

class InProcessService:
    """One service app over ASGI, answering like an ``httpx.Client`` (``get``, ``put``, ``delete``)."""

    def __init__(self, app) -> None:
        self.transport = httpx.ASGITransport(app=app)

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        async def send() -> httpx.Response:
            async with httpx.AsyncClient(transport=self.transport, base_url="http://service") as client:
                return await client.request(method, path, **kwargs)
        return asyncio.run(send())

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)

    def put(self, path: str, **kwargs) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str) -> httpx.Response:
        return self.request("DELETE", path)


@pytest.fixture
def service():
    clock = FakeClock()
    app = create_app(VersionSpec(), version="v9", service="shop", rng=random.Random(6), clock=clock)
    return InProcessService(app), clock


def test_incident_endpoint_puts_an_incident_in_force_until_it_runs_out(service):
    client, clock = service
    assert client.get("/-/incident").json() == {"incident": None, "version": "v9"}
    assert {client.get("/api/orders").status_code for _ in range(50)} == {200}
    answer = client.put("/-/incident", json={"duration_s": 10, "error_rate": 1.0})
    assert answer.status_code == 200
    assert answer.json()["incident"] == {"error_rate": 1.0, "remaining_s": 10.0}
    failed = client.get("/api/orders")
    assert failed.status_code == 503 and failed.json()["error"] == "incident"
    clock.now += 10
    assert client.get("/-/incident").json()["incident"] is None
    assert {client.get("/api/orders").status_code for _ in range(50)} == {200}


def test_incident_endpoint_delete_ends_it(service):
    client, _ = service
    client.put("/-/incident", json={"duration_s": 60, "error_rate": 1.0})
    assert client.delete("/-/incident").json()["incident"] is None
    assert {client.get("/api/orders").status_code for _ in range(50)} == {200}


def test_incident_endpoint_is_not_counted_as_user_traffic(service):
    client, _ = service
    client.put("/-/incident", json={"duration_s": 60, "error_rate": 0.5})
    client.get("/-/incident")
    client.delete("/-/incident")
    client.get("/api/orders")
    counted = [line for line in client.get("/metrics").text.splitlines()
               if line.startswith("http_requests_total{") and not line.endswith(" 0.0")]
    assert counted == ['http_requests_total{code="200",path="/api/orders",version="v9"} 1.0']


@pytest.mark.parametrize("body, field", [
    ({"duration_s": 0, "error_rate": 0.1}, "duration_s"),
    ({"duration_s": "5", "error_rate": 0.1}, "duration_s"),
    ({"error_rate": 0.1}, "duration_s"),
    ({"duration_s": 5, "error_rate": 1.5}, "error_rate"),
    ({"duration_s": 5, "error_rate": True}, "error_rate"),
    ({"duration_s": 5, "error_rate": 0.1, "rate": 1}, "rate"),
    ([1, 2], "JSON object"),
])
def test_incident_endpoint_refuses_a_bad_body_naming_the_field(service, body, field):
    client, _ = service
    answer = client.put("/-/incident", json=body)
    assert answer.status_code == 400 and field in answer.json()["error"]
    assert client.get("/-/incident").json()["incident"] is None
