"""The order of the controller's admin operations: no user is ever routed to a stopping process.

Rolling back, promoting or replacing a canary each stop one process. Whatever the proxy routes
while that process shuts down must already go elsewhere, so the weight (and the track the proxy
picks) has to change *before* the process is retired. The controller's ``_retire`` is replaced by
one that records what the proxy would do at that moment; no process is started.
"""

from __future__ import annotations

import asyncio

import pytest

from canaryflow.local.catalog import parse_catalog
from canaryflow.local.controller import Controller, Track


class _Running:
    """A process handle that is alive; the controller only polls it and reads its pid."""

    pid = 4242

    def poll(self) -> None:
        return None


def _controller(tmp_path, *, weight: int) -> tuple[Controller, list[dict]]:
    catalog = parse_catalog({"service": "shop", "versions": {"v1": {}, "v2": {}, "v3": {}}})
    controller = Controller(service="shop", catalog=catalog, catalog_path=tmp_path / "c.yaml", log_dir=tmp_path,
                            seed=7)
    controller.stable = Track("v1", 9001, _Running(), ready=True)
    controller.canary = Track("v2", 9002, _Running(), ready=True)
    controller.policy.set_weight(weight, "set")
    retired: list[dict] = []

    async def retire(track: Track) -> None:
        routed = {controller.route().version for _ in range(200)}  # what users get while it stops
        retired.append({"version": track.version, "weight": controller.policy.weight,
                        "last_change": controller.policy.history[-1]["reason"], "routed": routed})

    controller._retire = retire  # type: ignore[method-assign]
    return controller, retired


@pytest.mark.parametrize("weight", [1, 50, 100])
def test_rollback_moves_the_weight_to_zero_before_retiring_the_canary(tmp_path, weight):
    controller, retired = _controller(tmp_path, weight=weight)
    state = asyncio.run(controller.rollback())
    assert retired == [{"version": "v2", "weight": 0, "last_change": "rollback", "routed": {"v1"}}]
    assert state["canary"] is None and state["canary_weight"] == 0
    assert [h["canary_weight"] for h in state["history"]] == [weight, 0]


def test_promote_routes_everything_to_the_new_stable_before_retiring_the_old(tmp_path):
    controller, retired = _controller(tmp_path, weight=100)
    state = asyncio.run(controller.promote())
    assert retired == [{"version": "v1", "weight": 0, "last_change": "promote", "routed": {"v2"}}]
    assert state["stable"]["version"] == "v2" and state["canary"] is None


def test_a_replaced_canary_loses_its_traffic_before_it_is_retired(tmp_path, monkeypatch):
    controller, retired = _controller(tmp_path, weight=20)
    monkeypatch.setattr(controller, "spawn", lambda version: Track(version, 9003, _Running()))
    asyncio.run(controller.deploy_canary("v3"))
    assert retired == [{"version": "v2", "weight": 0, "last_change": "canary_replaced", "routed": {"v1"}}]
    assert controller.canary.version == "v3"
