"""Starting release runs: the protocol the receiver talks to, and its Prefect implementation.

:class:`PrefectRunStarter` creates a flow run from a deployment through the Prefect API with the
delivery's idempotency key: the server returns the existing run for a key it has seen (HTTP 200)
and creates one otherwise (HTTP 201), which is how a redelivery is told apart from a new request.
Runs are created ``Scheduled``; a worker on the deployment's pool executes them.

:class:`InMemoryStarter` keeps runs in a dict with the same semantics, for benchmarks of the
receiver alone and for tests of the HTTP layer.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from canaryflow.webhook.status import RunSeen


@dataclass(frozen=True)
class StartRequest:
    deployment: str  # "<flow name>/<deployment name>"
    parameters: dict[str, Any]
    idempotency_key: str
    tags: tuple[str, ...]
    run_name: str | None = None


@dataclass(frozen=True)
class StartedRun:
    flow_run_id: str
    flow_run_name: str | None
    duplicate: bool
    ui_url: str | None = None


class DeploymentNotFound(LookupError):
    """No deployment of that name: the request's environment has nowhere to run."""


class RunRejected(ValueError):
    """The orchestrator refused the run's parameters (they do not fit the deployment's schema)."""


class StarterUnavailable(RuntimeError):
    """The orchestrator could not be reached or refused for a reason of its own (retry later)."""


class RunStarter(Protocol):
    async def start(self, request: StartRequest) -> StartedRun: ...


class DeploymentLookup(Protocol):
    async def has_deployment(self, name: str) -> bool:
        """Whether ``"<flow name>/<deployment name>"`` exists (a fleet's children need theirs)."""
        ...


class ReleaseLookup(Protocol):
    async def latest_release_spec(self, service: str, environment: str) -> dict[str, Any] | None:
        """The spec of the most recent ``release/<service>/<version>/<environment>`` run, or None."""
        ...


#: How many of a service's most recent release runs are searched for one in the environment.
RELEASE_SEARCH_LIMIT = 50


def release_spec_of(run_name: str, parameters: dict[str, Any], service: str, environment: str) -> dict[str, Any] | None:
    """The run's spec when the run is a release of ``service`` in ``environment``, else None."""
    spec = parameters.get("spec") if isinstance(parameters, dict) else None
    if not (run_name.startswith(f"release/{service}/") and run_name.endswith(f"/{environment}")
            and isinstance(spec, dict)):
        return None
    if spec.get("service", service) != service or spec.get("environment", environment) != environment:
        return None
    return {**spec, "service": service, "environment": environment}


def ui_url_for(flow_run_id: str) -> str | None:
    """``PREFECT_UI_URL`` (which Prefect derives from ``PREFECT_API_URL`` when unset)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    base = PREFECT_UI_URL.value()
    if not base:
        api = PREFECT_API_URL.value()
        base = api[: -len("/api")] if api and api.rstrip("/").endswith("/api") else api
    return f"{base.rstrip('/')}/runs/flow-run/{flow_run_id}" if base else None


class PrefectRunStarter:
    """Creates runs through the Prefect API that ``PREFECT_API_URL`` names.

    One API client is kept per event loop (creating one costs tens of milliseconds of CPU: TLS
    context, connection pool); :meth:`aclose` releases it when the app shuts down.
    """

    def __init__(self, *, deployment_cache_seconds: float = 30.0) -> None:
        self._cache: dict[str, tuple[str, float]] = {}
        self._cache_seconds = deployment_cache_seconds
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening = asyncio.Lock()

    async def _api(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        from prefect.client.orchestration import get_client

        if self._loop is not loop:
            self._opening, self._client = asyncio.Lock(), None  # a client is bound to its loop
        async with self._opening:
            if self._client is None:
                client = get_client()
                await client.__aenter__()
                self._client, self._loop = client, loop
        return self._client

    async def aclose(self) -> None:
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.__aexit__(None, None, None)

    async def _deployment_id(self, client: Any, name: str) -> str:
        cached = self._cache.get(name)
        if cached and time.monotonic() - cached[1] < self._cache_seconds:
            return cached[0]
        from prefect.exceptions import ObjectNotFound

        try:
            deployment = await client.read_deployment_by_name(name)
        except ObjectNotFound:
            raise DeploymentNotFound(name) from None
        self._cache[name] = (str(deployment.id), time.monotonic())
        return str(deployment.id)

    async def has_deployment(self, name: str) -> bool:
        import httpx
        from prefect.exceptions import PrefectHTTPStatusError

        try:
            await self._deployment_id(await self._api(), name)
        except DeploymentNotFound:
            return False
        except PrefectHTTPStatusError as exc:
            raise StarterUnavailable(f"Prefect API answered {exc.response.status_code}") from None
        except (httpx.HTTPError, OSError) as exc:
            raise StarterUnavailable(f"Prefect API unreachable ({type(exc).__name__})") from None
        return True

    async def start(self, request: StartRequest) -> StartedRun:
        import httpx
        from prefect.client.schemas.actions import DeploymentFlowRunCreate
        from prefect.client.schemas.objects import FlowRun
        from prefect.exceptions import PrefectHTTPStatusError
        from prefect.states import Scheduled, to_state_create

        body = DeploymentFlowRunCreate(
            parameters=request.parameters, state=to_state_create(Scheduled()), tags=list(request.tags),
            name=request.run_name, idempotency_key=request.idempotency_key,
        ).model_dump(mode="json", exclude_unset=True)
        try:
            client = await self._api()
            deployment_id = await self._deployment_id(client, request.deployment)
            try:
                # The same call as create_flow_run_from_deployment, keeping the status code:
                # 201 = created now, 200 = an existing run with this idempotency key.
                response = await client.request("POST", "/deployments/{id}/create_flow_run",
                                                path_params={"id": deployment_id}, json=body)
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code == 404:
                    self._cache.pop(request.deployment, None)
                    raise DeploymentNotFound(request.deployment) from None
                if exc.response.status_code in (409, 422):
                    raise RunRejected("the deployment refused the run parameters") from None
                raise StarterUnavailable(f"Prefect API answered {exc.response.status_code}") from None
        except (httpx.HTTPError, OSError) as exc:
            raise StarterUnavailable(f"Prefect API unreachable ({type(exc).__name__})") from None
        run = FlowRun.model_validate(response.json())
        return StartedRun(flow_run_id=str(run.id), flow_run_name=run.name,
                          duplicate=response.status_code == 200, ui_url=ui_url_for(str(run.id)))

    async def run_status(self, flow_run_id: str) -> RunSeen | None:
        """The run's name and current state; None when the server has no such run."""
        import httpx
        from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

        try:
            client = await self._api()
            run = await client.read_flow_run(uuid.UUID(flow_run_id))
        except ObjectNotFound:
            return None
        except PrefectHTTPStatusError as exc:
            raise StarterUnavailable(f"Prefect API answered {exc.response.status_code}") from None
        except (httpx.HTTPError, OSError) as exc:
            raise StarterUnavailable(f"Prefect API unreachable ({type(exc).__name__})") from None
        return RunSeen(name=run.name, state=run.state, ui_url=ui_url_for(flow_run_id))

    async def latest_release_spec(self, service: str, environment: str) -> dict[str, Any] | None:
        """Like :func:`canaryflow.operate.latest_release`, narrowed to the environment."""
        import httpx
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
        from prefect.client.schemas.sorting import FlowRunSort
        from prefect.exceptions import PrefectHTTPStatusError

        try:
            client = await self._api()
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=f"release/{service}/")),
                sort=FlowRunSort.START_TIME_DESC, limit=RELEASE_SEARCH_LIMIT)
        except PrefectHTTPStatusError as exc:
            raise StarterUnavailable(f"Prefect API answered {exc.response.status_code}") from None
        except (httpx.HTTPError, OSError) as exc:
            raise StarterUnavailable(f"Prefect API unreachable ({type(exc).__name__})") from None
        for run in runs:
            spec = release_spec_of(run.name, run.parameters, service, environment)
            if spec is not None:
                return spec
        return None


@dataclass
class InMemoryStarter:
    """Same semantics as the Prefect starter, no I/O: one run per idempotency key."""

    deployments: tuple[str, ...] | None = None  # None: every deployment name exists
    delay_seconds: float = 0.0
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    releases: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (service, env) -> spec

    async def latest_release_spec(self, service: str, environment: str) -> dict[str, Any] | None:
        spec = self.releases.get((service, environment))
        return dict(spec) if spec is not None else None

    async def has_deployment(self, name: str) -> bool:
        return self.deployments is None or name in self.deployments

    async def run_status(self, flow_run_id: str) -> RunSeen | None:
        """A run this starter created, in the state a test gave it (``end``), else Scheduled."""
        for run in self.runs.values():
            if run["id"] == flow_run_id:
                return RunSeen(name=run["name"], state=run.get("state") or _scheduled())
        return None

    def end(self, flow_run_id: str, state: Any) -> None:
        """Give a run its (final) state, as a worker executing it would."""
        for run in self.runs.values():
            if run["id"] == flow_run_id:
                run["state"] = state
                return
        raise KeyError(flow_run_id)

    async def start(self, request: StartRequest) -> StartedRun:
        if self.deployments is not None and request.deployment not in self.deployments:
            raise DeploymentNotFound(request.deployment)
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        existing = self.runs.get(request.idempotency_key)
        if existing is not None:
            return StartedRun(str(existing["id"]), str(existing["name"]), duplicate=True)
        run_id = str(uuid.uuid4())
        self.runs[request.idempotency_key] = {"id": run_id, "name": request.run_name, "request": request}
        return StartedRun(run_id, request.run_name, duplicate=False)


def _scheduled() -> Any:
    from prefect.states import Scheduled

    return Scheduled()
