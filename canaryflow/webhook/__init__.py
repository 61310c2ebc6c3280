"""CI webhook receiver: signed GitHub, GitLab and generic deliveries start canary-release runs;
Alertmanager notifications of firing canary alerts start rollback runs.

``serve(host, port)`` runs it with uvicorn; ``create_app(config, starter=...)`` builds the ASGI app.
"""

from __future__ import annotations

import logging

from canaryflow.webhook.app import create_app
from canaryflow.webhook.config import WebhookConfig, WebhookSecrets, resolve_secrets

__all__ = ["WebhookConfig", "WebhookSecrets", "create_app", "resolve_secrets", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8088


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, config: WebhookConfig | None = None,
          log_level: str = "info") -> None:
    """Run the receiver until interrupted, with the connection limits of
    :mod:`canaryflow.webhook.server`. Secrets and the base spec are resolved before the port opens,
    so a misconfiguration fails at startup (:class:`canaryflow.errors.ConfigError`)."""
    import uvicorn

    from canaryflow.webhook.server import uvicorn_config

    config = config or WebhookConfig()
    logger = logging.getLogger("canaryflow.webhook")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(log_level.upper())
    app = create_app(config)
    uvicorn.Server(uvicorn_config(app, config=config, host=host, port=port, log_level=log_level)).run()
