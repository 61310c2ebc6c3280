"""Kubernetes `Status` error bodies with the API server's own reasons and message wording.

Client code branches on `reason` and on the HTTP code, and people read the message in logs, so both
copy the real server (k8s.io/apimachinery/pkg/api/errors) rather than inventing text.
"""

from __future__ import annotations

from typing import Any

from .resources import Resource


class ApiError(Exception):
    """Raised anywhere below the HTTP layer; the server turns it into a Status response."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            status["details"] = self.details
        return status


def _details(res: Resource, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {"kind": res.plural}
    if name:
        details["name"] = name
    if res.group:
        details["group"] = res.group
    return details


def not_found(res: Resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{res.qualified} "{name}" not found', _details(res, name))


def already_exists(res: Resource, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{res.qualified} "{name}" already exists', _details(res, name))


def conflict(res: Resource, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {res.qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        _details(res, name),
    )


def invalid(res: Resource, name: str, field: str, detail: str) -> ApiError:
    qualified_kind = f"{res.kind}.{res.group}" if res.group else res.kind
    message = f'{qualified_kind} "{name}" is invalid: {field}: {detail}'
    details = _details(res, name)
    details["kind"] = res.kind
    details["causes"] = [{"reason": "FieldValueInvalid", "message": detail, "field": field}]
    return ApiError(422, "Invalid", message, details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unprocessable(message: str) -> ApiError:
    """JSON-patch failures (a failed `test`, a missing path) come back as a bare 422."""
    return ApiError(422, "", message)


def unsupported_media_type(accepted: tuple[str, ...]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(
    res: Resource | None,
    user: str,
    verb: str,
    resource_label: str,
    namespace: str,
    name: str,
) -> ApiError:
    """The authorizer's wording, e.g. `deployments.apps "x" is forbidden: User "u" cannot patch ...`."""
    subject = res.qualified if res else resource_label
    if name:
        subject += f' "{name}"'
    group = res.group if res else ""
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    message = (
        f'{subject} is forbidden: User "{user}" cannot {verb} resource "{resource_label}" '
        f'in API group "{group}" {where}'
    )
    details: dict[str, Any] = {"kind": res.plural if res else resource_label}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return ApiError(403, "Forbidden", message, details)


def method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def resource_not_served() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def gone(requested: str, oldest: int) -> ApiError:
    return ApiError(410, "Expired", f"too old resource version: {requested} ({oldest})")


def injected(code: int, res: Resource | None, name: str, retry_after: int) -> ApiError:
    """The error a fault rule asked for, shaped like the real server's answer for that code."""
    if code == 409 and res is not None:
        return conflict(res, name or "")
    if code == 429:
        return ApiError(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
            {"retryAfterSeconds": retry_after},
            {"Retry-After": str(retry_after)},
        )
    if code == 500:
        return ApiError(
            500, "InternalError", "Internal error occurred: injected fault", {"causes": [{"message": "injected fault"}]}
        )
    if code == 503:
        return ApiError(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
            headers={"Retry-After": str(retry_after)},
        )
    if code == 504:
        return ApiError(504, "Timeout", "the server was unable to return a response in the time allotted")
    if code == 404 and res is not None:
        return not_found(res, name or "")
    if code == 403:
        return ApiError(403, "Forbidden", "forbidden: injected fault")
    return ApiError(code, "", f"injected fault (HTTP {code})")
