"""What ``canaryflow status`` shows: one screen per release, from any shell.

A release is seen from two sides, as an SRE checks it by hand: the Prefect API says what the run
is doing (its state, the steps of its spec, the verdict of every metric at its last analysis
round, an operator's pause) and the platform says what users get now (the stable version, the
canary weight really applied, whether the canary still serves). When the two disagree (the run
set 10 % and the platform applies 0 %: the lease ran out) the screen shows both.

The measurements come from the run's log: every analysis round logs one line per metric,
``[10%] error_rate PASS: canary 0.10% (1/980) vs baseline ...`` (``tasks.analysis``), for a CLI
run and a worker's run alike, while the run is still going; the artifacts with the same numbers
are only published when it ends.

``gather`` reads, ``render`` draws; the snapshot between them is plain data, so the screen is
tested without a server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from canaryflow.judge import Verdict

#: The analysis line ``tasks.analysis.analyse_canary`` logs for each measurement of a round.
MEASUREMENT_LINE = re.compile(r"^\[(?P<weight>\d+)%\] (?P<metric>\S+) (?P<verdict>"
                              + "|".join(v.value for v in Verdict) + r"): (?P<detail>.*)$", re.DOTALL)
#: Prefect's own lines about its task runs; the "last log" row shows the release's.
ENGINE_LINE = re.compile(r"^(Finished in state|Created task run|Executing |Beginning |Running )")
#: How many of a run's newest log lines are read: every round logs all its metrics together, so
#: the newest round is always among them.
LOG_LINES = 200

VERDICT_STYLE = {Verdict.PASS: "green", Verdict.FAIL: "bold red", Verdict.INCONCLUSIVE: "yellow",
                 Verdict.ERROR: "red"}
STATE_STYLE = {"RUNNING": "bold blue", "PAUSED": "yellow", "PENDING": "cyan", "SCHEDULED": "cyan",
               "CANCELLING": "yellow", "COMPLETED": "bold green", "FAILED": "bold red", "CRASHED": "bold red",
               "CANCELLED": "red"}


@dataclass(frozen=True)
class MetricVerdict:
    """The latest verdict of one metric, as the run logged it."""

    metric: str
    verdict: str
    weight: int
    detail: str
    at: datetime | None = None


@dataclass(frozen=True)
class ReleaseStatus:
    """One release run, as its run and its platform describe it at one moment."""

    service: str
    version: str
    environment: str
    platform: str
    run_id: str
    run_name: str
    state_type: str  # Prefect's state type: RUNNING, PAUSED, COMPLETED, FAILED, CRASHED, ...
    state_name: str  # its name: Running, RolledBack, Failed, Late, ...
    state_message: str = ""
    ui_url: str | None = None
    steps: tuple[int, ...] = ()
    started: datetime | None = None
    ended: datetime | None = None
    stable_version: str | None = None  # what the platform serves users now
    weight: int | None = None  # the canary weight the platform applies now
    run_weight: int | None = None  # the weight the run set last (its UI progress bar)
    canary_problem: str | None = None
    platform_error: str | None = None
    verdicts: tuple[MetricVerdict, ...] = ()
    operator: str | None = None  # "paused by carol@ops: looking", while a pause holds
    last_log: str | None = None

    @property
    def in_progress(self) -> bool:
        return self.state_type not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")

    @property
    def step(self) -> tuple[int, int] | None:
        """(n, N) of the step the run is at (counted from 1), or, once it ended, the step its last
        analysis round was at (a rollback has already put the weight back to 0); None before any
        traffic moved."""
        weight = self.run_weight if self.run_weight is not None else self.weight
        if not self.in_progress and self.verdicts:
            weight = max(self.verdicts, key=lambda v: v.at or datetime.min.replace(tzinfo=UTC)).weight
        if not self.steps or weight is None or weight not in self.steps:
            return None
        return self.steps.index(weight) + 1, len(self.steps)


@dataclass(frozen=True)
class Snapshot:
    """Everything one screen shows. ``note`` says why it shows what it shows (nothing running...)."""

    releases: tuple[ReleaseStatus, ...] = ()
    taken: datetime = field(default_factory=lambda: datetime.now(UTC))
    note: str = ""
    error: str | None = None  # the Prefect API could not be read this time

    @property
    def settled(self) -> bool:
        """Every release shown has ended (and at least one is shown): a watch may stop."""
        return bool(self.releases) and not any(r.in_progress for r in self.releases)


# -- reading -------------------------------------------------------------------------------------


def parse_measurement(message: str, at: datetime | None = None) -> MetricVerdict | None:
    match = MEASUREMENT_LINE.match(message)
    if match is None:
        return None
    return MetricVerdict(match["metric"], match["verdict"], int(match["weight"]), match["detail"].strip(), at)


def latest_verdicts(lines: Iterable[tuple[str, datetime | None]]) -> tuple[MetricVerdict, ...]:
    """The newest verdict per metric, from log lines given newest first; metrics in the order the
    rounds log them (the spec's order)."""
    newest: dict[str, MetricVerdict] = {}
    for message, at in lines:
        verdict = parse_measurement(message, at)
        if verdict is not None and verdict.metric not in newest:
            newest[verdict.metric] = verdict
    return tuple(reversed(newest.values()))  # a round logs its metrics in order; read backwards


class StatusReader:
    """Reads snapshots through the Prefect API and the platforms; keeps one platform client per
    release between reads (``--watch`` reads every second or two). ``close`` releases them."""

    def __init__(self, settings: Any = None) -> None:
        self._settings = settings
        self._platforms: dict[str, Any] = {}

    def close(self) -> None:
        for platform in self._platforms.values():
            try:
                platform.close()
            except Exception:  # noqa: BLE001 - closing a client must not hide the screen
                pass
        self._platforms.clear()

    def __enter__(self) -> StatusReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def snapshot(self, service: str | None = None) -> Snapshot:
        """The release of ``service`` (its run in progress, else its latest); without one, every
        service with a release in progress, or, when none is, the latest release of each."""
        try:
            runs, note = _pick(service)
            return Snapshot(tuple(self.describe(run) for run in runs), note=note)
        except Exception as exc:  # noqa: BLE001 - a watch keeps going through a server restart
            return Snapshot(error=f"cannot read the Prefect API: {type(exc).__name__}: {exc}")

    def describe(self, run: Any) -> ReleaseStatus:
        """One run: its spec, state and log through the Prefect API, then the platform's view."""
        from canaryflow.operate import service_of
        from canaryflow.webhook.starter import ui_url_for

        spec = _spec_of(run)
        raw = run.parameters.get("spec") if isinstance(run.parameters, dict) else None
        raw = raw if isinstance(raw, dict) else {}
        state = run.state
        lines = _log_lines(str(run.id))
        status = ReleaseStatus(
            service=spec.service if spec else str(raw.get("service") or service_of(run)),
            version=spec.version if spec else str(raw.get("version") or "?"),
            environment=spec.environment.value if spec else str(raw.get("environment") or "?"),
            platform=spec.platform if spec else str(raw.get("platform") or "?"),
            run_id=str(run.id), run_name=run.name,
            state_type=state.type.value if state else "UNKNOWN", state_name=state.name if state else "unknown",
            state_message=(state.message or "") if state else "", ui_url=ui_url_for(str(run.id)),
            steps=tuple(spec.steps) if spec else (), started=run.start_time, ended=run.end_time,
            run_weight=_run_weight(str(run.id)), verdicts=latest_verdicts(lines),
            last_log=next((m for m, _ in lines if not ENGINE_LINE.match(m) and parse_measurement(m) is None), None),
        )
        if status.in_progress:
            status = _with_operator(status)
        return self._with_platform(status, spec)

    def _with_platform(self, status: ReleaseStatus, spec: Any) -> ReleaseStatus:
        """What the platform serves now; an unreachable platform is said, never fatal."""
        from dataclasses import replace

        from canaryflow.platforms import create
        from canaryflow.settings import get_settings

        if spec is None:
            return replace(status, platform_error="the run's spec cannot be read")
        try:
            platform = self._platforms.get(status.run_id)
            if platform is None:
                platform = create(spec.platform, settings=self._settings or get_settings(), service=spec.service,
                                  spec=spec)
                self._platforms[status.run_id] = platform
            weight, stable = platform.get_weight(), platform.stable_version()
            # Before the canary takes traffic there is nothing to check (preflight has not deployed it).
            problem = platform.canary_problem() if status.in_progress and (weight or status.verdicts) else None
        except Exception as exc:  # noqa: BLE001 - a platform the shell cannot reach is a line on the screen
            return replace(status, platform_error=f"{type(exc).__name__}: {exc}")
        return replace(status, weight=weight, stable_version=stable, canary_problem=problem)


def _pick(service: str | None) -> tuple[list[Any], str]:
    """The runs to show, and a note saying why these."""
    from canaryflow.operate import current_release, in_progress, release_runs, service_of

    if service is not None:
        current = current_release(service)
        return ([current], "") if current is not None else ([], f"no release of {service} on record")
    newest: dict[str, Any] = {}
    for run in release_runs(limit=200):  # newest first: the first run of a service is its latest
        shown = newest.get(service_of(run))
        if shown is None or (in_progress(run) and not in_progress(shown)):
            newest[service_of(run)] = run
    going = sorted((r for r in newest.values() if in_progress(r)), key=service_of)
    if going:
        return going, ""
    if not newest:
        return [], "no release on record"
    return sorted(newest.values(), key=service_of), "no release in progress; the latest of each service:"


def _spec_of(run: Any) -> Any:
    from canaryflow.spec import validate_spec

    try:
        return validate_spec(run.parameters["spec"])
    except Exception:  # noqa: BLE001 - a run whose spec no longer validates still shows its state
        return None


def _log_lines(flow_run_id: str) -> list[tuple[str, datetime | None]]:
    """The run's newest log lines, newest first, with their times."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)])),
                                limit=LOG_LINES, sort=LogSort.TIMESTAMP_DESC)
    return [(log.message, log.timestamp) for log in logs]


def _run_weight(flow_run_id: str) -> int | None:
    """The weight the run last set, from its canary-weight progress artifact (``tasks.report.show_weight``)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]),
                                           type=ArtifactFilterType(any_=["progress"])),
            sort=ArtifactSort.UPDATED_DESC, limit=1)
    try:
        return int(round(float(artifacts[0].data))) if artifacts else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _with_operator(status: ReleaseStatus) -> ReleaseStatus:
    """A pause a person left for the run (``canaryflow.control``): it holds until ``resume``."""
    from dataclasses import replace

    from canaryflow import control

    try:
        command = control.read(status.run_id)
    except Exception:  # noqa: BLE001 - the command is a detail; the state and verdicts still show
        return status
    return replace(status, operator=command.describe()) if command is not None else status


# -- drawing -------------------------------------------------------------------------------------


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "-"
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s ago"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m ago"


def _steps_line(status: ReleaseStatus) -> Text:
    """``10% → [50%] → 100%``, the current step in brackets and bold."""
    step = status.step
    text = Text()
    for index, weight in enumerate(status.steps):
        if index:
            text.append(" → ", style="dim")
        current = step is not None and step[0] == index + 1
        text.append(f"[{weight}%]" if current else f"{weight}%", style="bold" if current else "dim")
    return text


def _weight_line(status: ReleaseStatus) -> Text:
    step = status.step
    n_steps = len(status.steps) if status.steps else "?"
    text = Text(f"step {step[0]}/{step[1]}" if step else f"step 0/{n_steps}", style="bold")
    if status.weight is not None:
        if status.in_progress or status.weight:
            text.append(f"   weight {status.weight}%", style="bold")
        else:
            text.append("   all traffic on stable", style="bold")
        if status.run_weight is not None and status.run_weight != status.weight and status.in_progress:
            text.append(f" (the run set {status.run_weight}%)", style="bold yellow")
    elif status.run_weight is not None and status.in_progress:
        text.append(f"   weight {status.run_weight}% (as the run set it)", style="yellow")
    if status.steps:
        text.append("   ")
        text.append_text(_steps_line(status))
    return text


def _verdict_table(verdicts: Sequence[MetricVerdict], now: datetime) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False, expand=False)
    for column in ("metric", "verdict", "weight", "when", "evidence"):
        table.add_column(column, justify="right" if column in ("weight", "when") else "left",
                         style="dim" if column in ("weight", "when") else None, overflow="fold",
                         no_wrap=column != "evidence")
    for v in verdicts:
        style = VERDICT_STYLE.get(Verdict(v.verdict), "")
        table.add_row(escape(v.metric), f"[{style}]{v.verdict}[/{style}]", f"{v.weight}%", _ago(v.at, now),
                      escape(v.detail.removeprefix(f"{v.metric}: ")))
    return table


def render_release(status: ReleaseStatus, now: datetime) -> Panel:
    """One release: versions, state, step and weight, each metric's latest verdict, the run's link."""
    state_style = STATE_STYLE.get(status.state_type, "")
    stable = status.stable_version or "?"
    going = status.in_progress
    title = Text.assemble((status.service, "bold"), (f"  {stable} → {status.version}" if going else
                                                     f"  {status.version}"),
                          f"  ({status.environment})  ", (status.state_name, state_style))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("run", Text.assemble(status.run_name, "  ", (status.state_name, state_style),
                                      f"  started {_ago(status.started, now)}",
                                      (f", ended {_ago(status.ended, now)}" if status.ended else "")))
    if going:
        canary = Text(status.version)
        if status.canary_problem:
            canary.append(f"  {status.canary_problem}", style="bold red")
        grid.add_row("versions", Text.assemble("stable ", (stable, "bold"), "   canary ", canary))
    else:
        grid.add_row("versions", Text.assemble("stable now ", (stable, "bold")))
    grid.add_row("traffic", _weight_line(status))
    if status.platform_error:
        grid.add_row("platform", Text(f"{status.platform} platform cannot be read: {status.platform_error}",
                                      style="yellow"))
    if status.operator:
        grid.add_row("operator", Text(status.operator, style="bold yellow"))
    if not status.in_progress and status.state_message:
        style = "green" if status.state_type == "COMPLETED" else "red"
        grid.add_row("outcome", Text(status.state_message, style=style))
    elif status.last_log:
        grid.add_row("last log", Text(status.last_log, overflow="ellipsis", no_wrap=True))
    parts: list[RenderableType] = [grid]
    if status.ui_url:  # a line of its own, so a narrow terminal does not break the link
        parts.append(Text(status.ui_url, style=f"link {status.ui_url}", overflow="fold"))
    if status.verdicts:
        parts += [Text(""), _verdict_table(status.verdicts, now)]
    elif status.in_progress:
        parts.append(Text("no analysis round yet", style="dim"))
    return Panel(Group(*parts), title=title, title_align="left", border_style=state_style or "white")


def render(snapshot: Snapshot, *, now: datetime | None = None) -> RenderableType:
    """The whole screen: one panel per release, then when it was read."""
    now = now or snapshot.taken
    parts: list[RenderableType] = []
    if snapshot.error:
        parts.append(Text(snapshot.error, style="bold red"))
    if snapshot.note:
        parts.append(Text(snapshot.note, style="dim" if snapshot.releases else "yellow"))
    parts += [render_release(r, now) for r in snapshot.releases]
    parts.append(Text(f"read at {snapshot.taken.astimezone().strftime('%H:%M:%S')}", style="dim"))
    return Group(*parts)
