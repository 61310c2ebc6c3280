"""The controller's state document, built without starting any process."""

from __future__ import annotations

from canaryflow.local.catalog import parse_catalog
from canaryflow.local.controller import Controller


def test_state_lists_the_catalogue_versions_sorted(tmp_path):
    catalog = parse_catalog({"service": "shop", "versions": {"v2": {}, "v10": {}, "a-first": {}}})
    controller = Controller(service="shop", catalog=catalog, catalog_path=tmp_path / "c.yaml",
                            log_dir=tmp_path)
    state = controller.state()
    assert state["versions"] == ["a-first", "v10", "v2"]
    assert state["stable"] is None and state["canary"] is None and state["canary_weight"] == 0
