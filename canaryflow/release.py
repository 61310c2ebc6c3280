"""What one release run carries between its steps, and what it reports at the end.

Prefect-free: the flow and its tasks pass a ``ReleaseRun`` around; tests build one directly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from canaryflow.assess.worth import evidence_worth
from canaryflow.judge import Measurement, Reason, Round
from canaryflow.pipeline_metrics import PipelineMetrics
from canaryflow.platforms.base import Platform
from canaryflow.prometheus import PrometheusSource
from canaryflow.spec import ReleaseSpec


class ReleaseRolledBack(Exception):
    """The release was rolled back. ``reason`` is machine-readable, ``explanation`` has the numbers."""

    def __init__(self, reason: str, explanation: str, summary: dict[str, Any] | None = None) -> None:
        super().__init__(reason, explanation, summary)

    @property
    def reason(self) -> str:
        return str(self.args[0])

    @property
    def explanation(self) -> str:
        return str(self.args[1])

    @property
    def summary(self) -> dict[str, Any]:
        return self.args[2] or {}

    def __str__(self) -> str:
        return f"rolled back ({self.reason}): {self.explanation}"


@dataclass
class StepRecord:
    """One line of the step-by-step summary."""

    stage: str
    weight: int
    started: float
    duration: float = 0.0
    outcome: str = ""
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "weight": self.weight, "duration_s": round(self.duration, 2),
                "outcome": self.outcome, "detail": self.detail}


@dataclass
class ReleaseRun:
    spec: ReleaseSpec
    platform: Platform
    source: PrometheusSource
    metrics: PipelineMetrics
    started: float = field(default_factory=time.monotonic)
    rounds: list[Round] = field(default_factory=list)
    round_times: list[float] = field(default_factory=list)  # seconds since the release started, per round
    step_starts: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, weight)
    steps: list[StepRecord] = field(default_factory=list)
    previous_version: str | None = None
    deployed_at: float | None = None  # monotonic time the canary was started
    attempt: int = 1  # 2+ on a scheduled retry of an aborted canary
    retry_of: str | None = None  # flow run id of the first attempt
    progress_artifact: Any = None  # id of the UI progress bar that follows the canary weight
    dashboard: Any = None  # the Grafana side of the release (canaryflow.dashboard_release.DashboardTracker)
    analysis: Any = None  # the judge's memory between rounds (canaryflow.analysis.Analysis)
    prefect_api: Any = None  # the Prefect API calls of the reporting (tasks.prefect_api); None: the real one

    @property
    def canary_age(self) -> float | None:
        return None if self.deployed_at is None else time.monotonic() - self.deployed_at

    @property
    def lease_seconds(self) -> float:
        """Long enough to survive a slow analysis round, short enough to undo a crash quickly."""
        return self.spec.traffic_lease_seconds or max(30.0, 3 * self.spec.analysis_interval_seconds)

    def begin(self, stage: str, weight: int) -> StepRecord:
        record = StepRecord(stage, weight, time.monotonic())
        self.steps.append(record)
        return record

    @staticmethod
    def end(record: StepRecord, outcome: str, detail: str = "") -> None:
        record.duration = time.monotonic() - record.started
        record.outcome, record.detail = outcome, detail

    @contextmanager
    def stage(self, name: str, weight: int = 0) -> Iterator[StepRecord]:
        """A named stage of the summary, timed and counted as a task in the pipeline metrics."""
        record = self.begin(name, weight)
        with self.metrics.track_task(name.replace(" ", "_")):
            try:
                yield record
            except BaseException as exc:
                self.end(record, "failed", f"{type(exc).__name__}: {exc}")
                raise
        self.end(record, record.outcome or "ok", record.detail)

    def record_round(self, step_index: int, elapsed: float, measurements: tuple[Measurement, ...]) -> Round:
        round_ = Round(step_index, elapsed, measurements)
        self.rounds.append(round_)
        self.round_times.append(time.monotonic() - self.started)
        for m in measurements:
            self.metrics.measurement(metric=m.metric, verdict=m.verdict.value, value=m.value, threshold=m.threshold,
                                     baseline=m.baseline, evidence=m.evidence,
                                     evidence_threshold=m.evidence_threshold)
        return round_

    def summary(self, *, status: str, reason: Reason | str | None = None, explanation: str = "") -> dict[str, Any]:
        return {
            "service": self.spec.service, "version": self.spec.version,
            "environment": self.spec.environment.value, "previous_version": self.previous_version,
            "status": status, "reason": str(reason) if reason else None, "explanation": explanation,
            "duration_s": round(time.monotonic() - self.started, 2),
            "steps": [s.as_dict() for s in self.steps],
            "measurements": [
                {"step": r.step_index, "weight": self.spec.steps[r.step_index], "elapsed_s": round(r.elapsed, 1),
                 "metric": m.metric, "value": m.value, "threshold": m.threshold, "unit": m.unit,
                 "verdict": m.verdict.value, "requests": m.requests, "baseline": m.baseline,
                 "baseline_requests": m.baseline_requests, "evidence": m.evidence,
                 "evidence_threshold": m.evidence_threshold,
                 "bounds": list(m.bounds) if m.bounds else None, "detail": m.detail, "release_s": round(t, 1)}
                for r, t in zip(self.rounds, self.round_times, strict=False) for m in r.measurements
            ],
            "step_starts": [[round(t, 1), w] for t, w in self.step_starts],
            "decided_s": round(time.monotonic() - self.started, 1),
            "evidence_worth": evidence_worth(self.spec, self.rounds),
            "boundaries_ms": self.analysis.describe_boundaries() if self.analysis is not None else {},
        }

    def close(self) -> None:
        self.platform.close()
        self.source.close()
        if self.dashboard is not None:
            self.dashboard.close()
