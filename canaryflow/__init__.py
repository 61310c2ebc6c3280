"""canaryflow: canary releases as Prefect 3 flows, judged by Prometheus, rolled back by themselves.

The package is Prefect-free: it holds the release spec, the judge, the platforms and the metric
plumbing. ``flows/`` and ``tasks/`` wrap it for Prefect.
"""

from canaryflow.errors import CanaryflowError, ConfigError, MetricSourceError, PlatformError, RolloutStuck

__all__ = ["CanaryflowError", "ConfigError", "MetricSourceError", "PlatformError", "RolloutStuck"]
__version__ = "0.1.0"
