"""Platforms by name. ``create`` raises on a name it does not know rather than guessing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from canaryflow.errors import ConfigError
from canaryflow.platforms.base import Platform
from canaryflow.settings import Settings

if TYPE_CHECKING:
    from canaryflow.spec import ReleaseSpec

__all__ = ["Platform", "create", "PLATFORMS"]

PLATFORMS = ("local", "kubernetes")


def create(name: str, *, settings: Settings, service: str, spec: ReleaseSpec | None = None) -> Platform:
    """The platform ``name``. ``kubernetes`` needs ``spec`` (its namespace, version and kubernetes section)."""
    if name == "local":
        from canaryflow.platforms.local import LocalPlatform

        return LocalPlatform(settings.local_controller_url, service=service)
    if name == "kubernetes":
        if spec is None or spec.kubernetes is None:
            raise ConfigError("platform kubernetes needs the release spec's kubernetes section", fields=("kubernetes",))
        from canaryflow.platforms.kubernetes import KubernetesPlatform

        return KubernetesPlatform.from_settings(settings, spec)
    raise ConfigError(f"unknown platform {name!r}; known: {', '.join(PLATFORMS)}", fields=("platform",))
