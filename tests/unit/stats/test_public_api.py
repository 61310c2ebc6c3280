"""The surface the judge builds on: the exported names and the keyword-only shape of each call."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import canaryflow.stats as stats

EXPORTED = {
    "MAX_E_VALUE", "RatioEvidence", "RatioGrid", "average_log_e", "beta_binomial_cs", "beta_binomial_log_martingale",
    "credibly_above", "credibly_below", "detectable_rate", "detectable_ratio", "prior_b", "ratio_log_eprocess",
    "srm_log_bayes_factor", "theta",
}

#: Parameters a caller must name (positional use would silently swap a share and a level).
KEYWORD_ONLY = {
    "beta_binomial_log_martingale": {"a", "b"},
    "beta_binomial_cs": {"alpha", "a", "b"},
    "credibly_above": {"alpha", "a", "b"},
    "credibly_below": {"alpha", "a", "b"},
    "srm_log_bayes_factor": {"expected_share", "concentration"},
    "ratio_log_eprocess": {"tolerance", "grid"},
    "detectable_ratio": {"baseline_rate", "alpha", "tolerance", "grid", "probability", "simulations", "seed",
                         "candidates"},
    "detectable_rate": {"limit", "alpha", "a", "b", "probability"},
}


def test_all_is_the_public_surface():
    assert set(stats.__all__) == EXPORTED
    assert all(hasattr(stats, name) for name in stats.__all__)


def test_options_are_keyword_only():
    for name, expected in KEYWORD_ONLY.items():
        parameters = inspect.signature(getattr(stats, name)).parameters.values()
        keyword_only = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
        assert keyword_only == expected, name
    update = inspect.signature(stats.RatioEvidence.update).parameters.values()
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in update if p.name != "self")


#: The standard library modules the statistics use (``typing`` for annotations only), and numpy and scipy.
ALLOWED_IMPORTS = {"__future__", "math", "numbers", "collections", "dataclasses", "typing", "numpy", "scipy"}


def test_the_statistics_need_nothing_but_numpy_and_scipy():
    for module in Path(stats.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in ALLOWED_IMPORTS or name.startswith("canaryflow.stats"), (module.name, name)
