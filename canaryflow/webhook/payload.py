"""Signed bodies as strict JSON, and payload text shown back to the sender. Pure, no I/O.

A valid signature says who sent a body, not that the body is sane. Python's ``json`` module accepts
``NaN``/``Infinity``, turns ``1e999`` into ``inf``, nests as deep as the interpreter's stack and
passes lone surrogates (``"\\ud800"``) through as text that cannot be encoded again; each of those
once surfaced as a 500 somewhere after parsing. Here the body is refused at the door instead
(:class:`PayloadRefused`, answered 400), so everything downstream — mapping, the release spec, the
Prefect parameters, the answer — only ever sees finite numbers, bounded nesting and real text:
I-JSON (RFC 7493) rather than whatever the parser tolerates.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: Nesting levels a payload may use; GitHub's deepest release payloads use about eight.
DEFAULT_MAX_DEPTH = 32
#: I-JSON: integers beyond this are not exact in every JSON implementation (IEEE doubles).
MAX_EXACT_INTEGER = 2**53 - 1
_MAX_INTEGER_DIGITS = len(str(MAX_EXACT_INTEGER)) + 1  # a sign, then at most 16 digits
#: How much of a payload value an answer or a log line quotes.
QUOTE_LIMIT = 40


class PayloadRefused(ValueError):
    """The body is not strict JSON; the message says why in words fit for the answer."""


def _refuse_constant(name: str) -> Any:
    raise PayloadRefused(f"body holds {name}, which is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise PayloadRefused(f"body holds the number {text[:QUOTE_LIMIT]}, which is out of range")
    return value


def _exact(text: str) -> int:
    value = int(text) if len(text) <= _MAX_INTEGER_DIGITS else None
    if value is None or abs(value) > MAX_EXACT_INTEGER:
        shown = text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 1] + "…"
        raise PayloadRefused(f"body holds the integer {shown}, beyond ±(2^53 - 1), not exact in JSON (I-JSON)")
    return value


def _is_text(value: str) -> bool:
    """False for a string holding a lone surrogate: it decodes from JSON but encodes to nothing."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_shape(document: Any, max_depth: int) -> None:
    """Depth and text checked without recursion, so a deep document cannot exhaust the stack here."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if not _is_text(value):
                raise PayloadRefused("body holds a lone surrogate escape (such as \\ud800), which is not text")
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > max_depth:
            raise PayloadRefused(f"body is nested deeper than {max_depth} levels")
        if isinstance(value, dict):
            pending.extend((key, depth) for key in value)
            pending.extend((item, depth + 1) for item in value.values())
        else:
            pending.extend((item, depth + 1) for item in value)


def parse_json(text: str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Any strict JSON value; raises :class:`PayloadRefused`."""
    try:
        document = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite, parse_int=_exact)
    except RecursionError:  # deeper than the interpreter allows: certainly deeper than max_depth
        raise PayloadRefused(f"body is nested deeper than {max_depth} levels") from None
    except PayloadRefused:
        raise
    except ValueError:
        raise PayloadRefused("body is not valid JSON") from None
    _check_shape(document, max_depth)
    return document


def parse_object(text: str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> dict[str, Any]:
    """A strict JSON object: every payload the receiver maps is one."""
    document = parse_json(text, max_depth=max_depth)
    if not isinstance(document, dict):
        raise PayloadRefused("body must be a JSON object")
    return document


def quoted(value: Any) -> str:
    """A payload value as an answer may show it: a short ``repr`` (which escapes what is not printable)."""
    shown = repr(value)
    return shown if len(shown) <= QUOTE_LIMIT else shown[: QUOTE_LIMIT - 1] + "…"


def kind(value: Any) -> str:
    """The JSON type of ``value`` in words, for "must be a string, not a list"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"
