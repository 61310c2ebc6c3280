"""Restore stable wherever a release's traffic lease ran out and no live run holds it.

A worker pod OOM-killed or evicted (SIGKILL) runs no crash hook, so on Kubernetes traffic would
stay split until a person noticed. Every release stamps its lease on the object carrying the split
(``canaryflow.kube.lease``); this module, run every minute by the ``canary-reconcile`` deployment
and by ``canaryflow reconcile``, finds the leased objects, asks Prefect whether the holder still
runs, and for each object ``decide`` says leave, restore or cannot tell.

Restoring is the release's own rollback (routes back to the recorded original, canary removed,
an interrupted promotion undone), after the reconciler *claims* the lease in a resourceVersion-
guarded write that re-reads and re-decides on a 409. So a reconcile racing a renewal is safe:
either the renewal lands first (the lease is fresh again and the reconciler leaves it), or the
claim lands first (the renewal re-reads, finds another holder, and the release aborts with
``LeaseLost`` instead of splitting traffic again). Nothing is done for a run Prefect cannot be
asked about (API unreachable): that is reported, never guessed.

On the local platform the controller expires its own lease; reconcile only reports its state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from canaryflow.errors import PlatformError
from canaryflow.judge import Reason
from canaryflow.kube.client import MERGE_PATCH, KubeApi, KubeNotFound
from canaryflow.kube.lease import (
    Holder,
    Lease,
    MalformedLease,
    current_holder,
    describe,
    has_lease,
    new_lease,
    read_lease,
    rfc3339,
    utcnow,
)

log = logging.getLogger(__name__)

#: The reason a reconciler's rollback is counted under (``deployment_rollback_total{reason=}``).
LEASE_EXPIRED = Reason.LEASE_EXPIRED.value
#: How long the reconciler's own claim lasts: if it dies mid-restore, the next pass finds it expired.
CLAIM_SECONDS = 120.0
#: Default: a run Prefect still calls live that has not renewed for this long is a zombie.
DEFAULT_STALE_AFTER = 600.0


class Liveness(StrEnum):
    LIVE = "live"  # Running, Pending, Paused (or Scheduled / Cancelling: it may still act)
    DEAD = "dead"  # terminal state, or no such flow run
    UNKNOWN = "unknown"  # the Prefect API could not be asked
    NO_RUN = "no_run"  # the holder ran outside any flow run: only the expiry can tell


class Action(StrEnum):
    LEAVE = "leave"
    RESTORE = "restore"
    CANNOT_TELL = "cannot_tell"


@dataclass(frozen=True)
class Verdict:
    action: Action
    why: str


def decide(lease: Lease | MalformedLease, *, now: datetime, liveness: Liveness, state: str = "",
           stale_after: float | None = DEFAULT_STALE_AFTER) -> Verdict:
    """The one decision per leased object. Precedence, first match wins:

    1. unreadable lease                                  -> cannot tell (a person must look)
    2. not expired                                       -> leave (a fresh lease is never touched)
    3. holder ran outside a flow run                     -> restore (expiry is all there is)
    4. Prefect could not be asked                        -> cannot tell (never guess a run dead)
    5. holder's run is terminal or gone                  -> restore
    6. run live, expired longer than ``stale_after``     -> restore (a SIGKILLed run stays Running
                                                            until a zombie automation marks it)
    7. run live                                          -> leave (late renewal of a live run)
    """
    if isinstance(lease, MalformedLease):
        return Verdict(Action.CANNOT_TELL, f"unreadable lease: {lease}")
    if not lease.expired(now):
        return Verdict(Action.LEAVE, f"lease fresh until {rfc3339(lease.expires)}")
    late = (now - lease.expires).total_seconds()
    expired = f"lease expired {late:.0f}s ago ({rfc3339(lease.expires)})"
    if liveness is Liveness.NO_RUN:
        return Verdict(Action.RESTORE, f"{expired}; its holder ran outside any flow run")
    if liveness is Liveness.UNKNOWN:
        return Verdict(Action.CANNOT_TELL, f"{expired}, but the Prefect API could not say whether flow run "
                                           f"{lease.holder.run_id} is alive; nothing done")
    if liveness is Liveness.DEAD:
        return Verdict(Action.RESTORE, f"{expired}; flow run {lease.holder.run_id} is {state or 'gone'}")
    if stale_after is not None and late > stale_after:
        return Verdict(Action.RESTORE, f"{expired}; flow run {lease.holder.run_id} is still {state or 'live'} "
                                       f"but has not renewed for over {stale_after:.0f}s (a zombie)")
    return Verdict(Action.LEAVE, f"{expired}, but flow run {lease.holder.run_id} is {state or 'live'}")


# -- asking Prefect --------------------------------------------------------------------------------

class RunStates(Protocol):
    def liveness(self, run_id: str) -> tuple[Liveness, str]:
        """Whether flow run ``run_id`` may still act, and its state's name for the report."""


LIVE_STATES = frozenset({"RUNNING", "PENDING", "PAUSED", "SCHEDULED", "CANCELLING"})
TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})


def liveness_of(state_type: str | None) -> Liveness:
    """Prefect state type -> liveness; a run with no state yet is about to start (live)."""
    if state_type is None or state_type in LIVE_STATES:
        return Liveness.LIVE
    if state_type in TERMINAL_STATES:
        return Liveness.DEAD
    return Liveness.UNKNOWN


class PrefectRunStates:
    """Flow run states from the Prefect API that ``PREFECT_API_URL`` names, one read per run id."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Liveness, str]] = {}
        self.reachable: bool | None = None
        self.problem = ""

    def _check(self, client: Any) -> bool:
        if self.reachable is None and not _api_url():
            # An ephemeral server would know no run and call every holder dead: never ask one.
            self.reachable, self.problem = False, "PREFECT_API_URL is not set (no server to ask about flow runs)"
        if self.reachable is None:
            error = client.api_healthcheck()
            self.reachable = error is None
            self.problem = "" if error is None else f"Prefect API unreachable ({type(error).__name__})"
        return self.reachable

    def liveness(self, run_id: str) -> tuple[Liveness, str]:
        if run_id in self._cache:
            return self._cache[run_id]
        from uuid import UUID

        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        try:
            UUID(run_id)
        except ValueError:
            return Liveness.DEAD, "not a flow run id"
        try:
            with get_client(sync_client=True) as client:
                if not self._check(client):
                    return Liveness.UNKNOWN, self.problem
                run = client.read_flow_run(UUID(run_id))
                answer = (liveness_of(run.state.type.value if run.state else None),
                          (run.state.name or run.state.type.value) if run.state else "without a state")
        except ObjectNotFound:
            answer = (Liveness.DEAD, "not found")
        except Exception as exc:  # connection refused, timeouts, 5xx: ask again next pass
            self.reachable, self.problem = False, f"Prefect API unreachable ({type(exc).__name__})"
            return Liveness.UNKNOWN, self.problem
        self._cache[run_id] = answer
        return answer


def _api_url() -> str | None:
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


# -- the cluster side ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kind:
    """A kind of object a lease can sit on, and how to read and patch it."""

    name: str
    group: str = ""
    version: str = ""
    plural: str = ""

    def list(self, api: KubeApi) -> list[dict[str, Any]]:
        if self.name == "deployment":
            return api.list_deployments()
        return api.list_custom(self.group, self.version, self.plural, self.name)

    def read(self, api: KubeApi, name: str) -> dict[str, Any]:
        if self.name == "deployment":
            return api.get_deployment(name)
        return api.get_custom(self.group, self.version, self.plural, self.name, name)

    def patch(self, api: KubeApi, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        if self.name == "deployment":
            return api.patch_deployment(name, patch, content_type=MERGE_PATCH)
        return api.patch_custom(self.group, self.version, self.plural, self.name, name, patch)


KINDS = (Kind("deployment"),
         Kind("virtualservice", "networking.istio.io", "v1beta1", "virtualservices"),
         Kind("httproute", "gateway.networking.k8s.io", "v1", "httproutes"))


@dataclass
class Outcome:
    """What reconcile found and did for one object (or why it could not look)."""

    namespace: str
    kind: str
    name: str
    action: Action
    why: str
    holder: str = ""
    restored: bool = False
    error: str = ""

    def line(self) -> str:
        done = "restored stable" if self.restored else self.action.value
        tail = f" — error: {self.error}" if self.error else ""
        return f"{self.namespace}/{self.kind}/{self.name}: {done}: {self.why}{tail}"


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def restored(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.restored]

    @property
    def failed(self) -> bool:
        return bool(self.problems) or any(o.error for o in self.outcomes)


class _Left(Exception):
    """The re-read lease no longer says restore: leave the object."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict


RecordRollback = Callable[[str, str], None]  # (service, environment)
RollbackFn = Callable[[KubeApi, dict[str, Any]], None]  # (api, release facts)


def release_facts(lease: Lease) -> dict[str, Any]:
    facts = lease.release
    if not facts.get("service") or not facts.get("version") or not isinstance(facts.get("target"), dict):
        raise MalformedLease("the lease names no release (service, version, target) to roll back")
    return facts


def platform_rollback(api: KubeApi, facts: dict[str, Any], **options: Any) -> None:
    """Roll back exactly as the release would: the same ``KubernetesPlatform.rollback``
    (``options``: its waits, e.g. ``poll_interval``)."""
    from canaryflow.kube.target import KubernetesTarget
    from canaryflow.platforms.kubernetes import KubernetesPlatform

    platform = KubernetesPlatform(api, service=facts["service"], version=facts["version"],
                                  target=KubernetesTarget.model_validate(facts["target"]),
                                  environment=facts.get("environment"), **options)
    platform.rollback()


class Reconciler:
    """One pass over the namespaces of ``apis`` (a ``KubeApi`` per namespace)."""

    def __init__(self, runs: RunStates, *, stale_after: float | None = DEFAULT_STALE_AFTER,
                 record_rollback: RecordRollback | None = None, rollback: RollbackFn = platform_rollback,
                 holder: Holder | None = None, now: Callable[[], datetime] = utcnow) -> None:
        self.runs = runs
        self.stale_after = stale_after
        self.record_rollback = record_rollback
        self.rollback = rollback
        self.holder = holder or current_holder()
        self.now = now

    def _verdict(self, lease: Lease | MalformedLease) -> Verdict:
        now = self.now()
        if isinstance(lease, MalformedLease) or not lease.expired(now):
            return decide(lease, now=now, liveness=Liveness.UNKNOWN)  # Prefect is not asked about these
        if lease.holder.run_id is None:
            return decide(lease, now=now, liveness=Liveness.NO_RUN)
        liveness, state = self.runs.liveness(lease.holder.run_id)
        return decide(lease, now=now, liveness=liveness, state=state, stale_after=self.stale_after)

    def run(self, apis: Iterable[KubeApi]) -> Report:
        report = Report()
        for api in apis:
            self._namespace(api, report)
        return report

    def _namespace(self, api: KubeApi, report: Report) -> None:
        for kind in KINDS:
            try:
                objects = kind.list(api)
            except KubeNotFound:  # the CRD is not installed: nothing of that kind to reconcile
                continue
            except PlatformError as exc:
                report.problems.append(f"{api.namespace}: cannot list {kind.plural or 'deployments'}: {exc}")
                continue
            for obj in objects:
                annotations = obj["metadata"].get("annotations") or {}
                if has_lease(annotations):
                    report.outcomes.append(self._object(api, kind, obj))

    def _object(self, api: KubeApi, kind: Kind, obj: dict[str, Any]) -> Outcome:
        name = obj["metadata"]["name"]
        lease = _parsed(obj)
        verdict = self._verdict(lease)
        outcome = Outcome(api.namespace, kind.name, name, verdict.action, verdict.why,
                          holder=describe(lease.holder) if isinstance(lease, Lease) else "")
        if verdict.action is not Action.RESTORE:
            return outcome
        try:
            facts = self._claim(api, kind, name)
        except _Left as left:
            outcome.action, outcome.why = left.verdict.action, f"re-read: {left.verdict.why}"
            return outcome
        except (MalformedLease, PlatformError) as exc:
            outcome.action, outcome.error = Action.CANNOT_TELL, str(exc)
            return outcome
        try:
            self.rollback(api, facts)
        except PlatformError as exc:  # the claim stays; it expires and the next pass tries again
            outcome.error = str(exc)
            log.error("reconcile: restoring %s/%s %s failed: %s", api.namespace, kind.name, name, exc)
            return outcome
        outcome.restored = True
        log.warning("reconcile: restored stable for %s/%s %s: %s", api.namespace, kind.name, name, verdict.why)
        if self.record_rollback is not None:
            self.record_rollback(str(facts["service"]), str(facts.get("environment") or "unknown"))
        return outcome

    def _claim(self, api: KubeApi, kind: Kind, name: str) -> dict[str, Any]:
        """Take the lease over in a guarded write, re-deciding on every re-read; the release's next
        renewal then finds another holder and aborts. Returns the release facts to roll back."""
        claimed: list[dict[str, Any]] = []

        def change(obj: dict[str, Any]) -> dict[str, Any]:
            if not has_lease(obj["metadata"].get("annotations")):
                raise _Left(Verdict(Action.LEAVE, "the lease is gone (its release finished meanwhile)"))
            lease = _parsed(obj)
            verdict = self._verdict(lease)
            if verdict.action is not Action.RESTORE or isinstance(lease, MalformedLease):
                raise _Left(verdict)
            facts = release_facts(lease)
            claim = new_lease(self.holder, CLAIM_SECONDS, facts, now=self.now())
            claimed[:] = [facts]
            return {"metadata": {"resourceVersion": obj["metadata"].get("resourceVersion"),
                                 "annotations": claim.annotations()}}

        api.update(lambda: kind.read(api, name), change, lambda _obj, patch: kind.patch(api, name, patch))
        return claimed[0]


def _parsed(obj: dict[str, Any]) -> Lease | MalformedLease:
    try:
        lease = read_lease(obj["metadata"].get("annotations"))
    except MalformedLease as exc:
        return exc
    if lease is None:
        return MalformedLease("no lease any more")
    return lease



# -- entry points (CLI and the canary-reconcile flow) ----------------------------------------------

def push_rollback(settings: Any) -> RecordRollback:
    """Count a reconciler rollback as ``deployment_rollback_total{reason="lease_expired"}`` and push it."""
    from canaryflow.pipeline_metrics import metrics_for

    def record(service: str, environment: str) -> None:
        metrics = metrics_for(service=service, environment=environment, pushgateway_url=settings.pushgateway_url,
                              metrics_port=settings.metrics_port)
        metrics.rollback(LEASE_EXPIRED)
        metrics.traffic(0)
        if not metrics.push():
            log.warning("reconcile: the rollback of %s was not pushed to the Pushgateway", service)

    return record


def reconcile_kubernetes(settings: Any, namespaces: Iterable[str], *, stale_after: float | None = DEFAULT_STALE_AFTER,
                         runs: RunStates | None = None, **api_options: Any) -> Report:
    """One pass over ``namespaces`` of the cluster the settings' kubeconfig (or service account) names."""
    from canaryflow.kube.client import api_client

    namespaces = list(dict.fromkeys(namespaces))
    if not namespaces:
        raise ValueError("reconcile needs at least one namespace (--namespace)")
    runs = runs if runs is not None else PrefectRunStates()
    client = api_client(kubeconfig=settings.kubeconfig, context=settings.kube_context,
                        in_cluster=settings.kube_in_cluster)
    try:
        apis = [KubeApi(client, namespace=ns, **api_options) for ns in namespaces]
        report = Reconciler(runs, stale_after=stale_after, record_rollback=push_rollback(settings)).run(apis)
    finally:
        client.close()
    if getattr(runs, "reachable", None) is False:
        report.problems.append(f"{runs.problem}: expired leases of flow runs were left as they are")  # type: ignore[attr-defined]
    return report


def reconcile_local(controller_url: str) -> Report:
    """The local controller expires its own lease (``canaryflow.local.routing``): report, change nothing."""
    import httpx

    report = Report()
    try:
        state = httpx.get(controller_url.rstrip("/") + "/-/state", timeout=10).raise_for_status().json()
    except (httpx.HTTPError, ValueError) as exc:
        report.problems.append(f"local controller at {controller_url} unreachable ({type(exc).__name__})")
        return report
    weight, expires = state.get("canary_weight", 0), state.get("lease_expires_at")
    if weight and expires:
        at = rfc3339(datetime.fromtimestamp(float(expires), tz=UTC))
        why = f"canary at {weight}%, lease expires at {at}; the controller returns users to stable itself"
    elif weight:
        why = f"canary at {weight}% with no lease (set without one); the controller will not revert it"
    else:
        why = "all traffic on stable"
    report.outcomes.append(Outcome("local", "controller", str(state.get("service") or controller_url),
                                   Action.LEAVE, why))
    return report

