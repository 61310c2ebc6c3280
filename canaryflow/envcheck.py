"""Every ``CANARYFLOW_*`` variable that no model reads is refused, not ignored.

pydantic-settings drops variables it does not know, so ``CANARYFLOW_STEP_WAIT=5`` would run a
release with the default 300 s waits, ``CANARYFLOW_MAX_ERROR_RATE=0.5`` (shaped like the
``--max-error-rate`` flag) would leave the default threshold in place, and
``CANARYFLOW_PROMETHEUS_ULR`` would judge the release against the default Prometheus. The user
believes something is set that is not, so any ``CANARYFLOW_*`` name outside the known set is an
error, with the name that was probably meant.

The known set is data: ``variables.txt`` beside this module, generated from the models (release
spec, settings, webhook receiver; ``variables_of``) by ``python -m canaryflow.docs_reference``
with the reference pages, plus the few names read elsewhere. The settings and the spec both check
the environment when they load it, so this module cannot import them: reading the list keeps the
import graph a tree, and ``tests/docs/test_reference.py`` fails when the list and the models disagree.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from importlib import resources

from pydantic import BaseModel

from canaryflow.errors import ConfigError

PREFIX = "CANARYFLOW_"
NESTED = "__"
#: The generated list of the models' variables, one per line (package data).
VARIABLES_FILE = "variables.txt"
#: Read outside the models: the CLI's home directory, the checkout a worker runs flows from, the CI
#: side of the webhook (the receiver's address and the signing secret a CI job holds, GitLab's image
#: variable read by the payload mapping), and where the test suite keeps its screenshots.
OTHER_VARIABLES = frozenset({"CANARYFLOW_HOME", "CANARYFLOW_CHECKOUT", "CANARYFLOW_WEBHOOK_URL",
                             "CANARYFLOW_WEBHOOK_SECRET", "CANARYFLOW_IMAGE", "CANARYFLOW_TEST_ARTIFACTS"})
#: Names shaped like the CLI's flags, which are not the spec's field names: the flag says what to use.
FLAG_SHAPED = {
    "WAIT": "STEP_WAIT_SECONDS",
    "INTERVAL": "ANALYSIS_INTERVAL_SECONDS",
    "WINDOW": "ANALYSIS_WINDOW",
    "MIN_REQUESTS": "MIN_CANARY_REQUESTS",
    "MAX_ERROR_RATE": "THRESHOLDS__MAX_ERROR_RATE",
    "MAX_P95_MS": "THRESHOLDS__MAX_P95_LATENCY_MS",
    "MAX_P95": "THRESHOLDS__MAX_P95_LATENCY_MS",
    "MAX_P95_LATENCY_MS": "THRESHOLDS__MAX_P95_LATENCY_MS",
}
SIMILARITY = 0.75


def _model_of(annotation: object) -> type[BaseModel] | None:
    candidates = [annotation, *getattr(annotation, "__args__", ())]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _names(model: type[BaseModel], prefix: str) -> Iterator[str]:
    for name, field in model.model_fields.items():
        variable = prefix + name.upper()
        yield variable
        nested = _model_of(field.annotation)
        if nested is not None:
            yield from _names(nested, variable + NESTED)


def variables_of(models: Mapping[type[BaseModel], str]) -> frozenset[str]:
    """Every variable the given models read, ``{model: its prefix}``, nested sections included."""
    return frozenset(name for model, prefix in models.items() for name in _names(model, prefix))


@cache
def model_variables() -> frozenset[str]:
    """The models' variables, as last generated into ``variables.txt``."""
    text = resources.files("canaryflow").joinpath(VARIABLES_FILE).read_text()
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def known_variables() -> frozenset[str]:
    """Every variable the release spec, the settings and the webhook receiver read, and the others."""
    return model_variables() | OTHER_VARIABLES


def closest(typed: str, names: Iterable[str], *, cutoff: float = SIMILARITY) -> str | None:
    """The name ``typed`` was probably meant to be: a shortened name (STEP_WAIT for
    STEP_WAIT_SECONDS), a nested field without its section (MAX_ERROR_RATE for
    THRESHOLDS__MAX_ERROR_RATE), or a near miss (PROMETHEUS_ULR); None when nothing is close."""
    names = sorted(set(names))
    upper = {n.upper(): n for n in names}
    typed_upper = typed.upper()
    leaves = [n for u, n in upper.items() if u.rsplit(NESTED, 1)[-1] == typed_upper and u != typed_upper]
    if leaves:
        return leaves[0]
    truncated = [n for u, n in upper.items() if len(typed_upper) >= 4 and u.startswith(typed_upper)]
    if truncated:
        return min(truncated, key=len)
    close = difflib.get_close_matches(typed_upper, list(upper), n=1, cutoff=cutoff)
    return upper[close[0]] if close else None


def _suggestion(variable: str, known: frozenset[str]) -> str | None:
    typed = variable.removeprefix(PREFIX)
    if typed in FLAG_SHAPED:
        return PREFIX + FLAG_SHAPED[typed]
    meant = closest(typed, (name.removeprefix(PREFIX) for name in known))
    return PREFIX + meant if meant else None


def unknown_variables(environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """``{variable: the known name it resembles, or None}`` for every unknown ``CANARYFLOW_*`` variable."""
    environ = os.environ if environ is None else environ
    known = known_variables()
    return {variable: _suggestion(variable, known) for variable in sorted(environ)
            if variable.upper().startswith(PREFIX) and variable.upper() not in known}


def misspelt_variables(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The unknown variables that resemble a known name, with that name."""
    return {v: meant for v, meant in unknown_variables(environ).items() if meant is not None}


def check_variable_names(environ: Mapping[str, str] | None = None) -> None:
    """Raise ``ConfigError`` naming each unknown variable (values are never shown: they may be secrets)."""
    found = unknown_variables(environ)
    if found:
        lines = [f"  {variable}: not a canaryflow variable; "
                 + (f"did you mean {meant}?" if meant else "see docs/reference/settings.md for the variables")
                 for variable, meant in found.items()]
        raise ConfigError("invalid environment:\n" + "\n".join(lines), fields=tuple(found))


def _fields_at(model: type[BaseModel], loc: tuple[object, ...]) -> set[str]:
    """The field names valid where ``loc`` points (list indices and union tags are stepped over);
    every name of every model below ``model`` when the path cannot be followed."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None:
            break
        field = current.model_fields.get(str(part))
        if field is not None:
            first_arg = next(iter(getattr(field.annotation, "__args__", ())), None)
            current = _model_of(field.annotation) or _model_of(first_arg)
    if current is not None and loc and str(loc[-1]) not in current.model_fields:
        return set(current.model_fields)
    return {name.rsplit(NESTED, 1)[-1].lower() for name in _names(model, "")}


def spec_field_hint(model: type[BaseModel], error: Mapping[str, object]) -> str:
    """``; did you mean step_wait_seconds?`` for an unknown key of a spec, else empty."""
    raw_loc = error.get("loc") or ()  # pydantic's errors() give a tuple of keys and indices
    loc: tuple[object, ...] = tuple(raw_loc) if isinstance(raw_loc, Iterable) else ()
    if error.get("type") != "extra_forbidden" or not loc:
        return ""
    meant = closest(str(loc[-1]), _fields_at(model, loc))
    if meant is None and len(loc) == 1:  # a nested field written at the top: max_error_rate
        paths = {name.lower().replace(NESTED, "."): name for name in _names(model, "")}
        leaf = next((p for p in sorted(paths) if p.rsplit(".", 1)[-1] == str(loc[0]).lower() and "." in p), None)
        meant = leaf
    return f"; did you mean {meant}?" if meant else ""
