"""The Grafana client against the Grafana API emulator, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from canaryflow.errors import CanaryflowError
from canaryflow.grafana import (
    GrafanaAuthError,
    GrafanaClient,
    GrafanaConflict,
    GrafanaError,
    GrafanaNotFound,
    GrafanaUnavailable,
)
from tests.emulators.grafana import GrafanaEmulator


@pytest.fixture
def grafana():
    with GrafanaEmulator() as emulator:
        yield emulator


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(grafana, sleeps):
    with GrafanaClient(grafana.url, token=SecretStr(grafana.token), timeout=5, backoff=0.01,
                       sleep=sleeps.append) as c:
        yield c


def test_health_needs_no_token(grafana):
    with GrafanaClient(grafana.url, token=None) as anonymous:
        assert anonymous.health()["database"] == "ok"


def test_save_read_and_version_history(client, grafana):
    created = client.upsert_dashboard({"uid": "deploys", "title": "Deploys"}, message="first save")
    assert created["status"] == "success" and created["version"] == 1 and created["uid"] == "deploys"
    live = client.get_dashboard("deploys")
    assert live.version == 1 and live.model["title"] == "Deploys" and live.model["id"] == created["id"]
    updated = client.upsert_dashboard({**live.model, "title": "Deploys v2"}, message="second save")
    assert updated["version"] == 2
    history = client.versions("deploys")
    assert [(v.version, v.message) for v in history] == [(2, "second save"), (1, "first save")]
    assert history[0].parent_version == 1


def test_unknown_dashboard_is_not_found(client):
    with pytest.raises(GrafanaNotFound) as caught:
        client.get_dashboard("nope")
    assert caught.value.status == 404 and caught.value.operation == "get_dashboard"
    assert isinstance(caught.value, GrafanaError) and isinstance(caught.value, CanaryflowError)


def test_a_stale_save_rereads_the_version_and_retries_once(client, grafana):
    client.upsert_dashboard({"uid": "d", "title": "mine"}, message="v1")
    stale = client.get_dashboard("d").model
    client.upsert_dashboard({**stale, "title": "someone else"}, message="v2 by someone else")
    saved = client.upsert_dashboard({**stale, "title": "mine again"}, message="v3")
    assert saved["version"] == 3
    assert grafana.dashboard("d")["title"] == "mine again"
    statuses = [status for method, path, status in grafana.requests if path == "/api/dashboards/db"]
    assert statuses == [200, 200, 412, 200]


def test_a_second_mismatch_is_a_conflict(client, grafana):
    client.upsert_dashboard({"uid": "d", "title": "t"}, message="v1")

    class Racing(GrafanaClient):  # someone saves again between our re-read and our retry
        def get_dashboard(self, uid, **kwargs):
            found = super().get_dashboard(uid, **kwargs)
            GrafanaClient.upsert_dashboard(self, {**found.model, "title": "race"}, message="race")
            return found

    with Racing(grafana.url, token=grafana.token) as racing:
        with pytest.raises(GrafanaConflict) as caught:
            racing.upsert_dashboard({"uid": "d", "title": "t", "version": 0}, message="mine")
    assert caught.value.status == 412 and "version-mismatch" in str(caught.value)


def test_overwrite_ignores_the_version(client, grafana):
    client.upsert_dashboard({"uid": "d", "title": "t"}, message="v1")
    client.upsert_dashboard({"uid": "d", "title": "t", "version": 1}, message="v2")
    assert client.upsert_dashboard({"uid": "d", "title": "forced"}, message="v3", overwrite=True)["version"] == 3


def test_restore_makes_a_new_version_with_the_old_content(client, grafana):
    client.upsert_dashboard({"uid": "d", "title": "original", "panels": [{"id": 1}]}, message="v1")
    client.upsert_dashboard({"uid": "d", "title": "changed", "version": 1}, message="v2")
    restored = client.restore("d", 1)
    assert restored["version"] == 3
    live = client.get_dashboard("d")
    assert live.version == 3 and live.model["title"] == "original" and live.model["panels"] == [{"id": 1}]
    newest = client.versions("d")[0]
    assert (newest.version, newest.message, newest.restored_from) == (3, "Restored from version 1", 1)
    with pytest.raises(GrafanaNotFound):
        client.restore("d", 42)


@pytest.mark.parametrize("shape", ["object", "list"])
def test_versions_accepts_both_answer_shapes(client, grafana, shape):
    """Grafana ≤ 11.5 answers a list; 11.6+/12 an object with ``versions`` and ``continueToken``."""
    grafana.versions_shape = shape
    client.upsert_dashboard({"uid": "d", "title": "t"}, message="m1")
    for n in (1, 2):
        client.upsert_dashboard({"uid": "d", "title": "t", "version": n}, message=f"m{n + 1}")
    assert [v.version for v in client.versions("d")] == [3, 2, 1]
    assert [v.version for v in client.versions("d", limit=2)] == [3, 2]


def test_versions_follows_the_continue_token(client, grafana):
    grafana.page_size = 2
    client.upsert_dashboard({"uid": "d", "title": "t"}, message="m1")
    for n in range(1, 5):
        client.upsert_dashboard({"uid": "d", "title": "t", "version": n}, message=f"m{n + 1}")
    assert [v.version for v in client.versions("d")] == [5, 4, 3, 2, 1]
    pages = [p for m, p, s in grafana.requests if p.endswith("/versions")]
    assert len(pages) == 3


def test_annotations_are_found_by_dashboard_and_all_tags(client, grafana):
    client.upsert_dashboard({"uid": "d", "title": "t"}, message="m")
    first = client.annotate(dashboard_uid="d", text="release started", tags=["canaryflow", "release"],
                            time_ms=1_000)
    second = client.annotate(dashboard_uid="d", text="rolled back", tags=["canaryflow", "rollback"],
                             time_ms=2_000, time_end_ms=3_000)
    client.annotate(dashboard_uid=None, text="elsewhere", tags=["canaryflow", "rollback"])
    assert first != second
    found = client.find_annotations(dashboard_uid="d", tags=["canaryflow", "rollback"])
    assert [(a["id"], a["text"], a["time"], a["timeEnd"]) for a in found] == [(second, "rolled back", 2_000, 3_000)]
    assert len(client.find_annotations(tags=["canaryflow"])) == 3
    assert len(client.find_annotations(dashboard_uid="d", tags=["canaryflow"], limit=1)) == 1


def test_server_errors_are_retried_with_backoff_then_succeed(client, grafana, sleeps):
    grafana.fail_next(2, status=503)
    assert client.upsert_dashboard({"uid": "d", "title": "t"}, message="m")["version"] == 1
    assert sleeps == [0.01, 0.02]
    assert len(grafana.history("d")) == 1  # faults hit before any state change: one save only


def test_retries_are_bounded_then_unavailable(client, grafana, sleeps):
    grafana.fail_all(500)
    with pytest.raises(GrafanaUnavailable) as caught:
        client.annotate(dashboard_uid=None, text="x", tags=[])
    assert caught.value.operation == "annotate" and caught.value.status == 500
    assert "after 4 attempt(s): HTTP 500" in str(caught.value)
    assert len(grafana.requests) == 4 and len(sleeps) == 3
    assert grafana.annotations == []
    grafana.requests.clear()
    with pytest.raises(GrafanaUnavailable):
        client.health(retries=0)
    assert len(grafana.requests) == 1


def test_a_slow_grafana_times_out_and_is_unavailable(grafana):
    grafana.delay = 1.0
    with GrafanaClient(grafana.url, token=grafana.token, timeout=0.2, retries=1, backoff=0) as slow:
        with pytest.raises(GrafanaUnavailable) as caught:
            slow.get_dashboard("d")
    assert "timed out" in str(caught.value) and caught.value.status is None


def test_nothing_listening_is_unavailable():
    with GrafanaClient("http://127.0.0.1:9", token="t", retries=1, backoff=0) as nowhere:
        with pytest.raises(GrafanaUnavailable) as caught:
            nowhere.health()
    assert "cannot connect" in str(caught.value)


def test_a_bad_token_is_a_clear_401_without_retries(grafana, caplog):
    secret = "glsa_this_token_is_wrong_987654321"
    caplog.set_level(logging.DEBUG)
    with GrafanaClient(grafana.url, token=secret, backoff=0) as bad:
        with pytest.raises(GrafanaAuthError) as caught:
            bad.upsert_dashboard({"uid": "d", "title": "t"}, message="m")
    error = caught.value
    assert error.status == 401 and error.operation == "upsert_dashboard"
    assert "rejected the service-account token for upsert_dashboard" in str(error)
    assert len(grafana.requests) == 1
    assert grafana.authorizations == [f"Bearer {secret}"]  # it was sent, and only in the header
    assert_secret_absent(secret, error, bad, caplog)


def test_a_viewer_token_may_read_but_not_write(grafana, caplog):
    caplog.set_level(logging.DEBUG)
    with GrafanaClient(grafana.url, token=grafana.token) as editor:
        editor.upsert_dashboard({"uid": "d", "title": "t"}, message="m")
    with GrafanaClient(grafana.url, token=grafana.viewer_token) as viewer:
        assert viewer.get_dashboard("d").version == 1
        for write in (lambda: viewer.annotate(dashboard_uid="d", text="x", tags=[]),
                      lambda: viewer.restore("d", 1)):
            with pytest.raises(GrafanaAuthError) as caught:
                write()
            assert caught.value.status == 403
            assert "lacks permission for" in str(caught.value)
            assert_secret_absent(grafana.viewer_token, caught.value, viewer, caplog)


def test_a_missing_token_is_401(grafana):
    with GrafanaClient(grafana.url, token=None) as anonymous:
        with pytest.raises(GrafanaAuthError, match="HTTP 401"):
            anonymous.find_annotations()


def test_the_token_is_not_in_repr_or_messages(grafana, caplog):
    caplog.set_level(logging.DEBUG)
    grafana.fail_next(2)
    with GrafanaClient(f"http://user:pw@127.0.0.1:{grafana.port}", token=grafana.token, backoff=0) as c:
        assert c.health()["database"] == "ok"
        assert "pw" not in repr(c) and "**********" in repr(c)
        assert_secret_absent(grafana.token, None, c, caplog)
        assert_secret_absent("user:pw", None, c, caplog)


def assert_secret_absent(secret: str, error: BaseException | None, client: GrafanaClient, caplog) -> None:
    texts = [repr(client), str(client)]
    if error is not None:
        texts += [str(error), repr(error), repr(error.args)]
    texts += [r.getMessage() for r in caplog.records] + [repr(r.args) for r in caplog.records]
    assert not [t for t in texts if secret in t]
