"""Platform operations: deploy, wait, move traffic, promote, roll back."""

from __future__ import annotations

import time

from prefect import get_run_logger, task

from canaryflow.release import ReleaseRun
from tasks.common import PLAIN_TASK, PLATFORM_TASK, WAITING_PLATFORM_TASK


@task(name="deploy-canary", **PLATFORM_TASK)
def deploy_canary(run: ReleaseRun) -> None:
    with run.stage("deploy") as record:
        run.platform.deploy(run.spec.version)
        run.deployed_at = time.monotonic()
        record.detail = f"{run.spec.version} started beside {run.previous_version}"
        get_run_logger().info("deployed %s as canary beside %s", run.spec.version, run.previous_version)


@task(name="wait-until-ready", **PLAIN_TASK)
def wait_until_ready(run: ReleaseRun) -> None:
    """No retries: a rollout that misses its deadline is stuck, and retrying would only hide it."""
    with run.stage("wait until ready"):
        run.platform.wait_ready(timeout=run.spec.ready_timeout_seconds)


@task(name="set-canary-weight", **PLATFORM_TASK)
def set_canary_weight(run: ReleaseRun, weight: int) -> None:
    with run.metrics.track_task("set_canary_weight"):
        run.platform.set_weight(weight, lease_seconds=run.lease_seconds)
        run.metrics.traffic(weight)
        get_run_logger().info("canary weight -> %d%%", weight)


@task(name="promote-canary", **WAITING_PLATFORM_TASK)
def promote_canary(run: ReleaseRun) -> None:
    with run.stage("promote", 100):
        run.platform.promote()
        run.metrics.traffic(0)
        get_run_logger().info("promoted %s", run.spec.version)


@task(name="rollback-canary", **WAITING_PLATFORM_TASK)
def rollback_canary(run: ReleaseRun, reason: str) -> None:
    """Traffic to stable first, then the canary is removed (the platform's rollback does both, in order)."""
    with run.metrics.track_task("rollback_canary"):
        run.platform.rollback()
        run.metrics.traffic(0)
        get_run_logger().warning("rolled back %s: %s", run.spec.version, reason)
