"""The shape of every release event, without a server: names, resource, related resources, payload."""

from __future__ import annotations

import pytest

from canaryflow import events
from canaryflow.spec import validate_spec

SPEC = validate_spec({"service": "checkout", "version": "v3-errors", "environment": "production"})


@pytest.mark.parametrize("name", events.RELEASE_EVENTS)
def test_every_event_is_on_the_service_release_resource_and_valid_for_prefect(name):
    from prefect.events.schemas.events import Event

    kwargs = events.release_event(name, SPEC, weight=10)
    event = Event(**kwargs)  # Prefect's own schema accepts it (resource ids, roles, string labels)
    assert event.event == name and name.startswith("canaryflow.release.")
    assert event.resource.id == "canaryflow.release.checkout"
    assert event.resource["canaryflow.version"] == "v3-errors"
    assert event.resource["canaryflow.environment"] == "production"
    assert {(r.role, r.id) for r in event.related} == {
        ("service", "canaryflow.service.checkout"), ("version", "canaryflow.version.checkout.v3-errors"),
        ("environment", "canaryflow.environment.production")}
    assert event.payload == {"service": "checkout", "version": "v3-errors", "environment": "production", "weight": 10}


def test_event_names_are_distinct_and_an_unknown_one_is_refused_naming_the_known_ones():
    assert len(set(events.RELEASE_EVENTS)) == 7
    with pytest.raises(ValueError, match="canaryflow.release.rolled-back"):
        events.release_event("canaryflow.release.rolledback", SPEC)


def measurement(step, elapsed, metric, value):
    return {"step": step, "elapsed_s": elapsed, "metric": metric, "value": value, "threshold": 0.001,
            "unit": "ratio", "verdict": "FAIL", "requests": 120, "baseline": 0.0005, "baseline_requests": 900,
            "evidence": 150.0, "evidence_threshold": 200.0, "weight": 10, "detail": "long text", "bounds": [0, 1]}


def test_evidence_is_the_last_round_of_measurements_with_their_numbers():
    summary = {"measurements": [measurement(0, 1.0, "error_rate", 0.01), measurement(0, 1.0, "p95_latency", 0.1),
                                measurement(0, 2.0, "error_rate", 0.05), measurement(0, 2.0, "p95_latency", 0.2)]}
    evidence = events.latest_evidence(summary)
    assert [(m["metric"], m["value"]) for m in evidence] == [("error_rate", 0.05), ("p95_latency", 0.2)]
    assert set(evidence[0]) == set(events.EVIDENCE_FIELDS)  # the numbers, not the prose or the bounds
    assert evidence[0]["requests"] == 120 and evidence[0]["baseline"] == 0.0005


def test_no_analysis_yet_means_no_evidence():
    assert events.latest_evidence({"measurements": []}) == []
    assert events.latest_evidence({}) == []


def test_emitting_never_fails_a_release(monkeypatch):
    import prefect.events
    from prefect.settings import PREFECT_API_URL, temporary_settings

    def broken(**_: object) -> None:
        raise RuntimeError("events client down")

    monkeypatch.setattr(prefect.events, "emit_event", broken)
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        events.emit_release_event(events.STARTED, SPEC)  # logged, not raised: monitoring never fails a release


def test_without_a_configured_server_nothing_is_emitted(monkeypatch):
    import prefect.events
    from prefect.settings import PREFECT_API_URL, temporary_settings

    sent: list[dict] = []
    monkeypatch.setattr(prefect.events, "emit_event", lambda **kwargs: sent.append(kwargs))
    with temporary_settings(updates={PREFECT_API_URL: None}):
        events.emit_release_event(events.STARTED, SPEC)
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        events.emit_release_event(events.PROMOTED, SPEC)
    assert [kwargs["event"] for kwargs in sent] == [events.PROMOTED]
