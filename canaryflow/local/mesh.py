"""Several services behind one controller: routing by Host, one targets file, one poll loop.

A cluster's mesh routes each request to a service by its host name and a deployment controller
reconciles every service; here one controller process plays both for all the services of a stack.
Each service keeps its own :class:`~canaryflow.local.controller.Controller` (stable, canary,
weight, lease, incidents), so a release of one service can never move another's traffic. One
process rather than one per service: on two cores fifty services are fifty idle event loops and
fifty readiness pollers otherwise.

A stack of one service behaves exactly as before: every request and every unprefixed admin path
(``/-/state``) goes to it. With several, admin paths name the service
(``/-/services/<name>/state``) and user requests name it in their ``Host`` header
(``Host: payments`` or ``payments.<anything>``).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from canaryflow.local.controller import Controller, Track

POLL_INTERVAL_S = 0.2
#: A ready, living process is probed again only this often: its liveness is read from its exit
#: code every poll, and fifty services probed five times a second would take a core by themselves.
READY_REPROBE_S = 1.0


class UnknownService(LookupError):
    """An admin path or a Host that names no service of this platform."""


class AmbiguousService(LookupError):
    """An unprefixed admin path on a platform of several services: which one is meant?"""


class Mesh:
    """The services of one controller process, by name."""

    def __init__(self, controllers: list[Controller], *, targets_file: Path | None = None) -> None:
        if not controllers:
            raise ValueError("a mesh needs at least one service")
        self.services: dict[str, Controller] = {}
        for controller in controllers:
            if controller.service in self.services:
                raise ValueError(f"service {controller.service!r} is listed twice")
            self.services[controller.service] = controller
        self.targets_file = targets_file
        if targets_file is not None:  # one file for all: each controller would overwrite the others'
            for controller in controllers:
                controller.targets_sink = self.write_targets
        self._probed_at: dict[int, float] = {}

    @property
    def names(self) -> list[str]:
        return sorted(self.services)

    def get(self, service: str) -> Controller:
        try:
            return self.services[service]
        except KeyError:
            raise UnknownService(f"no service {service!r}; this platform runs: {', '.join(self.names)}") from None

    def only(self) -> Controller:
        """The one service, for the paths that name none (the single-service API)."""
        if len(self.services) == 1:
            return next(iter(self.services.values()))
        raise AmbiguousService(f"this platform runs {len(self.services)} services ({', '.join(self.names)}): "
                               "address one under /-/services/<name>/")

    def for_host(self, host: str | None) -> Controller:
        """The service a user request is for: its Host header, or the only service there is."""
        name = (host or "").rsplit(":", 1)[0].strip().lower() if host and not host.startswith("[") else ""
        for candidate in (name, name.split(".", 1)[0]):
            if candidate in self.services:
                return self.services[candidate]
        if len(self.services) == 1:
            return next(iter(self.services.values()))
        raise UnknownService(f"Host {host!r} names no service; this platform runs: {', '.join(self.names)}")

    def tracks(self) -> list[Track]:
        return [t for c in self.services.values() for t in c.tracks()]

    def overview(self) -> dict:
        """Every service at a glance (``GET /-/services``)."""
        def version(track: Track | None) -> str | None:
            return track.version if track is not None else None

        return {"services": {name: {"stable": version(c.stable), "canary": version(c.canary),
                                    "canary_weight": c.policy.weight}
                             for name, c in sorted(self.services.items())}}

    def write_targets(self) -> None:
        """Every service's target groups in one file_sd file, written atomically."""
        if self.targets_file is None:
            return
        groups = [g for c in self.services.values() for g in c.target_groups()]
        write_json_atomically(self.targets_file, groups)

    def shutdown(self) -> None:
        for controller in self.services.values():
            controller.shutdown()

    # -- the reconcile loop ------------------------------------------------

    def _due(self, track: Track, now: float) -> bool:
        if not track.ready:
            return True
        return now - self._probed_at.get(id(track), 0.0) >= READY_REPROBE_S

    async def _reconcile(self, client: httpx.AsyncClient, controller: Controller, track: Track,
                         now: float) -> None:
        if self._due(track, now) or not track.check_exit():
            self._probed_at[id(track)] = now
            await controller.refresh(client, track)
        else:
            await controller.sync_incident(client, track)

    async def poll_forever(self, client: httpx.AsyncClient) -> None:
        """Lease expiry, incident schedules and readiness of every child of every service."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            jobs: list[Coroutine[Any, Any, None]] = []
            for controller in self.services.values():
                controller.policy.expire_lease()
                jobs.extend(self._reconcile(client, controller, t, now) for t in controller.tracks())
            await asyncio.gather(*jobs)
            live = {id(t) for t in self.tracks()}
            self._probed_at = {k: v for k, v in self._probed_at.items() if k in live}
            await asyncio.sleep(POLL_INTERVAL_S)


def write_json_atomically(path: Path, document: object) -> None:
    """Temp file + rename: Prometheus never reads half a targets file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".targets-")
    with os.fdopen(fd, "w") as fh:
        json.dump(document, fh)
    os.replace(tmp, path)
