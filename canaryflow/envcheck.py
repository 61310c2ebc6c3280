"""Misspelt ``CANARYFLOW_*`` variables are refused, not ignored.

pydantic-settings drops variables it does not know, so ``CANARYFLOW_STEP_WAIT=5`` would run a
release with the default 300 s waits and ``CANARYFLOW_PROMETHEUS_ULR`` would judge it against the
default Prometheus. A variable that is *close* to a known name is therefore an error with a
"did you mean" hint; other ``CANARYFLOW_*`` names (a CI job's own variables) are left alone.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping

from pydantic import BaseModel

from canaryflow.errors import ConfigError

PREFIX = "CANARYFLOW_"
NESTED = "__"
#: Read elsewhere: the CLI's home directory and the checkout a worker runs flows from.
OTHER_VARIABLES = frozenset({"CANARYFLOW_HOME", "CANARYFLOW_CHECKOUT"})
#: The webhook receiver validates its own ``CANARYFLOW_WEBHOOK_*`` settings at startup.
OWN_PREFIXES = ("CANARYFLOW_WEBHOOK_",)
SIMILARITY = 0.8


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


def known_variables() -> frozenset[str]:
    """Every variable the release spec and the settings read."""
    from canaryflow.settings import Settings
    from canaryflow.spec import ReleaseSpec

    return frozenset(_names(ReleaseSpec, PREFIX)) | frozenset(_names(Settings, PREFIX)) | OTHER_VARIABLES


def _suggestion(variable: str, known: frozenset[str]) -> str | None:
    """The known name ``variable`` was probably meant to be, or None when it is unrelated."""
    typed = variable.removeprefix(PREFIX)
    names = {name.removeprefix(PREFIX): name for name in known}
    # A shortened name (STEP_WAIT for STEP_WAIT_SECONDS) or a near miss (PROMETHEUS_ULR).
    truncated = sorted(n for n in names if len(typed) >= 4 and n.startswith(typed))
    if truncated:
        return names[truncated[0]]
    close = difflib.get_close_matches(typed, list(names), n=1, cutoff=SIMILARITY)
    return names[close[0]] if close else None


def misspelt_variables(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{variable: the known name it resembles}`` for every suspicious ``CANARYFLOW_*`` variable."""
    environ = os.environ if environ is None else environ
    known = known_variables()
    found = {}
    for variable in sorted(environ):
        if not variable.startswith(PREFIX) or variable in known or variable.startswith(OWN_PREFIXES):
            continue
        suggestion = _suggestion(variable, known)
        if suggestion is not None:
            found[variable] = suggestion
    return found


def check_variable_names(environ: Mapping[str, str] | None = None) -> None:
    """Raise ``ConfigError`` naming each misspelt variable (values are never shown: they may be secrets)."""
    found = misspelt_variables(environ)
    if found:
        lines = [f"  {variable}: not a canaryflow variable; did you mean {meant}?" for variable, meant in found.items()]
        raise ConfigError("invalid environment:\n" + "\n".join(lines), fields=tuple(found))
