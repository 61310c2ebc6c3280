"""What a release shows in the Prefect UI: a progress bar that follows the canary weight, the
table of every analysis measurement, and a markdown summary with the decision and its reason.

Reporting never decides anything, so a failure here is logged and the release goes on.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from canaryflow.artifacts import artifact_key, measurement_rows, summary_markdown
from canaryflow.release import ReleaseRun
from tasks.common import PLAIN_TASK


def show_weight(run: ReleaseRun, weight: int) -> None:
    """Move the progress artifact to ``weight`` (created on first use). Not a task: it runs at
    every weight change and must stay cheap; it is best effort."""
    description = f"canary weight of {run.spec.service} {run.spec.version}: {weight}%"
    try:
        if run.progress_artifact is None:
            run.progress_artifact = create_progress_artifact(
                weight, key=artifact_key(run.spec.service, "canary-weight"), description=description)
        else:
            update_progress_artifact(run.progress_artifact, weight, description=description)
    except Exception as exc:  # the UI bar is a view; the release must not depend on it
        get_run_logger().warning("could not update the canary-weight artifact: %s", exc)


@task(name="publish-report", **PLAIN_TASK)
def publish_report(run: ReleaseRun, summary: dict[str, Any]) -> None:
    key = run.spec.service
    rows = measurement_rows(summary)
    if rows:
        create_table_artifact(rows, key=artifact_key(key, "analysis"),
                              description=f"Every analysis measurement of {run.spec.run_name}")
    create_markdown_artifact(summary_markdown(summary), key=artifact_key(key, "summary"),
                             description=f"Decision for {run.spec.run_name}")
