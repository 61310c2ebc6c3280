"""Install the example automations of ``deployments/automations/`` on a Prefect server.

An automation that notifies someone needs a block to call, and Prefect's automation files name
blocks by id, which differs on every server. So the file keeps the trigger and the message, and
installing creates (or replaces) a ``Webhook`` block with the channel's URL, points the file's
``call-webhook`` actions at it, and creates (or replaces, by name) the automation: running it again
changes the URL without leaving a second automation behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import yaml

from canaryflow.errors import ConfigError
from canaryflow.prefect_sync import sync_result

AUTOMATIONS_DIR = Path(__file__).resolve().parents[1] / "deployments" / "automations"
ROLLED_BACK = AUTOMATIONS_DIR / "rolled-back.yaml"
WEBHOOK_BLOCK = "canaryflow-release-notify"


def load_automation(path: Path, *, webhook_block_id: UUID) -> dict[str, Any]:
    """The automation in ``path`` with every ``call-webhook`` action calling the given block (pure)."""
    try:
        definition = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"automation file {path}: {exc}", fields=("automation",)) from exc
    if not isinstance(definition, dict) or "trigger" not in definition or not definition.get("actions"):
        raise ConfigError(f"automation file {path}: needs a trigger and actions", fields=("automation",))
    for action in definition["actions"]:
        if action.get("type") == "call-webhook":
            action["block_document_id"] = str(webhook_block_id)
    return definition


def install(webhook_url: str, *, path: Path = ROLLED_BACK, allow_private_urls: bool = False) -> UUID:
    """Create the webhook block and the automation on the server of ``PREFECT_API_URL``; return its id.

    ``allow_private_urls`` lets the server call a loopback or private address (a receiver inside
    the cluster, a test); Prefect refuses those by default."""
    from prefect.blocks.webhook import Webhook
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore
    from prefect.types import SecretDict
    from pydantic import SecretStr

    block = Webhook(method="POST", url=SecretStr(webhook_url), allow_private_urls=allow_private_urls,
                    headers=SecretDict({"Content-Type": "application/json"}))
    block_id = sync_result(block.save(WEBHOOK_BLOCK, overwrite=True), "Block.save")
    automation = AutomationCore.model_validate(load_automation(path, webhook_block_id=block_id))
    with get_client(sync_client=True) as client:
        for existing in client.read_automations_by_name(automation.name):
            client.delete_automation(existing.id)
        return client.create_automation(automation)
