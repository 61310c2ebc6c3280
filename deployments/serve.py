"""Serve canaryflow's deployments from one long-lived process instead of a work pool.

    CANARYFLOW_METRICS_PORT=8001 python deployments/serve.py

``serve()`` registers the same deployments as ``prefect.yaml`` (``canary-release/staging``,
``canary-release/production``, ``canary-rollback/manual``) and runs their flow runs in this
process. Releases of one service still run one at a time (the flow holds the service's global
concurrency limit); ``limit`` only caps how many runs this process executes at once. With
``CANARYFLOW_METRICS_PORT`` the pipeline metrics are also served on that port for Prometheus to
scrape (in addition to the Pushgateway when ``CANARYFLOW_PUSHGATEWAY_URL`` is set).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect import serve  # noqa: E402

from flows.release import canary_release  # noqa: E402
from flows.rollback import canary_rollback  # noqa: E402

if __name__ == "__main__":
    serve(
        canary_release.to_deployment(name="staging", tags=["canaryflow", "release", "environment:staging"]),
        canary_release.to_deployment(name="production", tags=["canaryflow", "release", "environment:production"]),
        canary_rollback.to_deployment(name="manual", tags=["canaryflow", "rollback"]),
        limit=4,
    )
