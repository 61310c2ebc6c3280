"""Strict JSON for signed bodies: what Python's json module lets through is refused with a reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canaryflow.webhook.payload import MAX_EXACT_INTEGER, PayloadRefused, kind, parse_json, parse_object, quoted


@pytest.mark.parametrize("text, reason", [
    ('{"image": NaN}', "NaN"),
    ('{"image": Infinity}', "Infinity"),
    ('{"spec": {"step_wait_seconds": -Infinity}}', "-Infinity"),
    ('{"spec": {"step_wait_seconds": 1e999}}', "out of range"),
    ('{"n": 9007199254740992}', "2^53"),
    ('{"n": -9007199254740992}', "2^53"),
    ('{"n": ' + "9" * 5000 + "}", "2^53"),  # beyond int's digit limit too: refused before converting
    ('{"service": "\\ud800"}', "lone surrogate"),
    ('{"\\udfff": 1}', "lone surrogate"),
    ('{"a": [' * 33 + "1" + "]}" * 33, "deeper than 32"),
    ("[" * 100_000, "deeper than 32"),  # past the interpreter's recursion limit
    ('{"a": ', "not valid JSON"),
    ("", "not valid JSON"),
])
def test_what_json_loads_tolerates_is_refused_with_the_reason(text, reason):
    with pytest.raises(PayloadRefused) as info:
        parse_json(text)
    assert reason in str(info.value)


def test_real_text_and_exact_numbers_pass():
    document = parse_object('{"emoji": "\\ud83d\\ude00", "n": 9007199254740991, "x": -1.5e300, "k": "caf\\u00e9"}')
    assert document == {"emoji": "\U0001F600", "n": MAX_EXACT_INTEGER, "x": -1.5e300, "k": "café"}


def test_depth_counts_containers_and_is_configurable():
    two = '{"a": {"b": 1}}'
    assert parse_json(two, max_depth=2) == {"a": {"b": 1}}
    with pytest.raises(PayloadRefused):
        parse_json(two, max_depth=1)
    assert parse_json('{"a": "[[[[[[[[["}', max_depth=1) == {"a": "[[[[[[[[["}  # brackets in text are text


def test_an_object_is_required():
    for text in ("[1, 2]", '"x"', "3", "null"):
        with pytest.raises(PayloadRefused, match="must be a JSON object"):
            parse_object(text)


def test_quoted_is_short_and_escapes_what_is_not_printable():
    assert quoted("published") == "'published'"
    assert quoted("\ud800") == "'\\ud800'"
    assert len(quoted(["x" * 1000])) == 40 and quoted(["x" * 1000]).endswith("…")
    assert [kind(v) for v in (None, True, 1, 1.5, "s", [], {})] == [
        "null", "a boolean", "a number", "a number", "a string", "a list", "an object"]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-MAX_EXACT_INTEGER, MAX_EXACT_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


@settings(max_examples=200, deadline=None, database=None)
@given(JSON_VALUES)
def test_any_strict_json_document_round_trips(value):
    text = json.dumps(value)  # lone surrogates from st.text() come out as \ud8xx escapes
    try:
        parsed = parse_json(text)
    except PayloadRefused as exc:
        assert "surrogate" in str(exc) or "deeper" in str(exc)
    else:
        assert parsed == value
