"""Release decisions as Prefect events on the PostgreSQL-backed server, and the example automation
firing on a real rollback: the server itself POSTs the notification to a loopback receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from canaryflow import events
from tests.conftest import on_postgresql
from tests.e2e.conftest import FAST_SPEC, cli_env, prefect_cli

# The first test of a session also waits for the PostgreSQL-backed server: initdb and Prefect's
# migrations on PostgreSQL take 1-3 min on a busy 2-core machine, inside that test's timeout.
# One PostgreSQL cluster and one Prefect server on it for the suite: every module on it runs on one worker.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480), pytest.mark.xdist_group("postgresql")]
prefect_server = on_postgresql()  # these runs go to the PostgreSQL-backed server, as in production


@pytest.fixture
def notifications() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback channel: every JSON body POSTed to it, in order."""
    received: list[dict[str, Any]] = []

    class Channel(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Channel)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/notify", received
    finally:
        server.shutdown()
        server.server_close()


def release_events(api_url: str, flow_run_id: str) -> list[dict[str, Any]]:
    """The canaryflow events the server recorded for one flow run, oldest first."""
    body = {"filter": {"event": {"prefix": ["canaryflow.release."]},
                       "related": {"id": [f"prefect.flow-run.{flow_run_id}"]},
                       "occurred": {"since": "2020-01-01T00:00:00Z"}, "order": "ASC"}, "limit": 50}
    answer = httpx.post(f"{api_url}/events/filter", json=body, timeout=10)
    answer.raise_for_status()
    return answer.json()["events"]


def wait_for(condition, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"no {what} within {timeout:.0f} s")


def test_a_rolled_back_release_emits_its_decisions_and_fires_the_automation(
        prefect_server, deployments, stack, notifications):
    from prefect.deployments import run_deployment

    from canaryflow.automations import install

    url, received = notifications
    install(url, allow_private_urls=True)  # the example file, as `canaryflow automation install` does
    flow_run = run_deployment("canary-release/production", parameters={"spec": {**FAST_SPEC, "version": "v3-errors"}},
                              timeout=0)
    done = prefect_cli("flow-run", "execute", str(flow_run.id), env=cli_env(prefect_server), timeout=180)
    assert done.returncode != 0 or "rolled back" in done.stdout + done.stderr, done.stderr[-2000:]

    [notification] = wait_for(lambda: list(received), 90, "notification from the automation")
    assert notification["service"] == "checkout" and notification["version"] == "v3-errors"
    assert notification["environment"] == "production" and notification["reason"] == "high_error_rate"
    assert "checkout v3-errors rolled back in production: high_error_rate" in notification["text"]

    # The automation fires on the event as it arrives; the events API lists it once it is stored, a
    # little later: wait for the whole sequence, up to the rollback, not for the first events stored.
    def up_to_the_rollback() -> list[dict[str, Any]] | None:
        seen = release_events(prefect_server.api_url, str(flow_run.id))
        return seen if seen and seen[-1]["event"] == events.ROLLED_BACK else None

    recorded = wait_for(up_to_the_rollback, 30, "recorded events up to the rollback")
    names = [e["event"] for e in recorded]
    assert names[0] == events.STARTED and events.STEP_ADVANCED in names and names[-1] == events.ROLLED_BACK
    assert events.PROMOTED not in names
    rolled_back = recorded[-1]
    assert rolled_back["resource"]["prefect.resource.id"] == "canaryflow.release.checkout"
    assert notification["event_id"] == rolled_back["id"]
    assert {r["prefect.resource.role"] for r in rolled_back["related"]} >= {"service", "version", "environment",
                                                                           "flow-run"}
    evidence = {m["metric"]: m for m in rolled_back["payload"]["evidence"]}
    assert evidence["error_rate"]["verdict"] == "FAIL" and evidence["error_rate"]["requests"] > 0
    assert evidence["error_rate"]["value"] > evidence["error_rate"]["baseline"]
