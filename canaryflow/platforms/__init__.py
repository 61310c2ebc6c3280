"""Platforms by name. ``create`` raises on a name it does not know rather than guessing."""

from __future__ import annotations

from canaryflow.errors import ConfigError
from canaryflow.platforms.base import Platform
from canaryflow.settings import Settings

__all__ = ["Platform", "create", "PLATFORMS"]

PLATFORMS = ("local",)


def create(name: str, *, settings: Settings, service: str) -> Platform:
    if name == "local":
        from canaryflow.platforms.local import LocalPlatform

        return LocalPlatform(settings.local_controller_url, service=service)
    raise ConfigError(f"unknown platform {name!r}; known: {', '.join(PLATFORMS)}", fields=("platform",))
