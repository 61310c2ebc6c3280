"""canaryflow: canary releases as Prefect 3 flows, judged by Prometheus, rolled back by themselves.

The package's core is Prefect-free: the release spec, the judge, the platforms and the metric
plumbing. ``flows/`` and ``tasks/`` wrap it for Prefect; a few adapter modules of the package (the
CLI, operator commands, events, the webhook's starter) call Prefect's API from inside the functions
that need it, so the whole package imports without Prefect. tests/unit/test_boundaries.py checks
both, and lists the adapters.
"""

from canaryflow.errors import CanaryflowError, ConfigError, MetricSourceError, PlatformError, RolloutStuck

__all__ = ["CanaryflowError", "ConfigError", "MetricSourceError", "PlatformError", "RolloutStuck"]
__version__ = "0.1.0"
