"""The receiver on uvicorn, with the limits a public endpoint needs against slow or greedy clients.

uvicorn gives a connection unlimited time to send its request head and serves any number of
connections. So a client that opens connections and trickles bytes (or sends nothing) holds them
forever. Three limits bound what one client can hold, the app's own body-read deadline being the
fourth (:class:`canaryflow.webhook.app.Receiver`, 408):

- ``header_timeout_seconds``: the request head must arrive within this time of the connection
  opening (or of the previous answer), else the connection is closed — uvicorn's keep-alive
  timer stops at the first byte, this one does not;
- ``max_header_bytes``: a larger head is refused (h11 ``max_incomplete_event_size``, 400);
- ``max_connections``: beyond that many open connections uvicorn answers 503
  (``limit_concurrency``); the per-client rate limit keeps one client from taking them all.

The h11 protocol is used whatever else is installed: the head size cap is h11's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from canaryflow.webhook.config import WebhookConfig


def head_deadline_protocol(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request head is not complete in ``seconds``."""

    class HeadDeadlineProtocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(seconds, self._head_too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _request_in_progress(self) -> bool:
            return self.cycle is not None and not self.cycle.response_complete

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if not self._request_in_progress() and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._request_in_progress():  # the head is complete: the app's body deadline takes over
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's head

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeadDeadlineProtocol


def uvicorn_config(app: Any, *, config: WebhookConfig, host: str, port: int, **options: Any) -> uvicorn.Config:
    """How :func:`canaryflow.webhook.serve` runs the app; ``options`` are further uvicorn settings."""
    settings: dict[str, Any] = {
        "host": host, "port": port, "server_header": False,
        "proxy_headers": config.trusted_proxies is not None, "forwarded_allow_ips": config.trusted_proxies,
        "http": head_deadline_protocol(config.header_timeout_seconds),
        "h11_max_incomplete_event_size": config.max_header_bytes,
        "limit_concurrency": config.max_connections,
        "timeout_keep_alive": config.keep_alive_seconds,
        **options,
    }
    return uvicorn.Config(app, **settings)
