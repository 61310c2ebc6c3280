"""The controller's state document, built without starting any process."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from canaryflow.local.catalog import parse_catalog
from canaryflow.local.controller import AdminError, Controller


def test_state_lists_the_catalogue_versions_sorted(tmp_path):
    catalog = parse_catalog({"service": "shop", "versions": {"v2": {}, "v10": {}, "a-first": {}}})
    controller = Controller(service="shop", catalog=catalog, catalog_path=tmp_path / "c.yaml",
                            log_dir=tmp_path)
    state = controller.state()
    assert state["versions"] == ["a-first", "v10", "v2"]
    assert state["stable"] is None and state["canary"] is None and state["canary_weight"] == 0


def make_controller(tmp_path, **catalog) -> Controller:
    parsed = parse_catalog({"service": "shop", "versions": {"v1": {}}, **catalog})
    return Controller(service="shop", catalog=parsed, catalog_path=tmp_path / "c.yaml", log_dir=tmp_path)


def test_state_shows_no_incident_and_a_healthy_mesh_by_default(tmp_path):
    state = make_controller(tmp_path).state()
    assert state["incident"] is None and state["incident_schedule"] is None
    assert state["routing"] == {"canary_share_factor": 1.0}


def test_state_shows_the_incident_in_force_and_the_schedule(tmp_path):
    controller = make_controller(tmp_path, incident={"every_s": 300, "duration_s": 60, "error_rate": 0.02})
    assert controller.state()["incident_schedule"] == {"every_s": 300, "duration_s": 60, "error_rate": 0.02}

    async def start_then_end() -> tuple[dict, dict]:
        async with httpx.AsyncClient() as client:  # no service runs, so nothing is pushed
            started = await controller.start_incident(client, duration_s=30, error_rate=0.05)
            return started, await controller.end_incident(client)

    started, ended = asyncio.run(start_then_end())
    assert started["incident"]["error_rate"] == 0.05 and started["incident"]["source"] == "admin"
    assert 29 < started["incident"]["remaining_s"] <= 30
    assert ended["incident"] is None


def test_share_factor_shows_in_state_while_the_reported_weight_stays(tmp_path):
    controller = make_controller(tmp_path)
    controller.policy.set_weight(10, "set")
    state = controller.set_canary_share_factor(0.2)
    assert state["routing"] == {"canary_share_factor": 0.2} and state["canary_weight"] == 10
    with pytest.raises(AdminError, match="canary_share_factor") as info:
        controller.set_canary_share_factor(-1)
    assert info.value.status == 400
    assert controller.state()["routing"] == {"canary_share_factor": 0.2}
