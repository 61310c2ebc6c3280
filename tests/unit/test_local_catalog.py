"""Catalogue validation: typos and unknown versions must fail loudly."""

import random

import pytest

from canaryflow.local.catalog import (
    CatalogError,
    LatencySpec,
    UnknownVersionError,
    load_catalog,
    parse_catalog,
)


def test_default_catalog_has_expected_versions():
    catalog = load_catalog()
    assert catalog.service == "checkout"
    assert {"v1", "v2", "v3-errors", "v3-slow", "v3-smoke-broken",
            "v3-never-ready", "v3-crash", "v3-crash-later", "v3-small-regression",
            "v3-latency-regression", "v3-tail-latency", "v2-twin"} <= set(catalog.versions)
    assert catalog.incident is None  # incidents only when asked for
    assert catalog.version("v3-errors").error_rate == 0.05
    assert catalog.version("v3-crash").crash_on_start is True
    assert catalog.version("v3-crash").crash_after_s is None
    later = catalog.version("v3-crash-later")
    assert later.crash_after_s == 10 and later.crash_on_start is False
    assert catalog.version("v3-smoke-broken").faults["/api/health"].status == 503
    assert catalog.version("v3-never-ready").readiness_delay_s == 3600


def test_unknown_field_is_named():
    with pytest.raises(CatalogError, match="eror_rate"):
        parse_catalog({"versions": {"v9": {"eror_rate": 0.1}}})


def test_unknown_nested_field_is_named():
    with pytest.raises(CatalogError, match="p99"):
        parse_catalog({"versions": {"v9": {"latency_ms": {"p50": 1, "p95": 2, "p99": 3}}}})


@pytest.mark.parametrize("spec", [
    {"error_rate": 1.5},
    {"latency_ms": {"p50": 50, "p95": 10}},
    {"faults": {"api/x": {"status": 500}}},
    {"readiness_delay_s": -1},
    {"crash_after_s": 0},
    {"crash_after_s": -5},
    {"crash_on_start": True, "crash_after_s": 10},
])
def test_invalid_values_rejected(spec):
    with pytest.raises(CatalogError):
        parse_catalog({"versions": {"bad": spec}})


@pytest.mark.parametrize("slow, named", [
    ({"fraction": 0, "extra_ms": 300}, "versions.bad.slow.fraction"),
    ({"fraction": 1.5, "extra_ms": 300}, "versions.bad.slow.fraction"),
    ({"fraction": 0.05, "extra_ms": -1}, "versions.bad.slow.extra_ms"),
    ({"fraction": 0.05}, "versions.bad.slow.extra_ms"),
    ({"fraction": 0.05, "extra_ms": 300, "extra": 1}, "versions.bad.slow.extra"),
    ("often", "versions.bad.slow"),
])
def test_bad_slow_tail_is_named(slow, named):
    with pytest.raises(CatalogError, match=named.replace(".", r"\.")):
        parse_catalog({"versions": {"bad": {"slow": slow}}})


@pytest.mark.parametrize("incident, named", [
    ({"every_s": 0, "duration_s": 10, "error_rate": 0.05}, "incident.every_s"),
    ({"every_s": 300, "duration_s": -1, "error_rate": 0.05}, "incident.duration_s"),
    ({"every_s": 300, "duration_s": 10, "error_rate": 1.2}, "incident.error_rate"),
    ({"every_s": 300, "duration_s": 10}, "incident.error_rate"),
    ({"every_s": 300, "duration_s": 10, "error_rate": 0.05, "versions": ["v1"]}, "incident.versions"),
    ({"every_s": 60, "duration_s": 60, "error_rate": 0.05},
     "incident: .*duration_s .60. must be shorter than every_s .60."),
])
def test_bad_incident_is_named(incident, named):
    with pytest.raises(CatalogError, match=named):
        parse_catalog({"versions": {"v1": {}}, "incident": incident})


def test_incident_schedule_and_slow_tail_parsed():
    catalog = parse_catalog({"versions": {"v1": {"slow": {"fraction": 0.1, "extra_ms": 50}}},
                             "incident": {"every_s": 300, "duration_s": 120, "error_rate": 0.05}})
    assert catalog.incident.every_s == 300 and catalog.incident.duration_s == 120
    assert catalog.version("v1").slow.fraction == 0.1 and catalog.version("v1").slow.extra_ms == 50


def test_healthy_versions_carry_background_noise_and_the_twin_is_v1():
    catalog = load_catalog()
    assert catalog.version("v1").error_rate == catalog.version("v2").error_rate == 0.001
    assert catalog.version("v2-twin") == catalog.version("v1")
    assert catalog.version("v3-small-regression").error_rate == 0.005
    assert catalog.version("v3-small-regression").latency_ms == catalog.version("v1").latency_ms


def test_latency_regression_is_thirty_percent_slower_than_v1_at_every_quantile():
    catalog = load_catalog()
    v1, slower = catalog.version("v1"), catalog.version("v3-latency-regression")
    assert slower.error_rate == v1.error_rate
    rng = random.Random(12)
    base = sorted(v1.latency_ms.sample_seconds(rng) for _ in range(20000))
    regressed = sorted(slower.latency_ms.sample_seconds(rng) for _ in range(20000))
    for q in (0.1, 0.5, 0.9, 0.95, 0.99):
        assert regressed[int(q * 20000)] / base[int(q * 20000)] == pytest.approx(1.3, rel=0.06), q
    assert regressed[19000] * 1000 < 200  # inside production's p95 SLO


def test_tail_latency_is_v1_plus_a_slow_twentieth():
    catalog = load_catalog()
    tail, v1 = catalog.version("v3-tail-latency"), catalog.version("v1")
    assert tail.model_copy(update={"slow": None}) == v1
    assert (tail.slow.fraction, tail.slow.extra_ms) == (0.05, 300)


def test_unknown_version_lists_known_ones():
    catalog = parse_catalog({"versions": {"a": {}, "b": {}}})
    with pytest.raises(UnknownVersionError) as info:
        catalog.version("zzz")
    assert "zzz" in str(info.value) and "a, b" in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, KeyError)


def test_load_catalog_from_file(tmp_path):
    path = tmp_path / "cat.yaml"
    path.write_text("service: shop\nversions:\n  x: {error_rate: 0.5}\n")
    catalog = load_catalog(path)
    assert catalog.service == "shop" and catalog.version("x").error_rate == 0.5
    path.write_text("versions:\n  x: {bogus: 1}\n")
    with pytest.raises(CatalogError, match="bogus"):
        load_catalog(path)


def test_latency_fit_matches_quantiles():
    spec = LatencySpec(p50=20, p95=45)
    rng = random.Random(7)
    samples = sorted(spec.sample_seconds(rng) * 1000 for _ in range(20000))
    assert samples[10000] == pytest.approx(20, rel=0.05)
    assert samples[19000] == pytest.approx(45, rel=0.07)


def test_slow_version_breaches_latency_thresholds_but_not_smoke_checks():
    """v3-slow must fail analysis in staging (p95 > 500 ms) and production (> 200 ms), while the
    default smoke checks (1000 ms per request) practically never see a request that slow."""
    spec = load_catalog().version("v3-slow").latency_ms
    rng = random.Random(11)
    samples = sorted(spec.sample_seconds(rng) * 1000 for _ in range(20000))
    assert samples[19000] > 550  # p95, clear of the 500 ms staging threshold
    assert samples[10000] > 200  # even the median breaches production's 200 ms
    over_a_second = sum(1 for ms in samples if ms > 1000) / len(samples)
    assert over_a_second < 0.002  # the fitted model gives 0.068 %
