"""Serve the release flow from a long-lived process instead of a work pool.

    CANARYFLOW_METRICS_PORT=8001 python deployments/serve.py

``serve()`` registers the ``canary-release`` deployment and runs its flow runs in this process;
with ``CANARYFLOW_METRICS_PORT`` the pipeline metrics are also served on that port for Prometheus
to scrape (in addition to the Pushgateway when ``CANARYFLOW_PUSHGATEWAY_URL`` is set).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.release import canary_release  # noqa: E402

if __name__ == "__main__":
    canary_release.serve(name="canary-release", tags=["canaryflow", "release"], limit=1)
