"""``GET /hooks/runs/{id}``: what a CI job that posted a delivery reads to gate on the release's outcome,
over ASGI with an in-memory starter whose runs the tests end as a worker would."""

from __future__ import annotations

import hashlib
import hmac
import uuid

from prefect.states import Completed, Crashed, Failed, Running

from canaryflow.waiting import WaitResult
from canaryflow.webhook.starter import InMemoryStarter, StarterUnavailable
from canaryflow.webhook.status import bearer, is_run_id, status_token, token_valid
from tests.unit.webhook.support import (
    ALL_SECRETS,
    GENERIC_SECRET,
    GITHUB_SECRET,
    body_of,
    github_deployment,
    github_headers,
)
from tests.unit.webhook.test_app import RELEASE, make, post_generic, run, send


def status(app, flow_run_id: str, token: str | None):
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    return run(send(app, "GET", f"/hooks/runs/{flow_run_id}", headers=headers))


def started(app) -> dict:
    answer = post_generic(app)
    assert answer.status_code == 202, answer.text
    return answer.json()


def test_a_started_run_answers_with_where_and_how_to_read_its_outcome():
    app, starter = make()
    body = started(app)
    run_id = body["flow_run_id"]
    assert body["status_url"] == f"/hooks/runs/{run_id}"
    # The token is the HMAC of the run id under the secret that authenticated the delivery.
    expected = hmac.new(GENERIC_SECRET.encode(), b"canaryflow-run-status:" + run_id.encode(),
                        hashlib.sha256).hexdigest()
    assert body["status_token"] == expected
    assert GENERIC_SECRET not in str(body)


def test_while_the_run_goes_on_it_is_not_ended_and_says_when_to_ask_again():
    app, starter = make()
    body = started(app)
    answer = status(app, body["flow_run_id"], body["status_token"])
    assert answer.status_code == 200, answer.text
    seen = answer.json()
    assert (seen["state"], seen["ended"], seen["outcome"]) == ("Scheduled", False, "running")
    assert seen["exit_code"] == WaitResult.TIMEOUT == 3
    assert answer.headers["retry-after"] == "15" and answer.headers["cache-control"] == "no-store"

    starter.end(body["flow_run_id"], Running())
    assert status(app, body["flow_run_id"], body["status_token"]).json()["ended"] is False


def test_each_ending_has_the_exit_code_of_canaryflow_wait():
    endings = [
        (Completed(), "Completed", 0, "promoted"),
        (Failed(name="RolledBack", message="rolled back (high_error_rate): error_rate: canary 2.10 % (42/2,000)"),
         "RolledBack", 1, "rolled back"),
        (Failed(name="Refused", message="refused: Prometheus at http://127.0.0.1:9 is unreachable"),
         "Refused", 2, "refused"),
        (Crashed(message="worker lost"), "Crashed", 4, "crashed"),
    ]
    for state, name, code, outcome in endings:
        app, starter = make()
        body = started(app)
        starter.end(body["flow_run_id"], state)
        answer = status(app, body["flow_run_id"], body["status_token"])
        assert answer.status_code == 200, answer.text
        seen = answer.json()
        assert (seen["state"], seen["ended"], seen["exit_code"], seen["outcome"]) == (name, True, code, outcome)
        assert "retry-after" not in answer.headers
        assert seen["line"].startswith(f"{body['flow_run_name']} ({body['flow_run_id']}): ")
        assert seen["message"] == (state.message or "")
    # The numbers behind a rollback reach the job's log.
    assert "error_rate: canary 2.10 % (42/2,000)" in endings[1][0].message


def test_a_wrong_missing_or_other_runs_token_is_401_and_reveals_nothing():
    app, starter = make()
    first, second = started(app), post_generic(app, {**RELEASE, "version": "v3"}).json()
    assert first["flow_run_id"] != second["flow_run_id"]
    starter.end(first["flow_run_id"], Completed())
    refusals = [
        status(app, first["flow_run_id"], None),
        status(app, first["flow_run_id"], ""),
        status(app, first["flow_run_id"], "0" * 64),
        status(app, first["flow_run_id"], second["status_token"]),  # another run's token
        run(send(app, "GET", f"/hooks/runs/{first['flow_run_id']}",
                 headers={"authorization": f"Basic {first['status_token']}"})),
        # A run id that does not exist answers like a wrong token: ids are not probed without one.
        status(app, str(uuid.uuid4()), first["status_token"]),
    ]
    for answer in refusals:
        assert answer.status_code == 401, answer.text
        assert answer.json() == {"error": "status token invalid"}


def test_a_valid_token_for_a_run_the_orchestrator_does_not_know_is_404():
    app, _ = make()
    missing = str(uuid.uuid4())
    answer = status(app, missing, status_token(GENERIC_SECRET, missing))
    assert answer.status_code == 404 and answer.json() == {"error": "no such run"}


def test_a_run_id_that_is_not_a_uuid_is_refused_before_any_lookup():
    class Counting(InMemoryStarter):
        lookups = 0

        async def run_status(self, flow_run_id):
            Counting.lookups += 1
            return await super().run_status(flow_run_id)

    app, _ = make(Counting())
    for bad in ("not-a-run", "A" * 36, "../../etc"):
        assert status(app, bad, status_token(GENERIC_SECRET, bad)).status_code in (401, 404)
    assert Counting.lookups == 0


def test_the_orchestrator_down_is_503_with_retry_after():
    class Down(InMemoryStarter):
        async def run_status(self, flow_run_id):
            raise StarterUnavailable("Prefect API unreachable (ConnectError)")

    app, _ = make(Down())
    body = started(app)
    answer = status(app, body["flow_run_id"], body["status_token"])
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"


def test_a_github_delivery_gets_a_token_of_its_own_secret():
    app, starter = make()
    delivery = body_of(github_deployment())
    answer = run(send(app, "POST", "/hooks/github", content=delivery, headers=github_headers(delivery)))
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status_token"] == status_token(GITHUB_SECRET, body["flow_run_id"])
    starter.end(body["flow_run_id"], Completed())
    assert status(app, body["flow_run_id"], body["status_token"]).json()["exit_code"] == 0


def test_token_helpers():
    run_id = "0b0e3c7e-6a39-4f7a-9b1e-2f1f6f3d9a10"
    token = status_token(GENERIC_SECRET, run_id)
    assert token_valid(ALL_SECRETS, run_id, token)
    assert not token_valid([s for s in ALL_SECRETS if s != GENERIC_SECRET], run_id, token)
    assert not token_valid(ALL_SECRETS, run_id.replace("0b0e", "1b0e"), token)
    assert not token_valid([], run_id, token)
    assert status_token(GENERIC_SECRET, run_id) != status_token(GITHUB_SECRET, run_id)
    assert (bearer("Bearer abc"), bearer("bearer  abc "), bearer("Basic abc"), bearer(None), bearer("")) == (
        "abc", "abc", "", "", "")
    assert is_run_id(run_id) and not is_run_id(run_id.upper()) and not is_run_id(run_id + "0")
