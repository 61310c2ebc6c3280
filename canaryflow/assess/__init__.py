"""Per-metric verdicts: each round's counts folded into the metric's evidence and judged.

One module per kind of metric (``ratio``, ``latency``, ``threshold``) plus the traffic-split
check; :mod:`canaryflow.judge` then decides from the verdicts. Pure functions over plain data:
the Prometheus reading lives in :mod:`canaryflow.analysis`.
"""
