"""Numbers as people read them in a decision: percentages, counts with separators, e-values.

One place, so the log, the CLI summary, the artifacts and the metrics say the same thing.
"""

from __future__ import annotations

import math

from canaryflow.assess.counts import Counts


def pct(fraction: float | None) -> str:
    if fraction is None:
        return "n/a"
    value = fraction * 100
    return f"{value:.2f}%" if value >= 0.1 or value == 0 else f"{value:.3f}%"


def count(n: float) -> str:
    return f"{round(n):,}"


def rate(c: Counts) -> str:
    """``2.10% (42/2,000)``."""
    return f"{pct(c.rate)} ({count(c.events)}/{count(c.requests)})"


def evidence(e: float) -> str:
    if not math.isfinite(e) or e >= 1e6:
        return f"{min(e, 1e300):.2g}"
    return f"{e:,.0f}" if e >= 10 else f"{e:.2f}"


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def confidence(alpha: float) -> str:
    """``99.5%`` for alpha 0.005."""
    return f"{(1 - alpha) * 100:.4g}%"
