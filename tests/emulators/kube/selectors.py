"""Label and field selectors as the API server parses them from list/watch query strings.

Routers find "the canary ReplicaSet" or "the pods of track=canary" by selector; an emulator that
ignored selectors would hand back every object and hide bugs, so the syntax is parsed for real:
`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .status import bad_request

Matcher = Callable[[dict[str, Any]], bool]

_SET_RE = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s*\((.*)\)\s*$")


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside `( )`."""
    terms, depth, current = [], 0, []
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(ch)
    terms.append("".join(current))
    return [t.strip() for t in terms if t.strip()]


def _label_term(term: str) -> Callable[[dict[str, str]], bool]:
    m = _SET_RE.match(term)
    if m:
        key, op, values_text = m.group(1), m.group(2), m.group(3)
        values = {v.strip() for v in values_text.split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    for op in ("!=", "==", "="):
        if op in term:
            key, _, value = term.partition(op)
            key, value = key.strip(), value.strip()
            if not key:
                break
            if op == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    else:
        if term.startswith("!"):
            key = term[1:].strip()
            return lambda labels: key not in labels
        if re.fullmatch(r"[A-Za-z0-9._/-]+", term):
            return lambda labels: term in labels
    raise bad_request(f"unable to parse requirement: invalid label selector term {term!r}")


def label_matcher(selector: str | None) -> Matcher:
    if not selector:
        return lambda obj: True
    checks = [_label_term(t) for t in _split_terms(selector)]
    return lambda obj: all(c((obj.get("metadata") or {}).get("labels") or {}) for c in checks)


_FIELDS = {
    "metadata.name": lambda obj: (obj.get("metadata") or {}).get("name"),
    "metadata.namespace": lambda obj: (obj.get("metadata") or {}).get("namespace"),
}


def field_matcher(selector: str | None) -> Matcher:
    if not selector:
        return lambda obj: True
    checks: list[Matcher] = []
    for term in _split_terms(selector):
        for op in ("!=", "==", "="):
            if op in term:
                field, _, value = term.partition(op)
                field, value = field.strip(), value.strip()
                getter = _FIELDS.get(field)
                if getter is None:
                    raise bad_request(
                        f'"{field}" is not a known field selector: only "metadata.name", "metadata.namespace"'
                    )
                if op == "!=":
                    checks.append(lambda obj, g=getter, v=value: g(obj) != v)
                else:
                    checks.append(lambda obj, g=getter, v=value: g(obj) == v)
                break
        else:
            raise bad_request(f"invalid field selector: {term!r}")
    return lambda obj: all(c(obj) for c in checks)


def selector_string(selector: dict[str, Any] | None) -> str:
    """A LabelSelector object rendered as the string form (Scale.status.selector uses it)."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(sorted(values))})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(values))})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Does a LabelSelector object select these labels (empty selector selects nothing here)."""
    text = selector_string(selector)
    if not text:
        return False
    return label_matcher(text)({"metadata": {"labels": labels}})
