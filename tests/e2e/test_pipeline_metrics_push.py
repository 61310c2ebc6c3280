"""Pipeline metrics through a real Pushgateway and over the process-wide metrics HTTP server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from canaryflow.local import procs
from canaryflow.local.stack import find_binary
from canaryflow.pipeline_metrics import JOB, PipelineMetrics, fetch_group, metrics_for

pytestmark = pytest.mark.e2e

#: One port for the whole module: ``metrics_for(metrics_port=...)`` starts its server once per process.
METRICS_PORT = procs.free_port()


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("pushgateway")
    port = procs.free_port()
    proc = procs.spawn([find_binary("prometheus-pushgateway", "pushgateway"),
                        f"--web.listen-address=127.0.0.1:{port}", f"--persistence.file={workdir / 'pg.data'}"],
                       log_path=workdir / "pushgateway.log")
    try:
        procs.wait_http(f"http://127.0.0.1:{port}/-/ready", 30, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        procs.stop(proc, timeout=5)


def one_release(pushgateway: str, service: str, *, duration: float, rolled_back: bool, now: float) -> PipelineMetrics:
    """What one flow run does with its metrics: a fresh registry, seeded, recorded, pushed."""
    m = metrics_for(service=service, environment="staging", pushgateway_url=pushgateway)
    m.release_started(now=now)
    m.query("canary_analysis", 0.2, "success")
    with m.track_task("deploy"):
        pass
    if rolled_back:
        m.release_finished(status="rolled_back", duration=duration, reason="high_error_rate")
    else:
        m.release_finished(status="success", duration=duration)
    assert m.push() is True
    return m


def group_value(pushgateway: str, service: str, family: str, field: str = "value", **labels: str) -> float:
    group = fetch_group(pushgateway, {"service": service, "environment": "staging"})
    for sample in group[family]["metrics"]:
        if all(sample["labels"].get(k) == v for k, v in labels.items()):
            return float(sample[field])
    raise AssertionError(f"no {family}{labels} in the Pushgateway group")


def test_three_runs_keep_counters_and_histograms_monotonic(pushgateway):
    service = "checkout-monotonic"
    seen: list[tuple[float, ...]] = []
    for run in range(3):
        m = one_release(pushgateway, service, duration=100.0 * (run + 1), rolled_back=run != 1,
                        now=50_000.0 + 600 * run)
        labels = {"environment": "staging"}
        local = (
            m.registry.get_sample_value("deployment_total", {**labels, "status": "rolled_back"}),
            m.registry.get_sample_value("deployment_total", {**labels, "status": "success"}),
            m.registry.get_sample_value("deployment_duration_seconds_count", labels),
            m.registry.get_sample_value("deployment_duration_seconds_sum", labels),
            m.registry.get_sample_value("prometheus_query_total", {"workflow": "canary_analysis", "result": "success"}),
            m.registry.get_sample_value("canaryflow_task_runs_total", {**labels, "task": "deploy",
                                                                       "outcome": "success"}),
        )
        seen.append(local)
    assert seen == [
        (1, 0, 1, 100, 1, 1),
        (1, 1, 2, 300, 2, 2),
        (2, 1, 3, 600, 3, 3),
    ]
    # And the Pushgateway holds the same values after the last push.
    assert group_value(pushgateway, service, "deployment_total", status="rolled_back") == 2
    assert group_value(pushgateway, service, "deployment_total", status="success") == 1
    assert group_value(pushgateway, service, "deployment_rollback_total", reason="high_error_rate") == 2
    assert group_value(pushgateway, service, "deployment_duration_seconds", "count") == 3
    assert group_value(pushgateway, service, "deployment_duration_seconds", "sum") == 600
    buckets = fetch_group(pushgateway, {"service": service, "environment": "staging"})[
        "deployment_duration_seconds"]["metrics"][0]["buckets"]
    assert {k: float(v) for k, v in buckets.items() if k in ("60", "120", "300", "600", "+Inf")} == {
        "60": 0, "120": 1, "300": 3, "600": 3, "+Inf": 3}
    # Frequency: three releases ten minutes apart, decayed with the 1 h time constant.
    step = 2.718281828459045 ** (-600 / 3600)
    assert group_value(pushgateway, service, "deployment_frequency") == pytest.approx((step + 1) * step + 1)


def test_groups_of_different_services_do_not_mix(pushgateway):
    one_release(pushgateway, "checkout-a", duration=70, rolled_back=False, now=1.0)
    one_release(pushgateway, "checkout-a", duration=70, rolled_back=False, now=2.0)
    b = one_release(pushgateway, "checkout-b", duration=70, rolled_back=False, now=3.0)
    assert b.registry.get_sample_value("deployment_total", {"environment": "staging", "status": "success"}) == 1
    assert group_value(pushgateway, "checkout-a", "deployment_total", status="success") == 2
    body = httpx.get(f"{pushgateway}/api/v1/metrics", timeout=5).json()
    groups = {(g["labels"].get("job"), g["labels"].get("service")) for g in body["data"]}
    assert {(JOB, "checkout-a"), (JOB, "checkout-b")} <= groups


def test_unreachable_pushgateway_never_raises(caplog):
    dead = f"http://127.0.0.1:{procs.free_port()}"
    m = metrics_for(service="checkout-offline", environment="staging", pushgateway_url=dead)  # seeding fails
    assert "could not read pipeline metrics" in caplog.text
    m.release_started(now=1.0)
    assert m.push() is False
    with m.track_task("deploy"):  # pushes too, and must not fail the task
        pass
    assert m.registry.get_sample_value("canaryflow_task_runs_total",
                                       {"environment": "staging", "task": "deploy", "outcome": "success"}) == 1
    assert "pushing pipeline metrics failed" in caplog.text


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_port_serves_every_service_with_a_service_label(pushgateway):
    a = metrics_for(service="served-a", environment="production", metrics_port=METRICS_PORT)
    b = metrics_for(service="served-b", environment="production", metrics_port=METRICS_PORT)
    assert metrics_for(service="served-a", environment="production", metrics_port=METRICS_PORT) is a
    a.release_finished(status="success", duration=90)
    a.release_finished(status="success", duration=90)
    b.release_finished(status="rolled_back", duration=400, reason="high_latency")
    a.traffic(50)
    samples = scrape(METRICS_PORT)
    key = lambda name, **labels: (name, frozenset(labels.items()))  # noqa: E731
    assert samples[key("deployment_total", environment="production", status="success", service="served-a")] == 2
    assert samples[key("deployment_total", environment="production", status="rolled_back", service="served-b")] == 1
    assert samples[key("deployment_rollback_total", environment="production", reason="high_latency",
                       service="served-b")] == 1
    assert samples[key("deployment_duration_seconds_bucket", environment="production", le="120.0",
                       service="served-a")] == 2
    assert samples[key("canary_traffic_percentage", environment="production", deployment_id="served-a",
                       service="served-a")] == 50
    assert all(dict(labels).get("service") in {"served-a", "served-b"} for _, labels in samples)


def test_metrics_port_values_stay_in_memory_across_runs():
    first = metrics_for(service="served-c", environment="staging", metrics_port=METRICS_PORT)
    first.release_finished(status="success", duration=61)
    second = metrics_for(service="served-c", environment="staging", metrics_port=METRICS_PORT)
    second.release_finished(status="success", duration=61)
    samples = scrape(METRICS_PORT)
    assert samples[("deployment_total", frozenset({"environment": "staging", "status": "success",
                                                   "service": "served-c"}.items()))] == 2
