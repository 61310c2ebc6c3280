"""How serve() configures uvicorn: the limits of the settings reach the server (their effect on real
connections is tested in tests/integration/test_webhook_server.py)."""

from __future__ import annotations

from canaryflow.webhook.config import WebhookConfig
from canaryflow.webhook.server import uvicorn_config


def test_serve_applies_the_limits_to_uvicorn():
    config = WebhookConfig(max_connections=7, max_header_bytes=4096, keep_alive_seconds=3)
    settings = uvicorn_config(object(), config=config, host="127.0.0.1", port=1)
    assert (settings.limit_concurrency, settings.h11_max_incomplete_event_size, settings.timeout_keep_alive) == (
        7, 4096, 3)
    assert settings.server_header is False and settings.http.__name__ == "HeadDeadlineProtocol"
