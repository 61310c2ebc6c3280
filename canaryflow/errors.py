"""One exception tree for canaryflow, so callers can catch by meaning, not by library.

Every error carries enough context to act on, and never a secret: messages are built from
names and numbers only, never from tokens, headers or kubeconfig contents.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


class CanaryflowError(Exception):
    """Base of every error canaryflow raises on purpose."""


class ConfigError(CanaryflowError):
    """Invalid release spec or settings. ``fields`` names every offending field."""

    def __init__(self, message: str, *, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields


class PlatformError(CanaryflowError):
    """The platform refused or failed an operation. ``transient`` tells retries apart from bugs."""

    def __init__(self, message: str, *, operation: str, transient: bool = False) -> None:
        super().__init__(f"{operation}: {message}")
        self.operation = operation
        self.transient = transient


class RolloutStuck(PlatformError):
    """The new version never became ready before its deadline."""

    def __init__(self, message: str) -> None:
        super().__init__(message, operation="wait_ready", transient=False)


class MetricSourceError(CanaryflowError):
    """The metric source was unreachable or answered something that is not a valid result."""

    def __init__(self, message: str, *, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind  # "error" | "timeout"


class PreflightError(CanaryflowError):
    """A precondition of the release does not hold; nothing was changed.

    ``reason`` is set when the cause is passing (Prometheus down): the release may be retried later.
    """

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class ReleaseBlocked(CanaryflowError):
    """Another release of the same service holds the service's lock; nothing was changed."""


def safe_url(url: str) -> str:
    """The URL without any user:password part: what messages, logs and reprs may name."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url
