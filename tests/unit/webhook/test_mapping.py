"""Payload mapping and spec validation: what each event becomes, and what is refused with which field."""

from __future__ import annotations

import pytest

from canaryflow.errors import ConfigError
from canaryflow.webhook.mapping import (
    Ignored,
    ReleaseRequest,
    UnmappablePayload,
    build_spec,
    map_generic,
    map_github,
    map_gitlab,
)

REPO = {"repository": {"name": "Checkout", "full_name": "acme/Checkout"}}
SHA = "0123456789abcdef0123456789abcdef01234567"


def test_github_deployment_uses_its_custom_payload():
    payload = {**REPO, "action": "created", "deployment": {
        "environment": "production", "sha": SHA, "ref": "main",
        "payload": {"service": "orders", "version": "v2.3.1", "image": "ghcr.io/acme/orders:v2.3.1",
                    "spec": {"steps": [25, 100]}}}}
    request = map_github("deployment", payload)
    assert request == ReleaseRequest(source="github", event="deployment", service="orders", version="v2.3.1",
                                     environment="production", image="ghcr.io/acme/orders:v2.3.1",
                                     overrides={"steps": [25, 100]})
    spec = build_spec(request)
    assert (spec.service, spec.version, spec.environment.value, spec.steps) == ("orders", "v2.3.1", "production",
                                                                               [25, 100])


def test_github_deployment_falls_back_to_repository_and_short_sha():
    payload = {**REPO, "deployment": {"environment": "staging", "sha": SHA, "payload": '{"image": "x:1"}'}}
    request = map_github("deployment", payload)
    assert (request.service, request.version, request.environment, request.image) == (
        "checkout", SHA[:12], "staging", "x:1")


def test_github_deployment_without_environment_is_unmappable():
    with pytest.raises(UnmappablePayload) as info:
        map_github("deployment", {**REPO, "deployment": {"sha": SHA}})
    assert info.value.fields == ("deployment.environment",)


def test_github_release_and_registry_package():
    release = map_github("release", {**REPO, "action": "published", "release": {"tag_name": "v1.4.0"}})
    assert (release.service, release.version, release.environment) == ("checkout", "v1.4.0", None)
    assert isinstance(map_github("release", {**REPO, "action": "created", "release": {}}), Ignored)

    package = {"action": "published", "registry_package": {"name": "checkout", "package_version": {
        "version": "sha256:abcd", "container_metadata": {"tag": {"name": "v7"}},
        "package_url": "ghcr.io/acme/checkout:v7"}}}
    mapped = map_github("registry_package", package)
    assert (mapped.service, mapped.version, mapped.image) == ("checkout", "v7", "ghcr.io/acme/checkout:v7")
    untagged = {"action": "published", "registry_package": {"name": "checkout", "package_version": {
        "version": "sha256:abcd", "container_metadata": {"tag": {"name": ""}}}}}
    assert isinstance(map_github("registry_package", untagged), Ignored)


def test_github_workflow_run_only_when_completed_successfully_and_named():
    run = {"name": "release", "conclusion": "success", "head_sha": SHA}
    ok = map_github("workflow_run", {**REPO, "action": "completed", "workflow_run": run})
    assert (ok.service, ok.version) == ("checkout", SHA[:12])
    failed = {**REPO, "action": "completed", "workflow_run": {**run, "conclusion": "failure"}}
    assert isinstance(map_github("workflow_run", failed), Ignored)
    assert isinstance(map_github("workflow_run", {**REPO, "action": "requested", "workflow_run": run}), Ignored)
    other = {**REPO, "action": "completed", "workflow_run": {**run, "name": "lint"}}
    assert isinstance(map_github("workflow_run", other, workflows=["release"]), Ignored)


def test_gitlab_pipeline_and_deployment_hooks():
    project = {"project": {"name": "Checkout", "path_with_namespace": "acme/shop/checkout"}}
    pipeline = {**project, "object_attributes": {"status": "success", "ref": "v3.0.0", "tag": True, "sha": SHA,
                                                 "variables": [{"key": "CANARYFLOW_ENVIRONMENT",
                                                                "value": "production"}]}}
    mapped = map_gitlab("Pipeline Hook", pipeline)
    assert (mapped.service, mapped.version, mapped.environment) == ("checkout", "v3.0.0", "production")
    branch = {**project, "object_attributes": {"status": "success", "ref": "main", "tag": False, "sha": SHA}}
    assert map_gitlab("Pipeline Hook", branch).version == SHA[:12]
    running = {**project, "object_attributes": {"status": "running", "sha": SHA}}
    assert isinstance(map_gitlab("Pipeline Hook", running), Ignored)

    deployment = {**project, "status": "success", "environment": "staging", "short_sha": "0123abcd"}
    mapped = map_gitlab("Deployment Hook", deployment)
    assert (mapped.service, mapped.version, mapped.environment) == ("checkout", "0123abcd", "staging")
    assert isinstance(map_gitlab("Deployment Hook", {**deployment, "status": "failed"}), Ignored)
    assert isinstance(map_gitlab("Push Hook", deployment), Ignored)


def test_generic_rejects_unknown_fields_and_bad_overrides():
    with pytest.raises(UnmappablePayload) as info:
        map_generic({"service": "a", "version": "1", "colour": "blue"})
    assert info.value.fields == ("colour",)
    with pytest.raises(UnmappablePayload) as info:
        map_generic({"service": "a", "version": "1", "spec": [1, 2]})
    assert info.value.fields == ("spec",)
    with pytest.raises(UnmappablePayload):
        map_generic({"service": "a", "version": "1", "spec": {"steps": [100]}}, allow_overrides=False)


def test_spec_validation_names_fields():
    request = map_generic({"service": "Not_Valid", "environment": "qa", "spec": {"steps": [50, 10]}})
    with pytest.raises(ConfigError) as info:
        build_spec(request)
    assert set(info.value.fields) >= {"service", "version", "environment", "steps"}


def test_base_spec_lies_under_overrides_and_mapped_values():
    base = {"environment": "production", "step_wait_seconds": 60, "thresholds": {"max_error_rate": 0.002},
            "service": "ignored"}
    request = map_generic({"service": "checkout", "version": "v9",
                           "spec": {"thresholds": {"max_p95_latency_ms": 150}}})
    spec = build_spec(request, base)
    assert spec.service == "checkout" and spec.environment.value == "production"
    assert spec.step_wait_seconds == 60
    assert spec.thresholds.max_error_rate == 0.002 and spec.thresholds.max_p95_latency_ms == 150
    assert build_spec(map_generic({"service": "checkout", "version": "v9", "environment": "staging"}),
                      base).environment.value == "staging"


@pytest.mark.parametrize("event, payload, field", [
    ("deployment", {**REPO, "deployment": "production"}, "deployment"),
    ("deployment", {**REPO, "deployment": ["production"]}, "deployment"),
    ("deployment", {**REPO, "deployment": 7}, "deployment"),
    ("deployment", {**REPO, "deployment": {"environment": ["staging"], "sha": SHA}}, "deployment.environment"),
    ("deployment", {**REPO, "deployment": {"environment": "staging", "sha": 12}}, "deployment.sha"),
    ("deployment", {**REPO, "deployment": {"environment": "staging", "sha": SHA, "payload": {"service": ["x"]}}},
     "deployment.payload.service"),
    ("deployment", {"repository": {"name": {"x": 1}}, "deployment": {"environment": "staging", "sha": SHA}},
     "repository.name"),
    ("deployment", {**REPO, "deployment": {"environment": "staging", "sha": SHA, "payload": '{"a": NaN}'}},
     "deployment.payload"),
    ("release", {**REPO, "action": "published", "release": {"tag_name": 1.5}}, "release.tag_name"),
    ("registry_package", {"action": "published", "registry_package": "checkout"}, "registry_package"),
    ("registry_package", {"action": "published", "registry_package": {"name": "checkout", "package_version": {
        "version": ["v1"]}}}, "registry_package.package_version.version"),
    ("workflow_run", {**REPO, "action": "completed", "workflow_run": [1]}, "workflow_run"),
])
def test_github_fields_of_the_wrong_json_type_are_unmappable_naming_the_field(event, payload, field):
    with pytest.raises(UnmappablePayload) as info:
        map_github(event, payload)
    assert info.value.fields == (field,)


@pytest.mark.parametrize("attributes, field", [
    ("success", "object_attributes"),
    ({"status": "success", "sha": SHA, "variables": "CANARYFLOW_SERVICE=x"}, "object_attributes.variables"),
    ({"status": "success", "sha": SHA, "variables": 3}, "object_attributes.variables"),
    ({"status": "success", "sha": SHA, "variables": [["CANARYFLOW_SERVICE", "x"]]}, "object_attributes.variables"),
    ({"status": "success", "sha": SHA, "variables": [{"key": ["k"], "value": "x"}]}, "object_attributes.variables"),
    ({"status": "success", "sha": SHA, "variables": [{"key": "CANARYFLOW_VERSION", "value": {"v": 1}}]},
     "object_attributes.variables.CANARYFLOW_VERSION.value"),
    ({"status": "success", "tag": True, "ref": ["v1"], "sha": SHA}, "object_attributes.ref"),
])
def test_gitlab_fields_of_the_wrong_json_type_are_unmappable_naming_the_field(attributes, field):
    payload = {"project": {"name": "checkout"}, "object_attributes": attributes}
    with pytest.raises(UnmappablePayload) as info:
        map_gitlab("Pipeline Hook", payload)
    assert info.value.fields == (field,)


def test_gitlab_variables_other_than_ours_are_left_alone():
    payload = {"project": {"name": "checkout"}, "object_attributes": {
        "status": "success", "sha": SHA, "variables": [{"key": "UNRELATED", "value": {"any": "shape"}},
                                                        {"key": "CANARYFLOW_SERVICE", "value": "orders"}]}}
    assert map_gitlab("Pipeline Hook", payload).service == "orders"


BAD_IMAGES = [{"ref": "x"}, 5, 1.5, True, ["ghcr.io/a/b:1"], "not an image", "ghcr.io/acme/app:\ud800", "A:1"]


@pytest.mark.parametrize("image", BAD_IMAGES, ids=repr)
def test_image_must_be_an_oci_reference_on_every_route(image):
    deployment = {**REPO, "deployment": {"environment": "staging", "sha": SHA, "payload": {"image": image}}}
    package = {"action": "published", "registry_package": {"name": "checkout", "package_version": {
        "container_metadata": {"tag": {"name": "v7"}}, "package_url": image}}}
    pipeline = {"project": {"name": "checkout"}, "object_attributes": {
        "status": "success", "sha": SHA, "variables": [{"key": "CANARYFLOW_IMAGE", "value": image}]}}
    cases = [
        (lambda: map_github("deployment", deployment), "deployment.payload.image"),
        (lambda: map_github("registry_package", package), "registry_package.package_version.package_url"),
        (lambda: map_generic({"service": "checkout", "version": "v1", "image": image}), "image"),
    ]
    if isinstance(image, str):  # a pipeline variable is text; another type fails as a variable first
        cases.append((lambda: map_gitlab("Pipeline Hook", pipeline), "object_attributes.variables.CANARYFLOW_IMAGE"))
    for mapping, field in cases:
        with pytest.raises(UnmappablePayload) as info:
            mapping()
        assert info.value.fields == (field,)
        assert "OCI image reference" in str(info.value)


def test_ignored_reasons_quote_payload_values_briefly():
    ignored = map_github("release", {**REPO, "action": "x" * 10_000, "release": {}})
    assert isinstance(ignored, Ignored) and len(ignored.reason) < 120
