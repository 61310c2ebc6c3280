"""Payload -> release request -> validated release spec. Pure functions, no I/O.

Each source maps its payload to a :class:`ReleaseRequest` (service, version, environment, image,
spec overrides), or to :class:`Ignored` when the event is allowed but does not mean "release now"
(a workflow that failed, a package that was deleted). Fields the payload cannot supply raise
:class:`UnmappablePayload` naming them. :func:`build_spec` then merges
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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from canaryflow.errors import ConfigError
from canaryflow.spec import ReleaseSpec, deep_merge, validate_spec

GENERIC_KEYS = frozenset({"service", "version", "environment", "image", "spec"})
SHORT_SHA = 12


class UnmappablePayload(ConfigError):
    """The payload lacks what a release needs; ``fields`` names the missing or wrong parts."""


@dataclass(frozen=True)
class ReleaseRequest:
    source: str
    event: str
    service: Any
    version: Any
    environment: Any = None
    image: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ignored:
    reason: str


def _dig(data: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _need(data: Any, path: str, prefix: str = "") -> Any:
    value = _dig(data, path)
    if value in (None, ""):
        raise UnmappablePayload(f"payload has no {prefix}{path}", fields=(f"{prefix}{path}",))
    return value


def _repo_service(payload: dict[str, Any]) -> str:
    return str(_need(payload, "repository.name")).lower()


def _short(sha: Any, path: str) -> str:
    if not isinstance(sha, str) or not sha:
        raise UnmappablePayload(f"payload has no {path}", fields=(path,))
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

def map_github(event: str, payload: dict[str, Any], *, workflows: list[str] | tuple[str, ...] = (),
               allow_overrides: bool = True) -> ReleaseRequest | Ignored:
    action = payload.get("action")
    if event == "deployment":
        deployment = _need(payload, "deployment")
        custom = deployment.get("payload")
        if isinstance(custom, str):  # the REST API accepts the payload as a JSON string too
            try:
                custom = json.loads(custom) if custom.strip() else {}
            except json.JSONDecodeError:
                raise UnmappablePayload("deployment.payload is not JSON", fields=("deployment.payload",)) from None
        custom = custom if isinstance(custom, dict) else {}
        return ReleaseRequest(
            source="github", event=event,
            service=custom.get("service") or _repo_service(payload),
            version=custom.get("version") or _short(deployment.get("sha"), "deployment.sha"),
            environment=_need(payload, "deployment.environment"),
            image=custom.get("image"),
            overrides=_overrides(custom.get("spec"), "deployment.payload.spec", allow_overrides))
    if event == "release":
        if action != "published":
            return Ignored(f"release action {action!r} (only 'published' starts a release)")
        return ReleaseRequest(source="github", event=event, service=_repo_service(payload),
                              version=_need(payload, "release.tag_name"))
    if event == "registry_package":
        if action != "published":
            return Ignored(f"registry_package action {action!r} (only 'published' starts a release)")
        package = _need(payload, "registry_package")
        tag = _dig(package, "package_version.container_metadata.tag.name")
        version = tag or _dig(package, "package_version.version")
        if not tag and isinstance(version, str) and version.startswith("sha256:"):
            return Ignored("registry_package published without a tag (an untagged digest)")
        if not version:
            raise UnmappablePayload("payload has no registry_package.package_version.version",
                                    fields=("registry_package.package_version.version",))
        return ReleaseRequest(source="github", event=event,
                              service=str(_need(payload, "registry_package.name")).lower(),
                              version=version, image=_dig(package, "package_version.package_url") or None)
    if event == "workflow_run":
        run = _need(payload, "workflow_run")
        if action != "completed" or run.get("conclusion") != "success":
            return Ignored(f"workflow_run {action!r}/{run.get('conclusion')!r} "
                           "(only a completed, successful run starts a release)")
        if workflows and run.get("name") not in workflows:
            return Ignored(f"workflow {run.get('name')!r} is not one of the configured workflows")
        return ReleaseRequest(source="github", event=event, service=_repo_service(payload),
                              version=_short(run.get("head_sha"), "workflow_run.head_sha"))
    return Ignored(f"GitHub event {event!r} has no release mapping")


# --- GitLab ----------------------------------------------------------------------------------------

def _project_service(payload: dict[str, Any]) -> str:
    path = _dig(payload, "project.path_with_namespace") or _need(payload, "project.name")
    return str(path).rsplit("/", 1)[-1].lower()


def map_gitlab(event: str, payload: dict[str, Any]) -> ReleaseRequest | Ignored:
    if event == "Pipeline Hook":
        attributes = _need(payload, "object_attributes")
        status = attributes.get("status")
        if status != "success":
            return Ignored(f"pipeline status {status!r} (only 'success' starts a release)")
        variables = {v.get("key"): v.get("value") for v in attributes.get("variables") or []
                     if isinstance(v, dict)}
        version = attributes.get("ref") if attributes.get("tag") else None
        return ReleaseRequest(
            source="gitlab", event=event,
            service=variables.get("CANARYFLOW_SERVICE") or _project_service(payload),
            version=variables.get("CANARYFLOW_VERSION") or version
            or _short(attributes.get("sha"), "object_attributes.sha"),
            environment=variables.get("CANARYFLOW_ENVIRONMENT"),
            image=variables.get("CANARYFLOW_IMAGE"))
    if event == "Deployment Hook":
        status = payload.get("status")
        if status != "success":
            return Ignored(f"deployment status {status!r} (only 'success' starts a release)")
        return ReleaseRequest(source="gitlab", event=event, service=_project_service(payload),
                              version=_need(payload, "short_sha"), environment=_need(payload, "environment"))
    return Ignored(f"GitLab event {event!r} has no release mapping")


# --- Generic ---------------------------------------------------------------------------------------

def map_generic(payload: dict[str, Any], *, allow_overrides: bool = True) -> ReleaseRequest:
    unknown = sorted(set(payload) - GENERIC_KEYS)
    if unknown:
        raise UnmappablePayload(f"unknown field(s) {unknown}; allowed: {sorted(GENERIC_KEYS)}",
                                fields=tuple(unknown))
    image = payload.get("image")
    if image is not None and not isinstance(image, str):
        raise UnmappablePayload("image must be a string", fields=("image",))
    return ReleaseRequest(source="generic", event="release", service=payload.get("service"),
                          version=payload.get("version"), environment=payload.get("environment"),
                          image=image, overrides=_overrides(payload.get("spec"), "spec", allow_overrides))


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
