"""The example automation file, as installed: valid for Prefect, calling the block it is given."""

from __future__ import annotations

import uuid

import pytest

from canaryflow.automations import ROLLED_BACK, load_automation
from canaryflow.errors import ConfigError
from canaryflow.events import ROLLED_BACK as ROLLED_BACK_EVENT


def test_rolled_back_automation_triggers_on_the_event_and_calls_the_given_block():
    from prefect.events.schemas.automations import AutomationCore

    block_id = uuid.uuid4()
    automation = AutomationCore.model_validate(load_automation(ROLLED_BACK, webhook_block_id=block_id))
    assert automation.trigger.expect == {ROLLED_BACK_EVENT}
    assert automation.trigger.threshold == 1
    [action] = automation.actions
    assert action.type == "call-webhook" and action.block_document_id == block_id
    assert "event.payload.reason" in action.payload


def test_a_file_without_actions_is_refused_naming_it(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ntrigger: {type: event}\n")
    with pytest.raises(ConfigError, match="broken.yaml: needs a trigger and actions"):
        load_automation(path, webhook_block_id=uuid.uuid4())
