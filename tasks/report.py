"""What a release shows in the Prefect UI: a progress bar that follows the canary weight, the
table of every analysis measurement, and a markdown summary with the decision and its reason.

Reporting never decides anything, so a failure here is logged and the release goes on.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from canaryflow.artifacts import artifact_key, measurement_rows, summary_markdown
from canaryflow.chart import data_uri
from canaryflow.release import ReleaseRun
from tasks.common import PLAIN_TASK
from tasks.prefect_api import prefect_api


def show_weight(run: ReleaseRun, weight: int) -> None:
    """Move the progress artifact to ``weight`` (created on first use). Not a task: it runs at
    every weight change and must stay cheap; it is best effort."""
    description = f"canary weight of {run.spec.service} {run.spec.version}: {weight}%"
    api = prefect_api(run)
    try:
        if run.progress_artifact is None:
            run.progress_artifact = api.create_progress_artifact(
                weight, key=artifact_key(run.spec.service, "canary-weight"), description=description)
        else:
            api.update_progress_artifact(run.progress_artifact, weight, description=description)
    except Exception as exc:  # the UI bar is a view; the release must not depend on it
        run.metrics.monitoring("prefect", "show_weight", "failed")
        get_run_logger().warning("could not update the canary-weight artifact: %s", exc)


@task(name="publish-report", **PLAIN_TASK)
def publish_report(run: ReleaseRun, summary: dict[str, Any]) -> None:
    """Raises when the artifact API fails: the finaliser logs and counts it (``flows.release``)."""
    key = run.spec.service
    api = prefect_api(run)
    rows = measurement_rows(summary)
    if rows:
        api.create_table_artifact(rows, key=artifact_key(key, "analysis"),
                              description=f"Every analysis measurement of {run.spec.run_name}")
    try:
        chart = data_uri(summary)
    except Exception as exc:  # a picture is a view: never let it cost the report
        get_run_logger().warning("could not draw the release chart: %s", exc)
        chart = None
    api.create_markdown_artifact(summary_markdown({**summary, "chart": chart}), key=artifact_key(key, "summary"),
                             description=f"Decision for {run.spec.run_name}")
