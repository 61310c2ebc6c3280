"""The ``canaryflow`` command line.

``release`` runs one canary release; ``demo`` shows a good and a bad release end to end on the
embedded local platform; ``local`` starts that platform on its own so any version of the
catalogue can be released by name. Exit codes: 0 promoted, 1 rolled back or failed, 2 bad input.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape

from canaryflow.errors import CanaryflowError, ConfigError
from canaryflow.spec import ReleaseSpec, load_spec
from canaryflow.waiting import WaitResult

app = typer.Typer(help="Canary releases as Prefect flows, judged by Prometheus.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
local_app = typer.Typer(help="The embedded local platform (real processes on 127.0.0.1).", no_args_is_help=True)
app.add_typer(local_app, name="local")
webhook_app = typer.Typer(help="The CI webhook receiver.", no_args_is_help=True)
app.add_typer(webhook_app, name="webhook")
automation_app = typer.Typer(help="Prefect automations on canaryflow's release events.", no_args_is_help=True)
app.add_typer(automation_app, name="automation")
console = Console()

DEMO_UI_PORT = 4200
DEMO_HOME = Path(os.environ.get("CANARYFLOW_HOME", Path.home() / ".canaryflow"))


def _steps(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter("steps are comma-separated integers, e.g. 10,50,100") from None


def run_release(spec: ReleaseSpec) -> tuple[bool, dict[str, Any], str | None]:
    """Run the flow in this process; returns (promoted, summary, flow run id)."""
    from prefect import tags
    from prefect.states import State

    from canaryflow.release import ReleaseRolledBack
    from canaryflow.retries import release_tags
    from flows.release import canary_release

    # Tags make runs findable in the UI (filter by service:checkout) from creation on; every run
    # sets the same ones itself when it starts (flows.release), however it was started.
    with tags(*release_tags([], service=spec.service, version=spec.version, environment=spec.environment.value)):
        state = canary_release(spec, return_state=True)
    if not isinstance(state, State):  # a flow called from synchronous code returns its final state
        raise TypeError(f"canary_release returned {type(state).__name__}, not a Prefect state")
    result = state.result(raise_on_failure=False)
    run_id = str(state.state_details.flow_run_id) if state.state_details.flow_run_id else None
    if isinstance(result, ReleaseRolledBack):
        return False, result.summary, run_id
    if isinstance(result, BaseException):
        raise result
    return True, result, run_id


SpecFile = Annotated[Path | None, typer.Option("--spec", "-f", help="Release spec (YAML, JSON or TOML).")]
Service = Annotated[str | None, typer.Option(help="Service to release.")]
Version = Annotated[str | None, typer.Option(help="New version.")]
EnvironmentName = Annotated[str | None, typer.Option(help="staging | production")]
PlatformName = Annotated[str | None, typer.Option(help="local | kubernetes")]
Steps = Annotated[str | None, typer.Option(help="Canary weights, e.g. 10,50,100.")]
Wait = Annotated[float | None, typer.Option(help="Seconds per step.")]
Interval = Annotated[float | None, typer.Option(help="Seconds between analysis rounds.")]
Window = Annotated[str | None, typer.Option(help="PromQL range window, e.g. 1m.")]
MinRequests = Annotated[int | None, typer.Option(help="Canary requests needed for a verdict.")]
MaxErrorRate = Annotated[float | None, typer.Option(help="Error-rate threshold, e.g. 0.001.")]
MaxP95 = Annotated[float | None, typer.Option(help="p95 latency threshold in ms.")]
WaitFlag = Annotated[bool, typer.Option("--wait", help="Block until the run ends; exit as `canaryflow wait` does.")]
WaitTimeout = Annotated[float, typer.Option(help="With --wait: give up after this many seconds (0: no limit); "
                                                 "exit 3.", min=0)]


def _spec_from_flags(spec_file: Path | None, *, service: str | None, version: str | None,
                     environment: str | None, platform: str | None, steps: str | None,
                     wait: float | None, interval: float | None, window: str | None,
                     min_requests: int | None, max_error_rate: float | None,
                     max_p95_ms: float | None) -> ReleaseSpec:
    """``release`` and ``plan`` read the same flags, so a plan shows exactly what a release would do."""
    thresholds = {k: v for k, v in (("max_error_rate", max_error_rate), ("max_p95_latency_ms", max_p95_ms))
                  if v is not None}
    return _load_or_exit(spec_file, {
        "service": service, "version": version, "environment": environment, "platform": platform,
        "steps": _steps(steps), "step_wait_seconds": wait, "analysis_interval_seconds": interval,
        "analysis_window": window, "min_canary_requests": min_requests, "thresholds": thresholds or None,
    })


@app.command()
def release(
    spec_file: SpecFile = None, service: Service = None, version: Version = None,
    environment: EnvironmentName = None, platform: PlatformName = None, steps: Steps = None, wait: Wait = None,
    interval: Interval = None, window: Window = None, min_requests: MinRequests = None,
    max_error_rate: MaxErrorRate = None, max_p95_ms: MaxP95 = None,
) -> None:
    """Release a new version: flags override CANARYFLOW_* variables, which override the spec file.
    Exit 0 promoted, 1 rolled back, 2 refused (never started: nothing changed), as `canaryflow wait`."""
    raise typer.Exit(int(_release_and_report(_spec_from_flags(**locals()))))


def _release_and_report(spec: ReleaseSpec) -> WaitResult:
    """Run the release here and print its summary; the exit code a pipeline branches on, the same
    as ``canaryflow wait`` gives for a run started elsewhere."""
    from canaryflow.report import print_summary

    try:
        promoted, summary, _ = run_release(spec)
    except CanaryflowError as exc:
        console.print(f"[red]refused, nothing was changed: {escape(str(exc))}[/red]")
        return WaitResult.REFUSED
    print_summary(console, summary)
    return WaitResult.PROMOTED if promoted else WaitResult.ROLLED_BACK


@contextmanager
def _bad_input_exits_2(*errors: type[Exception]) -> Iterator[None]:
    """Bad input (``ConfigError`` and any of ``errors``) prints one message and exits 2."""
    caught: tuple[type[Exception], ...] = (ConfigError, *errors)
    try:
        yield
    except caught as exc:
        message = exc.args[0] if isinstance(exc, KeyError) else exc  # str(KeyError) adds quotes
        console.print(f"[red]{escape(str(message))}[/red]")
        raise typer.Exit(2) from None


def _load_or_exit(spec_file: Path | None, overrides: dict[str, Any]) -> ReleaseSpec:
    """The spec, and the settings checked too: bad input exits 2 before any run exists."""
    from canaryflow.settings import get_settings

    with _bad_input_exits_2():
        spec = load_spec(spec_file, overrides=overrides)
        get_settings()
    return spec


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]{escape(str(exc))}[/red]")
    return typer.Exit(1)


@app.command()
def fleet(
    version: Annotated[str, typer.Option(help="The version every service goes to.")],
    services: Annotated[str, typer.Option(help="Comma-separated services, in release order.")],
    environment: Annotated[str, typer.Option(help="staging | production")] = "staging",
    waves: Annotated[str, typer.Option(help="Wave sizes: counts, percentages, 'rest'.")] = "1,25%,rest",
    max_concurrency: Annotated[int, typer.Option(help="Releases running at once.")] = 4,
    stop_on_rollback: Annotated[bool, typer.Option(help="A rollback stops what has not started.")] = True,
    deployment: Annotated[str, typer.Option(help="The fleet deployment.")] = "canary-fleet/fleet",
    wait: WaitFlag = False, timeout: WaitTimeout = 0,
) -> None:
    """Release one version to many services in waves: starts a run of the fleet deployment.
    With --wait: exit 0 every service promoted, 1 a service rolled back, 2 not every service went out."""
    from pydantic import ValidationError

    from canaryflow.fleet import FleetSpec

    with _bad_input_exits_2(ValidationError):
        spec = FleetSpec(version=version, environment=environment,
                         services=[s.strip() for s in services.split(",") if s.strip()],
                         waves=[w.strip() for w in waves.split(",") if w.strip()],
                         max_concurrency=max_concurrency, stop_on_rollback=stop_on_rollback)
    from prefect.deployments import run_deployment

    from canaryflow.prefect_sync import sync_result

    run = sync_result(run_deployment(deployment, parameters={"spec": spec.model_dump(mode="json")}, timeout=0),
                      "run_deployment")
    console.print(f"fleet run {run.name} ({run.id}) started for {len(spec.services)} services")
    if wait:
        _wait_and_exit(run, timeout=timeout)


@app.command()
def plan(
    spec_file: SpecFile = None, service: Service = None, version: Version = None,
    environment: EnvironmentName = None, platform: PlatformName = None, steps: Steps = None, wait: Wait = None,
    interval: Interval = None, window: Window = None, min_requests: MinRequests = None,
    max_error_rate: MaxErrorRate = None, max_p95_ms: MaxP95 = None,
) -> None:
    """Print what `release` with the same flags would do (steps, waits, thresholds, queries); changes nothing."""
    spec = _spec_from_flags(**locals())  # first: locals() is exactly the flags here
    from canaryflow.report import print_plan

    print_plan(console, spec)


class RollbackReason(StrEnum):
    MANUAL = "manual"
    ALERT = "alert"


@app.command()
def rollback(
    service: Annotated[str | None,
                       typer.Argument(help="Service to roll back (its last release's spec is used).")] = None,
    spec_file: Annotated[Path | None,
                         typer.Option("--spec", "-f", help="Spec naming the service and platform.")] = None,
    reason: Annotated[RollbackReason, typer.Option(help="Counted under this reason.")] = RollbackReason.MANUAL,
    detail: Annotated[str, typer.Option(help="Why, for the run log.")] = "",
) -> None:
    """Put all traffic back on stable now and remove the canary (cancels the service's running release)."""
    from canaryflow.operate import latest_release
    from flows.rollback import canary_rollback

    if spec_file is None and service is None:
        raise typer.BadParameter("give a SERVICE or --spec")
    if spec_file is not None:
        spec = _load_or_exit(spec_file, {"service": service})
    else:
        assert service is not None  # one of the two, checked above
        last = latest_release(service)
        if last is None:
            console.print(f"[red]no release of {escape(service)} on record; pass --spec[/red]")
            raise typer.Exit(1)
        spec = _load_or_exit(None, last.parameters["spec"])
    try:
        why: Literal["manual", "alert"] = "alert" if reason is RollbackReason.ALERT else "manual"
        result = canary_rollback(spec, reason=why, detail=detail)
    except CanaryflowError as exc:
        raise _fail(exc) from None
    if not result.get("rolled_back", True):
        stopped = ", ".join(result["cancelled"])
        console.print(f"{result['service']} runs {result['stable_version']} with no canary: "
                      + (f"the release rolled back itself (stopped: {stopped})" if stopped else
                         "nothing to roll back"), soft_wrap=True)
        return
    console.print(f"rolled back {result['service']}; stable is {result['stable_version']}; "
                  f"stopped: {', '.join(result['cancelled']) or 'nothing in progress'}", soft_wrap=True)


@app.command()
def reconcile(
    namespace: Annotated[list[str], typer.Option("--namespace", "-n", help="Namespace to reconcile (repeat).")] = [],  # noqa: B006
    platform: Annotated[str, typer.Option(help="kubernetes | local")] = "kubernetes",
    stale_after: Annotated[float | None, typer.Option(
        help="Seconds an expired lease of a run Prefect calls live is trusted (a SIGKILLed run stays Running).",
    )] = 600.0,
) -> None:
    """Restore stable wherever a release's traffic lease expired and no live run holds it."""
    from canaryflow.reconcile import reconcile_kubernetes, reconcile_local
    from canaryflow.settings import get_settings

    if platform not in ("kubernetes", "local"):
        raise typer.BadParameter(f"unknown platform {platform!r}; known: kubernetes, local", param_hint="--platform")
    try:
        settings = get_settings()
        report = (reconcile_local(settings.local_controller_url) if platform == "local"
                  else reconcile_kubernetes(settings, namespace, stale_after=stale_after))
    except (CanaryflowError, ValueError) as exc:
        raise _fail(exc) from None
    for line in [o.line() for o in report.outcomes] or ["no object carries a canaryflow lease"]:
        console.print(escape(line))
    for problem in report.problems:
        console.print(f"[red]{escape(problem)}[/red]")
    raise typer.Exit(1 if report.failed else 0)


@app.command()
def retry(
    flow_run_id: Annotated[str, typer.Argument(help="The aborted release's flow run id.")],
    at: Annotated[str, typer.Option("--at", help="When: now, +10m, 90s or an ISO 8601 time.")] = "now",
    wait: WaitFlag = False, timeout: WaitTimeout = 0,
) -> None:
    """Schedule the release of FLOW_RUN_ID again, as a new run of its deployment, at a given time.
    With --wait: block until that release ends, with `canaryflow wait`'s exit codes."""
    from canaryflow.operate import parse_when, schedule_retry_at

    try:
        scheduled = schedule_retry_at(flow_run_id, parse_when(at))
    except CanaryflowError as exc:
        raise _fail(exc) from None
    console.print(f"scheduled flow run {scheduled.id} at {scheduled.expected_start_time} "
                  f"(attempt {scheduled.parameters['attempt']})")
    if wait:
        _wait_and_exit(scheduled, timeout=timeout)


def _answer(flow_run_id: str, approved: bool, reason: str, by: str) -> None:
    from canaryflow.operate import answer_approval

    try:
        answer_approval(flow_run_id, approved=approved, reason=reason, by=by)
    except CanaryflowError as exc:
        raise _fail(exc) from None
    console.print(f"{'approved' if approved else 'rejected'} flow run {flow_run_id}")


@app.command()
def approve(
    flow_run_id: Annotated[str, typer.Argument(help="The release waiting at its approval gate.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the run's summary).")] = "",
    by: Annotated[str, typer.Option(help="Who approves.")] = os.environ.get("USER", ""),
) -> None:
    """Let a paused release go on to its last step."""
    _answer(flow_run_id, True, reason, by)


@app.command()
def reject(
    flow_run_id: Annotated[str, typer.Argument(help="The release waiting at its approval gate.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the run's summary).")] = "",
    by: Annotated[str, typer.Option(help="Who rejects.")] = os.environ.get("USER", ""),
) -> None:
    """Roll a paused release back (reason manual)."""
    _answer(flow_run_id, False, reason, by)


def _command(verb_name: str, service: str, reason: str, by: str | None, wait: float) -> None:
    """Leave a person's command for the service's running release, then (promote, abort) wait for
    the outcome it leads to and print it in one line; exit 1 if the run did not end in time."""
    from canaryflow import control

    verb = control.Verb(verb_name)
    command = control.OperatorCommand(verb, control.operator_identity(by), reason)
    try:
        run = control.running_release(service)
        control.send(str(run.id), command)
    except CanaryflowError as exc:
        raise _fail(exc) from None
    console.print(f"{verb.value} sent to {run.name} ({run.id}): {escape(command.describe())}", soft_wrap=True)
    if verb not in control.ENDS_THE_RUN or wait <= 0:
        return
    ended = control.wait_for_end(str(run.id), timeout=wait)
    if ended is None:
        console.print(f"[red]{run.name} has not ended after {wait:.0f}s; it acts on commands at its next "
                      "analysis round[/red]")
        raise typer.Exit(1)
    state = ended.state
    console.print(f"{run.name}: {state.name}: {escape(state.message or '')}", soft_wrap=True)


Reason_ = Annotated[str, typer.Option("--reason", help="Why (kept in the run's log and summary).")]
By = Annotated[str | None, typer.Option(help="Who (default: user@host).")]
WaitEnd = Annotated[float, typer.Option("--timeout", help="Seconds to wait for the run to end (0: do not wait).")]
ServiceArg = Annotated[str, typer.Argument(help="The service whose running release to act on.")]


@app.command()
def promote(service: ServiceArg, reason: Reason_ = "", by: By = None, timeout: WaitEnd = 120) -> None:
    """Promote the running release now, skipping its remaining steps (never past a measured FAIL)."""
    _command("promote", service, reason, by, timeout)


@app.command()
def abort(service: ServiceArg, reason: Reason_ = "", by: By = None, timeout: WaitEnd = 120) -> None:
    """Roll the running release back now (reason manual)."""
    _command("abort", service, reason, by, timeout)


@app.command()
def pause(service: ServiceArg, reason: Reason_ = "", by: By = None) -> None:
    """Hold the running release at its current weight until `resume` (it still rolls back on a FAIL)."""
    _command("pause", service, reason, by, 0)


@app.command()
def resume(service: ServiceArg, reason: Reason_ = "", by: By = None) -> None:
    """Let a paused release go on."""
    _command("resume", service, reason, by, 0)


def _prefect_api_or_exit(code: int = 1) -> None:
    """Commands that only read the Prefect server need one named: without ``PREFECT_API_URL``
    Prefect would start an empty server of its own in this process and find nothing there."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        console.print("[red]PREFECT_API_URL is not set: point it at the Prefect server the releases run on[/red]")
        raise typer.Exit(code)


@app.command()
def status(
    service: Annotated[str | None, typer.Argument(help="The service (default: every service with a release "
                                                           "in progress, else the latest release of each).")] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Keep the screen up to date until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between reads with --watch.", min=0.5)] = 1.5,
    until_done: Annotated[bool, typer.Option("--until-done",
                                             help="With --watch: stop once every release shown has ended.")] = False,
) -> None:
    """Show each release: versions, step and weight, each metric's latest verdict with its numbers, the run's link."""
    from rich.live import Live

    from canaryflow.status import StatusReader, render

    _prefect_api_or_exit()
    with StatusReader() as reader:
        if not watch:
            snapshot = reader.snapshot(service)
            console.print(render(snapshot))
            raise typer.Exit(1 if snapshot.error or not snapshot.releases else 0)
        try:
            with Live(render(reader.snapshot(service)), console=console, auto_refresh=False,
                      vertical_overflow="visible") as live:
                while True:
                    time.sleep(interval)
                    snapshot = reader.snapshot(service)
                    live.update(render(snapshot), refresh=True)
                    if until_done and snapshot.settled:
                        break
        except KeyboardInterrupt:  # Ctrl-C is how a watch ends: the last screen stays, no traceback
            pass


@app.command()
def wait(
    run_or_service: Annotated[str, typer.Argument(help="A release's flow run id, or a service (its release in "
                                                        "progress, else its latest).")],
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds (0: wait as long as it takes).",
                                           min=0)] = 0,
) -> None:
    """Block until the release ends; print its outcome in one line. Exit 0 promoted, 1 rolled back,
    2 refused (never started: nothing changed), 3 still running at --timeout, 4 crashed or
    cancelled, 5 no such release or the Prefect API cannot be read."""
    from canaryflow.waiting import find_run

    _prefect_api_or_exit(WaitResult.NOT_FOUND)
    try:
        run = find_run(run_or_service)
    except Exception as exc:  # noqa: BLE001 - no run, or no server: either way nothing to wait for
        console.print(f"[red]{escape(str(exc) or type(exc).__name__)}[/red]", soft_wrap=True)
        raise typer.Exit(WaitResult.NOT_FOUND) from None
    _wait_and_exit(run, timeout=timeout)


def _wait_and_exit(run: Any, *, timeout: float) -> None:
    """Block until ``run`` ends, print its outcome in one line and exit with its code (``WaitResult``)."""
    from canaryflow.waiting import wait_for

    result, line = wait_for(run, timeout=timeout)
    style = {WaitResult.PROMOTED: "green", WaitResult.TIMEOUT: "yellow"}.get(result, "red")
    console.print(f"[{style}]{escape(line)}[/{style}]", soft_wrap=True)
    raise typer.Exit(int(result))


@webhook_app.command("serve")
def webhook_serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8088,
) -> None:
    """Receive signed CI webhooks (GitHub, GitLab, generic) and start release runs; Alertmanager
    notifications of firing canary alerts start rollback runs."""
    from canaryflow.webhook import serve

    with _bad_input_exits_2():  # secrets, base spec and settings are checked before the port opens
        serve(host=host, port=port)


@automation_app.command("install")
def automation_install(
    webhook_url: Annotated[str, typer.Option(help="Where the notification is POSTed (e.g. a Slack incoming webhook).")],
    allow_private_urls: Annotated[bool,
                                  typer.Option(help="Let the server call a private or loopback address.")] = False,
) -> None:
    """Create (or replace) the automation that notifies a webhook when a release rolls back."""
    from canaryflow.automations import install

    with _bad_input_exits_2():
        automation_id = install(webhook_url, allow_private_urls=allow_private_urls)
    console.print(f"automation canaryflow-release-rolled-back installed ({automation_id})")


@local_app.command("versions")
def local_versions(catalog: Annotated[Path | None, typer.Option(help="Version catalogue file.")] = None) -> None:
    """List the versions of the catalogue and how each behaves."""
    from rich.table import Table

    from canaryflow.local.catalog import load_catalog

    cat = load_catalog(catalog)
    table = Table(title=f"versions of {escape(cat.service)}")
    for column in ("version", "errors", "p50", "p95", "also"):
        table.add_column(column, justify="right" if column in ("errors", "p50", "p95") else "left")
    for name in cat.names:
        table.add_row(*version_row(name, cat.version(name)))
    console.print(table)


def version_row(name: str, version: Any) -> tuple[str, str, str, str, str]:
    """One line of ``local versions``: the error rate, the latency quantiles, and what else differs."""
    latency = version.latency_ms
    also = []
    if version.slow is not None:
        also.append(f"{version.slow.fraction:.0%} of requests +{version.slow.extra_ms:g} ms")
    also += [f"{path} answers {fault.status}" + (f" in {fault.latency_ms:g} ms" if fault.latency_ms is not None else "")
             for path, fault in version.faults.items()]
    if version.readiness_delay_s:
        also.append(f"ready after {version.readiness_delay_s:g} s")
    if version.crash_on_start:
        also.append("crashes on start")
    if version.crash_after_s is not None:
        also.append(f"exits {version.crash_after_s:g} s after start")
    return (escape(name), f"{version.error_rate:.2%}",
            f"{latency.p50:g} ms" if latency is not None else "default",
            f"{latency.p95:g} ms" if latency is not None else "default",
            escape("; ".join(also)))


@local_app.command("up")
def local_up(
    stable: Annotated[str, typer.Option(help="Version running as stable.")] = "v1",
    rps: Annotated[float, typer.Option(help="Load generator requests per second.")] = 50,
    catalog: Annotated[Path | None, typer.Option(help="Version catalogue file.")] = None,
    duration: Annotated[float, typer.Option(help="Stop by itself after this many seconds.")] = 3600,
) -> None:
    """Run the local platform until Ctrl-C; prints the variables that point releases at it."""
    from canaryflow.local.stack import LocalStack

    # Ctrl-C (or SIGTERM) only sets a flag: it may arrive at any line, even while the stack is
    # still starting or printing, and the stack must always stop in order and exit 0.
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with LocalStack(stable=stable, rps=rps, catalog=catalog, load_duration=duration) as stack:
            console.print("[green]local platform up[/green]; in another shell:")
            for name, value in stack.settings_env().items():
                console.print(f"  export {name}={value}")
            console.print("  canaryflow release --service checkout --version v2 --wait 10 --interval 2 --window 15s")
            stop.wait(duration)
            console.print("stopping")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _point_at(stack: Any) -> None:
    from canaryflow.settings import get_settings

    os.environ.update(stack.settings_env())
    get_settings.cache_clear()


#: The demo's traffic is random (errors drawn per request, 0.1 % noise on v1 and v2) but seeded, so
#: the README's walk-through reads the same on every machine; ``--seed 0`` draws afresh.
DEMO_SEED = 1


def demo_spec(version: str, *, wait: float, interval: float, environment: str = "staging") -> ReleaseSpec:
    """Short waits for the embedded platform; ``CANARYFLOW_*`` variables of another setup are ignored."""
    return load_spec(overrides={
        "service": "checkout", "version": version, "environment": environment, "step_wait_seconds": wait,
        "analysis_interval_seconds": interval, "analysis_window": "15s", "min_canary_requests": 150,
        "max_hold_seconds": 30, "ready_timeout_seconds": 20,
    }, use_env=False)


@local_app.command("release")
def local_release(
    version: Annotated[str, typer.Argument(help="A version name from the catalogue, e.g. v3-slow.")],
    stable: Annotated[str, typer.Option(help="Version running as stable.")] = "v1",
    catalog: Annotated[Path | None, typer.Option(help="Version catalogue file.")] = None,
    wait: Annotated[float, typer.Option(help="Seconds per step.")] = 8,
    interval: Annotated[float, typer.Option(help="Seconds between analysis rounds.")] = 1,
    environment: Annotated[str, typer.Option(help="staging | production (its default thresholds apply)")] = "staging",
) -> None:
    """Start the local platform, release VERSION with short waits, report, and stop everything."""
    from canaryflow.local.catalog import CatalogError, UnknownVersionError, load_catalog
    from canaryflow.local.stack import LocalStack
    from canaryflow.settings import load_settings

    with _bad_input_exits_2(CatalogError, UnknownVersionError):  # a typo starts nothing
        spec = demo_spec(version, wait=wait, interval=interval, environment=environment)
        load_catalog(catalog).version(version)
        load_settings()
    with LocalStack(stable=stable, rps=100, catalog=catalog) as stack:
        _point_at(stack)
        result = _release_and_report(spec)
    raise typer.Exit(int(result))


def _ensure_prefect_ui() -> str:
    """Use PREFECT_API_URL if set; else the UI on 127.0.0.1:4200, started (and left running) if needed."""
    import httpx

    from canaryflow.prefect_server import PrefectServer

    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"].removesuffix("/api")
    ui = f"http://127.0.0.1:{DEMO_UI_PORT}"
    try:
        httpx.get(f"{ui}/api/health", timeout=2).raise_for_status()
    except httpx.HTTPError:
        console.print(f"[dim]starting the Prefect server and UI on {ui} ...[/dim]")
        PrefectServer(port=DEMO_UI_PORT, home=DEMO_HOME / "prefect", detached=True).start()
    os.environ["PREFECT_API_URL"] = f"{ui}/api"
    return ui


@app.command()
def demo(
    wait: Annotated[float, typer.Option(help="Seconds per canary step.")] = 8,
    interval: Annotated[float, typer.Option(help="Seconds between analysis rounds.")] = 1,
    seed: Annotated[int | None, typer.Option(help="Seed of the platform's random errors, latencies and routing "
                                                     "(0: fresh randomness every run).")] = DEMO_SEED,
) -> None:
    """Release a healthy version (promoted), then a bad one (rolled back), on the local platform."""
    from canaryflow.local.stack import LocalStack
    from canaryflow.report import print_summary
    from canaryflow.settings import load_settings

    with _bad_input_exits_2():  # the local platform sets the endpoints; a misspelt variable is still refused
        load_settings()
    started = time.monotonic()
    ui = _ensure_prefect_ui()
    from prefect.settings import PREFECT_API_URL, temporary_settings

    results = []
    with temporary_settings(updates={PREFECT_API_URL: f"{ui}/api"}):
        console.rule("starting the local platform: Prometheus, Pushgateway, proxy, checkout v1, load")
        with LocalStack(stable="v1", rps=100, seed=seed or None) as stack:
            _point_at(stack)
            for version, expect in (("v2", "healthy: should be promoted"),
                                    ("v3-errors", "5% errors: should roll back")):
                console.rule(f"release checkout {version} ({expect})")
                results.append((version, *run_release(demo_spec(version, wait=wait, interval=interval))))
    console.rule("summary")
    for _version, _promoted, summary, run_id in results:
        print_summary(console, summary)
        if run_id:
            console.print(f"  Prefect UI: {ui}/runs/flow-run/{run_id}\n", soft_wrap=True)
    command = sys.argv[0] if sys.argv[0].endswith("canaryflow") else "canaryflow"
    console.print(f"demo finished in {time.monotonic() - started:.0f}s; the Prefect UI stays up at {ui} "
                  f"(stop it with: {command} ui-stop)", soft_wrap=True)
    expected = [True, False]
    if [promoted for _, promoted, _, _ in results] != expected:
        console.print("[red]the demo did not end as expected[/red]")
        raise typer.Exit(1)


@app.command("ui-stop")
def ui_stop() -> None:
    """Stop the Prefect server the demo left running."""
    import signal

    from canaryflow.prefect_server import PrefectServer

    pid_file = PrefectServer.pid_file_in(DEMO_HOME / "prefect")
    if not pid_file.exists():
        console.print("no Prefect server started by the demo")
        return
    pid = int(pid_file.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
        console.print(f"stopped the Prefect server (pid {pid})")
    except ProcessLookupError:
        console.print("the Prefect server was not running")
    pid_file.unlink()

