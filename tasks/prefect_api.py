"""The Prefect API calls a release makes besides running its tasks: artifacts, the retry run, the
approval pause, and what ``prefect.runtime`` says about the run.

One object on the run (``ReleaseRun.prefect_api``) instead of module imports, so a test can put a
faulty one in its place (``canaryflow.faults``) and see that an artifact API answering 503 costs the
report, never the outcome.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from canaryflow.release import ReleaseRun


class PrefectApi:
    """The real calls, made lazily so that importing this module costs nothing."""

    def flow_run_id(self) -> str | None:
        from prefect.runtime import flow_run

        return str(flow_run.id) if flow_run.id else None

    def flow_run_tags(self) -> list[str]:
        from prefect.runtime import flow_run

        return list(flow_run.tags or [])

    def deployment_id(self) -> str | None:
        from prefect.runtime import deployment

        return str(deployment.id) if deployment.id else None

    def create_progress_artifact(self, progress: float, *, key: str, description: str) -> Any:
        from prefect.artifacts import create_progress_artifact

        return create_progress_artifact(progress, key=key, description=description)

    def update_progress_artifact(self, artifact_id: Any, progress: float, *, description: str) -> None:
        from prefect.artifacts import update_progress_artifact

        update_progress_artifact(artifact_id, progress, description=description)

    def create_table_artifact(self, rows: list[dict[str, Any]], *, key: str, description: str) -> None:
        from prefect.artifacts import create_table_artifact

        create_table_artifact(rows, key=key, description=description)

    def create_markdown_artifact(self, markdown: str, *, key: str, description: str) -> None:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(markdown, key=key, description=description)

    def run_deployment(self, deployment_id: str, **options: Any) -> Any:
        from prefect.deployments import run_deployment

        return run_deployment(deployment_id, **options)

    def pause_flow_run(self, **options: Any) -> Any:
        from prefect.flow_runs import pause_flow_run

        return pause_flow_run(**options)

    def resume_flow_run(self, flow_run_id: str, **options: Any) -> None:
        from prefect.flow_runs import resume_flow_run

        resume_flow_run(UUID(flow_run_id), **options)


DEFAULT = PrefectApi()


def prefect_api(run: ReleaseRun) -> Any:
    """The run's Prefect API: the real one unless the run was given another."""
    return run.prefect_api if run.prefect_api is not None else DEFAULT
