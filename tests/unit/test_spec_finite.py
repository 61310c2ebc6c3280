"""Every float field of the release spec refuses NaN and ±Infinity, naming the field.

JSON cannot carry them, but ``1e999`` parses to ``inf`` and pydantic's lax mode reads the strings
``"Infinity"`` and ``"NaN"`` as floats: ``step_wait_seconds: Infinity`` passed every ``ge=0`` and
left a release waiting forever. The fields are found by walking the models, so a float field added
later is covered without touching this test.
"""

from __future__ import annotations

import types
import typing

import pytest
from pydantic import BaseModel

from canaryflow.errors import ConfigError
from canaryflow.spec import ReleaseSpec, validate_spec

BASE = {"service": "checkout", "version": "v2"}
NON_FINITE = [float("1e999"), float("-1e999"), float("nan"), "Infinity", "-Infinity", "NaN", "inf", "1e999"]


def _members(annotation: object) -> tuple[object, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def float_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Dotted paths of the float fields of ``model`` and of the models nested in it (not in lists)."""
    found = []
    for name, field in model.model_fields.items():
        for member in _members(field.annotation):
            if member is float:
                found.append((*prefix, name))
            elif isinstance(member, type) and issubclass(member, BaseModel):
                found.extend(float_fields(member, (*prefix, name)))
    return found


def with_value(path: tuple[str, ...], value: object) -> dict:
    spec: dict = dict(BASE)
    section = spec
    for key in path[:-1]:
        section = section.setdefault(key, {})
    section[path[-1]] = value
    return spec


FIELDS = float_fields(ReleaseSpec)


def test_the_walk_finds_the_float_fields():
    assert {("step_wait_seconds",), ("thresholds", "max_p95_latency_ms"), ("retry", "backoff_seconds"),
            ("traffic_lease_seconds",)} <= set(FIELDS)


@pytest.mark.parametrize("path", FIELDS, ids=".".join)
@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
def test_non_finite_numbers_are_refused_naming_the_field(path, value):
    with pytest.raises(ConfigError) as info:
        validate_spec(with_value(path, value))
    assert ".".join(path) in info.value.fields
    assert "finite" in str(info.value)


@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
def test_a_smoke_check_latency_budget_is_finite(value):
    with pytest.raises(ConfigError) as info:
        validate_spec({**BASE, "smoke": [{"path": "/healthz", "max_latency_ms": value}]})
    assert info.value.fields == ("smoke.0.max_latency_ms",)


def test_large_finite_numbers_still_validate():
    spec = validate_spec({**BASE, "step_wait_seconds": 1e308, "thresholds": {"max_p95_latency_ms": "250.5"}})
    assert spec.step_wait_seconds == 1e308 and spec.max_p95_latency_ms == 250.5
