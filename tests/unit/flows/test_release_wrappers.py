"""The flow's Prefect-side helpers, called as the plain functions they are, without a server.

What Prefect would hand them is given instead: the run's runtime attributes (``prefect.runtime``'s
``flow_run`` and ``deployment``, replaced by the values a run would have, as Prefect's own docs
suggest for tests), the flow run a crash hook receives, and for the one API call (tagging the run)
a recording client in place of ``get_client``'s. The platform, settings and metric source the
helpers build are recorded too: their own clients are tested in their own modules.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import prefect.client.orchestration
import prefect.runtime
import pytest
from prefect.tasks import Task

import flows.release as release_flow
from canaryflow import events
from canaryflow.errors import ConfigError
from canaryflow.pipeline_metrics import PipelineMetrics
from canaryflow.settings import Settings
from canaryflow.spec import validate_spec
from tests.unit.flows.test_release_control_path import SPEC

RUN_ID = "7f1c2c8e-4a43-4b7e-9a8e-2b1f3e0c9d11"


def _flow_run(monkeypatch: pytest.MonkeyPatch, **attributes: Any) -> None:
    """``prefect.runtime.flow_run`` as inside a run with these attributes (the rest: a run's empty values)."""
    values = {"id": None, "tags": [], "parameters": {}, **attributes}
    monkeypatch.setattr(prefect.runtime, "flow_run", SimpleNamespace(**values))


def _deployment(monkeypatch: pytest.MonkeyPatch, name: str | None) -> None:
    monkeypatch.setattr(prefect.runtime, "deployment", SimpleNamespace(name=name))


# -- plain tasks -----------------------------------------------------------------------------------


def test_plain_tasks_are_the_bodies_of_the_prefect_tasks_and_the_plain_functions_as_they_are():
    plain = release_flow.plain_tasks()
    assert set(vars(plain)) == set(vars(release_flow.PREFECT_TASKS))
    for name, task in vars(release_flow.PREFECT_TASKS).items():
        body = getattr(plain, name)
        assert callable(body) and not isinstance(body, Task), name
        assert body is (task.fn if isinstance(task, Task) else task), name
    assert plain.preflight is release_flow.preflight.fn
    assert plain.show_weight is release_flow.show_weight  # a plain function already


# -- the run's name, id and tags -------------------------------------------------------------------


def test_the_run_is_named_after_the_release_it_was_started_with(monkeypatch):
    _flow_run(monkeypatch, parameters={"spec": dict(SPEC)})
    assert release_flow._run_name() == "release/checkout/v2/staging"
    assert release_flow.canary_release.flow_run_name is release_flow._run_name


def test_this_run_is_the_flow_runs_id_or_none_outside_a_run(monkeypatch):
    _flow_run(monkeypatch, id=UUID(RUN_ID))
    assert release_flow._this_run() == RUN_ID
    _flow_run(monkeypatch, id=None)
    assert release_flow._this_run() is None


def test_a_settled_release_is_remembered_by_its_run_id_for_the_crash_hook(monkeypatch):
    monkeypatch.setattr(release_flow, "SETTLED", set())
    _flow_run(monkeypatch, id=RUN_ID)
    release_flow._settle()
    assert release_flow.SETTLED == {RUN_ID}


class Client:
    """The Prefect client's one call here, recorded; ``refusal`` is what the API answers instead."""

    def __init__(self) -> None:
        self.opened: list[dict[str, Any]] = []
        self.updates: list[tuple[Any, dict[str, Any]]] = []
        self.refusal: Exception | None = None

    def __call__(self, **options: Any) -> Client:
        self.opened.append(options)
        return self

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update_flow_run(self, flow_run_id: Any, **fields: Any) -> None:
        self.updates.append((flow_run_id, fields))
        if self.refusal is not None:
            raise self.refusal


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Client:
    fake = Client()
    monkeypatch.setattr(prefect.client.orchestration, "get_client", fake)
    monkeypatch.setattr(release_flow, "get_run_logger", lambda: logging.getLogger("canary-release-test"))
    return fake


def test_the_run_is_tagged_with_the_release_keeping_its_other_tags(monkeypatch, client):
    _flow_run(monkeypatch, id=RUN_ID, tags=["team:payments", "env:old", "version:v1"])
    release_flow._tag_this_run(validate_spec({**SPEC, "environment": "production"}))
    assert client.opened == [{"sync_client": True}]
    assert client.updates == [(UUID(RUN_ID), {"tags": ["canaryflow", "environment:production", "release",
                                                        "service:checkout", "team:payments", "version:v2"]})]


def test_a_run_without_tags_gets_the_release_tags(monkeypatch, client):
    _flow_run(monkeypatch, id=RUN_ID, tags=None)
    release_flow._tag_this_run(validate_spec(SPEC))
    assert client.updates == [(UUID(RUN_ID), {"tags": ["canaryflow", "environment:staging", "release",
                                                        "service:checkout", "version:v2"]})]


def test_outside_a_run_nothing_is_tagged(monkeypatch, client):
    _flow_run(monkeypatch, id=None)
    release_flow._tag_this_run(validate_spec(SPEC))
    assert client.opened == [] and client.updates == []


def test_a_tag_the_api_refuses_is_logged_and_the_release_goes_on(monkeypatch, client, caplog):
    _flow_run(monkeypatch, id=RUN_ID, tags=[])
    client.refusal = RuntimeError("HTTP 503")
    with caplog.at_level(logging.WARNING, logger="canary-release-test"):
        release_flow._tag_this_run(validate_spec(SPEC))  # does not raise
    assert [r.getMessage() for r in caplog.records] == [
        "could not tag this run ['canaryflow', 'environment:staging', 'release', 'service:checkout', "
        "'version:v2']: HTTP 503"]


# -- the production deployment releases to production only ------------------------------------------


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any, dict[str, Any]]]:
    seen: list[tuple[str, Any, dict[str, Any]]] = []
    monkeypatch.setattr(release_flow, "emit_release_event", lambda event, spec, **payload: seen.append(
        (event, spec, payload)))
    return seen


def test_the_production_deployment_refuses_a_staging_release_and_says_so(monkeypatch, emitted):
    _deployment(monkeypatch, "production")
    spec = validate_spec(SPEC)
    with pytest.raises(ConfigError) as refused:
        release_flow._refuse_other_environment(spec)
    assert str(refused.value) == "deployment 'production' cannot release to staging"
    assert refused.value.fields == ("environment",)
    assert emitted == [(events.REFUSED, spec, {"reason": "wrong_environment", "deployment": "production"})]


@pytest.mark.parametrize("deployment", ["staging", "canary-release-adhoc", None])
def test_a_matching_or_unnamed_deployment_lets_the_release_start(monkeypatch, emitted, deployment):
    _deployment(monkeypatch, deployment)
    release_flow._refuse_other_environment(validate_spec(SPEC))
    assert emitted == []


# -- the crash and cancellation hook -----------------------------------------------------------------


class HookPlatform:
    def __init__(self, refusal: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.refusal = refusal

    def rollback(self) -> None:
        self.calls.append("rollback")
        if self.refusal is not None:
            raise self.refusal

    def close(self) -> None:
        self.calls.append("close")


def _hook_world(monkeypatch: pytest.MonkeyPatch, platform: HookPlatform) -> tuple[list[tuple[Any, ...]], Settings]:
    created: list[tuple[Any, ...]] = []
    settings = Settings(local_controller_url="http://controller.test:8080")

    def create(name: str, **options: Any) -> HookPlatform:
        created.append((name, options))
        return platform

    monkeypatch.setattr(release_flow, "create_platform", create)
    monkeypatch.setattr(release_flow, "get_settings", lambda: settings)
    monkeypatch.setattr(release_flow, "SETTLED", set())
    return created, settings


def _crashed_run(spec: dict[str, Any]) -> SimpleNamespace:
    return SimpleNamespace(id=UUID(RUN_ID), parameters={"spec": spec})


def test_a_crash_puts_all_traffic_back_on_stable_on_the_runs_platform(monkeypatch):
    platform = HookPlatform()
    created, settings = _hook_world(monkeypatch, platform)
    release_flow._restore_stable(release_flow.canary_release, _crashed_run(dict(SPEC)), None)
    assert platform.calls == ["rollback", "close"]
    [(name, options)] = created
    assert name == "local"
    assert options == {"settings": settings, "service": "checkout", "spec": validate_spec(SPEC)}
    assert release_flow.canary_release.on_crashed_hooks == [release_flow._restore_stable]
    assert release_flow.canary_release.on_cancellation_hooks == [release_flow._restore_stable]


def test_the_platform_is_closed_even_when_the_hooks_rollback_fails(monkeypatch):
    platform = HookPlatform(refusal=OSError("controller unreachable"))
    _hook_world(monkeypatch, platform)
    with pytest.raises(OSError):
        release_flow._restore_stable(release_flow.canary_release, _crashed_run(dict(SPEC)), None)
    assert platform.calls == ["rollback", "close"]


def test_a_settled_release_is_left_alone_by_the_hook(monkeypatch):
    platform = HookPlatform()
    created, _ = _hook_world(monkeypatch, platform)
    release_flow.SETTLED.add(RUN_ID)
    release_flow._restore_stable(release_flow.canary_release, _crashed_run(dict(SPEC)), None)
    assert created == [] and platform.calls == []


# -- open_release: what a release run is made of -----------------------------------------------------


class RecordedSource:
    def __init__(self, url: str, **options: Any) -> None:
        self.url, self.options = url, options


def _opening(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    made: dict[str, Any] = {}

    def metrics_for(**options: Any) -> PipelineMetrics:
        made["metrics"] = options
        return PipelineMetrics(service=options["service"], environment=options["environment"])

    def create(name: str, **options: Any) -> str:
        made["platform"] = (name, options)
        return "the platform"

    monkeypatch.setattr(release_flow, "metrics_for", metrics_for)
    monkeypatch.setattr(release_flow, "PrometheusSource", RecordedSource)
    monkeypatch.setattr(release_flow, "create_platform", create)
    return made


def test_a_release_run_is_wired_to_the_configured_prometheus_pushgateway_and_platform(monkeypatch):
    made = _opening(monkeypatch)
    spec = validate_spec({**SPEC, "environment": "production"})
    settings = Settings(prometheus_url="http://prometheus.test:9090", prometheus_timeout_seconds=2.5,
                        pushgateway_url="http://pushgateway.test:9091", metrics_port=9464)
    run = release_flow.open_release(spec, settings, attempt=3, retry_of="run-0")
    assert made["metrics"] == {"service": "checkout", "environment": "production",
                               "pushgateway_url": "http://pushgateway.test:9091", "metrics_port": 9464}
    assert made["platform"] == ("local", {"settings": settings, "service": "checkout", "spec": spec})
    assert (run.spec, run.platform, run.attempt, run.retry_of) == (spec, "the platform", 3, "run-0")
    assert isinstance(run.source, RecordedSource) and run.source.url == "http://prometheus.test:9090"
    assert run.source.options["timeout"] == 2.5
    assert (run.metrics.service, run.metrics.environment) == ("checkout", "production")


def test_every_prometheus_query_of_the_run_is_counted_as_canary_analysis(monkeypatch):
    _opening(monkeypatch)
    run = release_flow.open_release(validate_spec(SPEC), Settings())
    run.source.options["observer"](0.25, "error")
    sample = run.metrics.registry.get_sample_value
    assert sample("prometheus_query_total", {"workflow": "canary_analysis", "result": "error"}) == 1
    assert sample("prometheus_query_duration_seconds_sum", {"workflow": "canary_analysis"}) == 0.25


def test_a_first_attempt_is_attempt_one_and_a_retry_of_nothing(monkeypatch):
    _opening(monkeypatch)
    run = release_flow.open_release(validate_spec(SPEC), Settings())
    assert (run.attempt, run.retry_of) == (1, None)
