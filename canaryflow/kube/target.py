"""Where a release lands on Kubernetes: the ``kubernetes`` section of a release spec.

Only names and templates live here; the namespace is the spec's own ``namespace``. Fields left out
take sensible defaults derived from the service name, so the smallest spec is ``router: replicas``.
"""

from __future__ import annotations

import string
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

# Kubernetes object names (DNS-1123 labels); repeated here because spec.py imports this module.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
Router = Literal["replicas", "istio", "gateway-api"]

#: Placeholders the image and canary_url templates may use.
TEMPLATE_PLACEHOLDERS = frozenset({"service", "version", "namespace", "deployment"})

#: Fields each router cannot do without (the others have defaults).
ROUTER_REQUIRED: dict[str, tuple[str, ...]] = {
    "replicas": (),
    "istio": ("virtual_service",),
    "gateway-api": ("http_route",),
}


def _check_template(value: str | None) -> str | None:
    if value is None:
        return value
    names = {m.group("named") or m.group("braced") for m in string.Template.pattern.finditer(value)}
    unknown = sorted(n for n in names if n and n not in TEMPLATE_PLACEHOLDERS)
    if unknown:
        raise ValueError(f"unknown placeholder(s) {unknown}; allowed: {sorted(TEMPLATE_PLACEHOLDERS)}")
    return value


class KubernetesTarget(BaseModel):
    """The Kubernetes objects one release touches.

    The canary always runs as its own Deployment ``<deployment>-canary`` (pods labelled
    ``version=<new version>`` and ``track=canary``); the router decides how users reach it.
    """

    model_config = ConfigDict(extra="forbid")

    deployment: str | None = Field(default=None, pattern=NAME_PATTERN, max_length=253,
                                   description="Stable Deployment; default: the service name")
    container: str | None = Field(default=None, description="Container to update; default: the one named "
                                                              "like the service, else the first")
    image: str | None = Field(default=None, description="Image template, e.g. registry.example.com/checkout:$version; "
                                                          "default: the stable image with its tag replaced")
    router: Router = Field(default="replicas", description="How users reach the canary: replicas, istio or gateway-api")
    total_replicas: int | None = Field(default=None, ge=1,
                                       description="replicas router: the replicas split between stable and "
                                                   "canary; other routers: the canary Deployment's replicas. Default: "
                                                   "the stable Deployment's replicas")
    virtual_service: str | None = Field(default=None, pattern=NAME_PATTERN, description="istio: the VirtualService")
    host: str | None = Field(default=None, description="istio: destination host to split; default: any host "
                                                        "routed to the stable subset")
    stable_subset: str = Field(default="stable", description="istio: the DestinationRule's stable subset")
    canary_subset: str = Field(default="canary", description="istio: the DestinationRule's canary subset")
    http_route: str | None = Field(default=None, pattern=NAME_PATTERN, description="gateway-api: the HTTPRoute")
    stable_service: str | None = Field(default=None, pattern=NAME_PATTERN,
                                       description="gateway-api: stable backend Service; default: the service name")
    canary_service: str | None = Field(default=None, pattern=NAME_PATTERN,
                                       description="gateway-api: canary backend Service; default: <service>-canary")
    canary_url: str = Field(default="http://$service-canary.$namespace.svc.cluster.local:8080",
                            description="Base URL reaching the canary pods directly (smoke tests)")

    @field_validator("image", "canary_url")
    @classmethod
    def _known_placeholders(cls, value: str | None) -> str | None:
        return _check_template(value)

    @model_validator(mode="after")
    def _router_fields(self) -> KubernetesTarget:
        missing = [f for f in ROUTER_REQUIRED[self.router] if getattr(self, f) is None]
        if missing:
            raise ValidationError.from_exception_data("KubernetesTarget", [
                InitErrorDetails(type=PydanticCustomError("router_field_missing",
                                                          "required when router is {router}",
                                                          {"router": self.router}),
                                 loc=(name,), input=None)
                for name in missing
            ])
        return self

    # Names with their defaults filled in.
    def deployment_name(self, service: str) -> str:
        return self.deployment or service

    def canary_deployment_name(self, service: str) -> str:
        return f"{self.deployment_name(service)}-canary"

    def stable_service_name(self, service: str) -> str:
        return self.stable_service or service

    def canary_service_name(self, service: str) -> str:
        return self.canary_service or f"{service}-canary"
