"""Service plans of a local stack and the services file the controller reads."""

from __future__ import annotations

import json

import pytest

from canaryflow.local.services import PlannedService, ServicePlan, check_service_names, read_plans, write_plans


def test_a_services_file_round_trips(tmp_path):
    plans = [PlannedService(service="checkout", stable="v1", catalog=tmp_path / "a.yaml", slot_ports=(1, 2)),
             PlannedService(service="payments", stable="v2", catalog=tmp_path / "b.yaml", slot_ports=(3, 4))]
    write_plans(tmp_path / "services.json", plans)
    assert read_plans(tmp_path / "services.json") == plans


@pytest.mark.parametrize("content, message", [
    ("{}", "a JSON list of services"),
    ("not json", "cannot read services file"),
    ('[{"service": "a", "stable": "v1", "catalog": "/c", "slot_ports": [1]}]', "slot_ports"),
    ('[{"service": "a", "stable": "v1", "catalog": "/c", "slot_ports": [1, 2], "rps": 3}]', "rps"),
    ('[{"service": "Bad_Name", "stable": "v1", "catalog": "/c", "slot_ports": [1, 2]}]', "'Bad_Name'"),
    ('[{"service": "a", "stable": "v1", "catalog": "/c", "slot_ports": [1, 2]},'
     ' {"service": "a", "stable": "v2", "catalog": "/c", "slot_ports": [3, 4]}]', "listed twice"),
    ("[]", "at least one service"),
])
def test_a_bad_services_file_is_refused_naming_the_problem(tmp_path, content, message):
    path = tmp_path / "services.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_plans(path)


@pytest.mark.parametrize("name", ["", "A", "-a", "a-", "a_b", "a.b", "x" * 64])
def test_service_names_must_be_dns_labels(name):
    with pytest.raises(ValueError, match="not a valid service name"):
        check_service_names([name])


def test_a_plan_refuses_negative_load_and_unknown_fields():
    with pytest.raises(ValueError, match="rps"):
        ServicePlan(rps=-1)
    with pytest.raises(ValueError, match="replicas"):
        ServicePlan.model_validate({"stable": "v1", "replicas": 2})
    assert (json.loads(ServicePlan(stable="v2", rps=5).model_dump_json())
            == {"stable": "v2", "rps": 5.0, "catalog": None})
