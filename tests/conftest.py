"""Shared fixtures: one real Prefect server per test session, started only when a test needs it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """Settings are cached per process; tests change the environment, so drop the cache around each."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
