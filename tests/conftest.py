"""Shared fixtures: one real Prefect server per test session, started only when a test needs it.

Two servers exist, each started on first use: ``prefect_server`` on SQLite (the embedded default,
as the demo runs) and ``prefect_server_on_postgresql``, on a throwaway PostgreSQL cluster, as a
platform team runs it. A test module that must run on PostgreSQL says so by overriding the name with one line::

    prefect_server = on_postgresql()

For such a module this process's Prefect client (and its event and log workers) talks to the
PostgreSQL-backed server, and to the SQLite one again after it, so two servers never mix in one run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from canaryflow.local.postgres import PostgresCluster
from canaryflow.prefect_server import PrefectServer
from canaryflow.settings import get_settings


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with PrefectServer(home=tmp_path_factory.mktemp("prefect-home")) as server:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=5)  # send the last run logs while the server is still up


@pytest.fixture(scope="session")
def postgresql() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster on a free loopback port, removed (data directory included) at the end."""
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def prefect_server_on_postgresql(postgresql: PostgresCluster,
                                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A Prefect server whose database is PostgreSQL (``PREFECT_API_DATABASE_CONNECTION_URL``)."""
    url = postgresql.create_database("prefect", owner="prefect")
    with PrefectServer(home=tmp_path_factory.mktemp("prefect-home-pg"), database_url=url) as server:
        yield server
        _drain_prefect_workers()


def on_postgresql() -> Any:
    """The ``prefect_server`` fixture of a module whose tests run on the PostgreSQL-backed server.

    Module-scoped, and it points this process's Prefect client at that server for the module:
    module fixtures built on it (deployments, a webhook receiver's thread) then talk to it too;
    at the end of the module the client goes back to the session's SQLite server."""

    @pytest.fixture(scope="module", name="prefect_server")
    def prefect_server_of_this_module(prefect_server_on_postgresql: PrefectServer) -> Iterator[PrefectServer]:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        _drain_prefect_workers()
        with temporary_settings(updates={PREFECT_API_URL: prefect_server_on_postgresql.api_url}):
            yield prefect_server_on_postgresql
            _drain_prefect_workers()

    return prefect_server_of_this_module


def _drain_prefect_workers() -> None:
    """Send what this process still holds for the current server, and forget its client.

    Prefect's event and log workers each open a client on first use and keep it: after a switch of
    ``PREFECT_API_URL`` they would go on sending to the previous server."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    EventsWorker.drain_all(timeout=5)
    APILogWorker.drain_all(timeout=5)


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """Settings are cached per process; tests change the environment, so drop the cache around each."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
