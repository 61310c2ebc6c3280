"""The mesh of several services in one controller: who a Host or an admin path means, and one
targets file for all. Built without starting any process."""

from __future__ import annotations

import json

import pytest

from canaryflow.local.catalog import parse_catalog
from canaryflow.local.controller import Controller
from canaryflow.local.mesh import AmbiguousService, Mesh, UnknownService


def controller(tmp_path, service: str, slots=(9101, 9102)) -> Controller:
    catalog = parse_catalog({"service": "ignored", "versions": {"v1": {}, "v2": {}}})
    return Controller(service=service, catalog=catalog, catalog_path=tmp_path / "c.yaml", log_dir=tmp_path,
                      slot_ports=slots)


@pytest.fixture
def two(tmp_path) -> Mesh:
    return Mesh([controller(tmp_path, "checkout", (9101, 9102)), controller(tmp_path, "payments", (9103, 9104))],
                targets_file=tmp_path / "targets.json")


@pytest.mark.parametrize("host, service", [
    ("payments", "payments"), ("payments:8080", "payments"), ("PAYMENTS", "payments"),
    ("payments.local", "payments"), ("checkout.shop.internal:80", "checkout"),
])
def test_the_host_header_names_the_service(two, host, service):
    assert two.for_host(host).service == service


@pytest.mark.parametrize("host", [None, "", "127.0.0.1:8000", "orders", "[::1]:80", "pay"])
def test_a_host_naming_no_service_is_refused_when_there_are_several(two, host):
    with pytest.raises(UnknownService, match="this platform runs: checkout, payments"):
        two.for_host(host)


@pytest.mark.parametrize("host", [None, "127.0.0.1:8000", "orders"])
def test_one_service_takes_every_request(tmp_path, host):
    mesh = Mesh([controller(tmp_path, "checkout")])
    assert mesh.for_host(host).service == "checkout"
    assert mesh.only().service == "checkout"


def test_unprefixed_admin_paths_need_a_single_service(two):
    with pytest.raises(AmbiguousService, match="runs 2 services .*/-/services/<name>/"):
        two.only()
    assert two.get("payments").service == "payments"
    with pytest.raises(UnknownService, match="no service 'orders'"):
        two.get("orders")


def test_a_service_listed_twice_or_none_at_all_is_refused(tmp_path):
    with pytest.raises(ValueError, match="'checkout' is listed twice"):
        Mesh([controller(tmp_path, "checkout"), controller(tmp_path, "checkout")])
    with pytest.raises(ValueError, match="at least one service"):
        Mesh([])


def test_one_targets_file_labels_each_services_slots_with_its_name(two, tmp_path):
    two.services["payments"].write_targets()  # what a deploy or promote of one service calls
    groups = json.loads((tmp_path / "targets.json").read_text())
    assert groups == [
        {"targets": ["127.0.0.1:9101", "127.0.0.1:9102"], "labels": {"service": "checkout"}},
        {"targets": ["127.0.0.1:9103", "127.0.0.1:9104"], "labels": {"service": "payments"}},
    ]


def test_a_weight_on_one_service_leaves_the_other_alone(two):
    two.get("checkout").policy.set_weight(10, "set")
    assert two.overview() == {"services": {
        "checkout": {"stable": None, "canary": None, "canary_weight": 10},
        "payments": {"stable": None, "canary": None, "canary_weight": 0},
    }}
