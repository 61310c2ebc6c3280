"""Payload -> release request -> validated release spec. Pure functions, no I/O.

Each source maps its payload to a :class:`ReleaseRequest` (service, version, environment, image,
spec overrides), or to :class:`Ignored` when the event is allowed but does not mean "release now"
(a workflow that failed, a package that was deleted). Fields the payload cannot supply, or
supplies with the wrong JSON type (a ``deployment`` that is a string, ``variables`` that are a
number), raise :class:`UnmappablePayload` naming them: a signed payload is still attacker-shaped
input, and a field used unchecked once meant a 500. ``image`` must be an OCI reference on every
route. :func:`build_spec` then merges
``base spec < payload spec overrides < service/version/environment`` and validates the result
with the release spec itself, so a request is refused for exactly the reasons a CLI run would be.

GitHub (``X-GitHub-Event``):
- ``deployment``: service/version/image/spec from the deployment's custom ``payload`` object when
  given, else the repository name and the short SHA; environment = the deployment's environment.
- ``release`` (action ``published``): repository name, the release's tag.
- ``registry_package`` (action ``published``): package name, its tag, image = the package URL.
- ``workflow_run`` (action ``completed``, conclusion ``success``; opt-in): repository name,
  short head SHA; optionally only for the configured workflow names.
GitLab (``X-Gitlab-Event``):
- ``Pipeline Hook`` (status ``success``): project path, the tag (or short SHA); pipeline variables
  ``CANARYFLOW_SERVICE``, ``CANARYFLOW_VERSION``, ``CANARYFLOW_ENVIRONMENT``, ``CANARYFLOW_IMAGE``
  override each.
- ``Deployment Hook`` (status ``success``): project path, short SHA, the deployment's environment.
Generic: a JSON object ``{service, version, environment?, image?, spec?}`` and nothing else.
Fleet: ``{version, services, environment?, waves?, max_concurrency?, stop_on_rollback?, spec?}``
and nothing else, checked by :func:`map_fleet` as a :class:`~canaryflow.fleet.FleetSpec` whose
every service's release spec is valid, so a fleet never starts to fail at its first child.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from canaryflow.errors import ConfigError
from canaryflow.fleet import FleetSpec
from canaryflow.spec import ReleaseSpec, deep_merge, validate_spec
from canaryflow.webhook.oci import is_image_reference
from canaryflow.webhook.payload import PayloadRefused, kind, parse_json, quoted

GENERIC_KEYS = frozenset({"service", "version", "environment", "image", "spec"})
#: What a fleet delivery may say; where the children run (``FleetSpec.deployment``) is the receiver's.
FLEET_KEYS = frozenset({"version", "services", "environment", "waves", "max_concurrency", "stop_on_rollback",
                        "spec"})
#: Fields every service's release takes from the fleet, not from the shared spec.
PER_SERVICE_FIELDS = ("service", "version", "environment")
SHORT_SHA = 12
GITLAB_VARIABLES = ("CANARYFLOW_SERVICE", "CANARYFLOW_VERSION", "CANARYFLOW_ENVIRONMENT", "CANARYFLOW_IMAGE")


class UnmappablePayload(ConfigError):
    """The payload lacks what a release needs; ``fields`` names the missing or wrong parts."""


@dataclass(frozen=True)
class ReleaseRequest:
    source: str
    event: str
    service: Any
    version: Any
    environment: Any = None
    image: str | None = None  # a checked OCI reference (see :func:`_image`)
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ignored:
    reason: str


# --- typed access: every payload field used is checked for its JSON type before it is used ----------

def _dig(data: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _wrong_type(where: str, expected: str, value: Any) -> UnmappablePayload:
    return UnmappablePayload(f"{where} must be {expected}, not {kind(value)}", fields=(where,))


def _missing(where: str) -> UnmappablePayload:
    return UnmappablePayload(f"payload has no {where}", fields=(where,))


def _text(data: Any, path: str, *, prefix: str = "", required: bool = True) -> str | None:
    """A string field; absent or empty is None (or missing, when required)."""
    value = _dig(data, path)
    if value is None or value == "":
        if required:
            raise _missing(prefix + path)
        return None
    if not isinstance(value, str):
        raise _wrong_type(prefix + path, "a string", value)
    return value


def _section(data: Any, path: str) -> dict[str, Any]:
    """A required object."""
    value = _dig(data, path)
    if value is None:
        raise _missing(path)
    if not isinstance(value, dict):
        raise _wrong_type(path, "an object", value)
    return value


def _image(value: Any, where: str) -> str | None:
    """Checked on every route before anything starts: the answer echoes it."""
    if value is None or value == "":
        return None
    if not is_image_reference(value):
        shown = quoted(value) if isinstance(value, str) else kind(value)
        raise UnmappablePayload(f"{where} must be an OCI image reference such as ghcr.io/acme/app:v1, "
                                f"not {shown}", fields=(where,))
    return value


def _repo_service(payload: dict[str, Any]) -> str:
    return str(_text(payload, "repository.name")).lower()


def _short(sha: Any, path: str) -> str:
    if sha is None or sha == "":
        raise _missing(path)
    if not isinstance(sha, str):
        raise _wrong_type(path, "a string", sha)
    return sha[:SHORT_SHA]


def _overrides(value: Any, where: str, allow: bool) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UnmappablePayload(f"{where} must be an object of release spec fields", fields=(where,))
    if value and not allow:
        raise UnmappablePayload(f"{where}: spec overrides are disabled on this receiver", fields=(where,))
    return value


# --- GitHub ----------------------------------------------------------------------------------------

def _deployment_payload(custom: Any) -> dict[str, Any]:
    """GitHub's deployment ``payload`` is any JSON, an object or a JSON string (the REST API takes
    both); only an object carries our fields."""
    if isinstance(custom, str):
        try:
            custom = parse_json(custom) if custom.strip() else {}
        except PayloadRefused as exc:
            raise UnmappablePayload(f"deployment.payload: {exc}", fields=("deployment.payload",)) from None
    return custom if isinstance(custom, dict) else {}


def map_github(event: str, payload: dict[str, Any], *, workflows: list[str] | tuple[str, ...] = (),
               allow_overrides: bool = True) -> ReleaseRequest | Ignored:
    action = payload.get("action")
    if event == "deployment":
        deployment = _section(payload, "deployment")
        custom = _deployment_payload(deployment.get("payload"))
        where = "deployment.payload."
        return ReleaseRequest(
            source="github", event=event,
            service=_text(custom, "service", prefix=where, required=False) or _repo_service(payload),
            version=_text(custom, "version", prefix=where, required=False)
            or _short(deployment.get("sha"), "deployment.sha"),
            environment=_text(payload, "deployment.environment"),
            image=_image(custom.get("image"), where + "image"),
            overrides=_overrides(custom.get("spec"), where + "spec", allow_overrides))
    if event == "release":
        if action != "published":
            return Ignored(f"release action {quoted(action)} (only 'published' starts a release)")
        return ReleaseRequest(source="github", event=event, service=_repo_service(payload),
                              version=_text(payload, "release.tag_name"))
    if event == "registry_package":
        if action != "published":
            return Ignored(f"registry_package action {quoted(action)} (only 'published' starts a release)")
        package = _section(payload, "registry_package")
        where = "registry_package.package_version."
        tag = _text(package, "package_version.container_metadata.tag.name", prefix="registry_package.",
                    required=False)
        version = tag or _text(package, "package_version.version", prefix="registry_package.", required=False)
        if not tag and version is not None and version.startswith("sha256:"):
            return Ignored("registry_package published without a tag (an untagged digest)")
        if not version:
            raise _missing(where + "version")
        return ReleaseRequest(source="github", event=event,
                              service=str(_text(payload, "registry_package.name")).lower(), version=version,
                              image=_image(_dig(package, "package_version.package_url"), where + "package_url"))
    if event == "workflow_run":
        run = _section(payload, "workflow_run")
        if action != "completed" or run.get("conclusion") != "success":
            return Ignored(f"workflow_run {quoted(action)}/{quoted(run.get('conclusion'))} "
                           "(only a completed, successful run starts a release)")
        if workflows and run.get("name") not in workflows:
            return Ignored(f"workflow {quoted(run.get('name'))} is not one of the configured workflows")
        return ReleaseRequest(source="github", event=event, service=_repo_service(payload),
                              version=_short(run.get("head_sha"), "workflow_run.head_sha"))
    return Ignored(f"GitHub event {quoted(event)} has no release mapping")


# --- GitLab ----------------------------------------------------------------------------------------

def _project_service(payload: dict[str, Any]) -> str:
    path = _text(payload, "project.path_with_namespace", required=False) or _text(payload, "project.name")
    return str(path).rsplit("/", 1)[-1].lower()


def _pipeline_variables(attributes: dict[str, Any]) -> dict[str, str]:
    """The ``CANARYFLOW_*`` pipeline variables; GitLab sends ``[{"key": ..., "value": ...}]``."""
    where = "object_attributes.variables"
    variables = attributes.get("variables")
    if variables is None:
        return {}
    if not isinstance(variables, list):
        raise _wrong_type(where, "a list of {key, value} objects", variables)
    found: dict[str, str] = {}
    for variable in variables:
        if not isinstance(variable, dict) or not isinstance(variable.get("key"), str):
            raise UnmappablePayload(f"{where} must be a list of {{key, value}} objects with string keys",
                                    fields=(where,))
        if variable["key"] in GITLAB_VARIABLES:
            value = _text(variable, "value", prefix=f"{where}.{variable['key']}.", required=False)
            if value is not None:
                found[variable["key"]] = value
    return found


def map_gitlab(event: str, payload: dict[str, Any]) -> ReleaseRequest | Ignored:
    if event == "Pipeline Hook":
        attributes = _section(payload, "object_attributes")
        status = attributes.get("status")
        if status != "success":
            return Ignored(f"pipeline status {quoted(status)} (only 'success' starts a release)")
        variables = _pipeline_variables(attributes)
        tagged = attributes.get("tag") is True
        version = _text(attributes, "ref", prefix="object_attributes.", required=False) if tagged else None
        return ReleaseRequest(
            source="gitlab", event=event,
            service=variables.get("CANARYFLOW_SERVICE") or _project_service(payload),
            version=variables.get("CANARYFLOW_VERSION") or version
            or _short(attributes.get("sha"), "object_attributes.sha"),
            environment=variables.get("CANARYFLOW_ENVIRONMENT"),
            image=_image(variables.get("CANARYFLOW_IMAGE"), "object_attributes.variables.CANARYFLOW_IMAGE"))
    if event == "Deployment Hook":
        status = payload.get("status")
        if status != "success":
            return Ignored(f"deployment status {quoted(status)} (only 'success' starts a release)")
        return ReleaseRequest(source="gitlab", event=event, service=_project_service(payload),
                              version=_text(payload, "short_sha"), environment=_text(payload, "environment"))
    return Ignored(f"GitLab event {quoted(event)} has no release mapping")


# --- Generic ---------------------------------------------------------------------------------------

def map_generic(payload: dict[str, Any], *, allow_overrides: bool = True) -> ReleaseRequest:
    """service, version and environment go to the release spec as given: it names a wrong one."""
    unknown = sorted(set(payload) - GENERIC_KEYS)
    if unknown:
        raise UnmappablePayload(f"unknown field(s) {quoted(unknown)}; allowed: {sorted(GENERIC_KEYS)}",
                                fields=tuple(unknown))
    return ReleaseRequest(source="generic", event="release", service=payload.get("service"),
                          version=payload.get("version"), environment=payload.get("environment"),
                          image=_image(payload.get("image"), "image"),
                          overrides=_overrides(payload.get("spec"), "spec", allow_overrides))


# --- Fleet -----------------------------------------------------------------------------------------

def _fleet_field(error: Any) -> str:
    """The field a validation error is about; the plan's own errors (``waves[1]: ...``,
    ``services: listed twice``) are raised for the whole model and name their field in the text."""
    if error["loc"]:
        return ".".join(str(part) for part in error["loc"])
    named = re.match(r"(\w+)(?:\[(\d+)\])?:", str(error.get("ctx", {}).get("error", "")))
    if named and named.group(1) in FLEET_KEYS:
        return named.group(1) + (f".{named.group(2)}" if named.group(2) else "")
    return "<payload>"


def map_fleet(payload: dict[str, Any], base: dict[str, Any] | None = None, *, allow_overrides: bool = True,
              max_services: int) -> FleetSpec:
    """A fleet delivery as a validated :class:`FleetSpec`; raises :class:`UnmappablePayload` naming
    every bad field (``services.2``, ``waves.0``, ``spec.steps``).

    The shared release fields merge as ``base spec < payload "spec"``; environment comes from the
    payload, else the base spec, else ``staging``. Every service's release spec is validated here,
    so what the release spec refuses is refused before the fleet run exists.
    """
    unknown = sorted(set(payload) - FLEET_KEYS)
    if unknown:
        raise UnmappablePayload(f"unknown field(s) {quoted(unknown)}; allowed: {sorted(FLEET_KEYS)}",
                                fields=tuple(unknown))
    services = payload.get("services")
    if services is None:
        raise _missing("services")
    if not isinstance(services, list):
        raise _wrong_type("services", "a list of service names", services)
    if len(services) > max_services:
        raise UnmappablePayload(f"services: {len(services)} services, at most {max_services} per fleet delivery",
                                fields=("services",))
    base = base or {}
    shared = deep_merge({k: v for k, v in base.items() if k not in PER_SERVICE_FIELDS},
                        _overrides(payload.get("spec"), "spec", allow_overrides))
    data = {**{k: v for k, v in payload.items() if k != "spec"}, "spec": shared}
    if data.get("environment") is None and base.get("environment") is not None:
        data["environment"] = base["environment"]
    try:
        fleet = FleetSpec.model_validate({k: v for k, v in data.items() if v is not None})
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        fields = tuple(_fleet_field(err) for err in errors)
        details = "; ".join(f"{field}: {err['msg']}" for field, err in zip(fields, errors, strict=True))
        raise UnmappablePayload(f"invalid fleet release: {details}", fields=fields) from None
    for service in fleet.services:
        try:
            validate_spec(fleet.release_spec(service))
        except ConfigError as exc:
            fields = tuple(f if f in PER_SERVICE_FIELDS else f"spec.{f}" for f in exc.fields)
            raise UnmappablePayload(f"release of {service}: {exc}", fields=fields) from None
    return fleet


# --- Spec ------------------------------------------------------------------------------------------

def build_spec(request: ReleaseRequest, base: dict[str, Any] | None = None) -> ReleaseSpec:
    """Merge and validate; raises :class:`ConfigError` naming every bad field."""
    mapped: dict[str, Any] = {"service": request.service, "version": request.version}
    if request.environment is not None:
        mapped["environment"] = request.environment
    if request.image is not None and "image" in ReleaseSpec.model_fields:
        mapped["image"] = request.image
    data = deep_merge(deep_merge(base or {}, request.overrides), {k: v for k, v in mapped.items()
                                                                    if v is not None})
    return validate_spec(data)
