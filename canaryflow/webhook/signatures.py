"""Pure request-authentication checks for the webhook sources.

Every comparison of attacker-supplied bytes with a secret-derived value goes through
``hmac.compare_digest``. The result is one of three answers — ``OK``, ``MISSING``, ``INVALID`` —
so a caller can never learn which part of a bad request was wrong (wrong secret, wrong body, stale
timestamp, malformed header all read ``INVALID``). ``reason`` is for the receiver's own log only.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from dataclasses import dataclass
from enum import Enum

SIGNATURE_PREFIX = "sha256="
HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
#: Generic scheme: accept timestamps this far in the past or the future.
DEFAULT_TOLERANCE_SECONDS = 300


class Outcome(Enum):
    OK = "ok"
    MISSING = "signature missing"
    INVALID = "signature invalid"


@dataclass(frozen=True)
class Check:
    outcome: Outcome
    reason: str = ""  # for the log: never contains the secret, the header value or the body

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


OK = Check(Outcome.OK)


def _hmac_hex(secret: str | bytes, message: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def given_digest(header: str) -> str | None:
    """The hex digest of a ``sha256=<hex>`` header in its one canonical form (lower case), or None.

    Only the optional whitespace HTTP allows around a field value (space, tab) is tolerated; a
    space, tab, 0xA0 or folded line *inside* the value makes it no signature at all, so no two
    spellings of one signature exist for anything downstream to tell apart."""
    value = header.strip(" \t")
    if not value.startswith(SIGNATURE_PREFIX):
        return None
    digest = value[len(SIGNATURE_PREFIX):]
    return digest.lower() if HEX_DIGEST.fullmatch(digest) else None


def _matches(header: str, expected_hex: str) -> bool:
    given = given_digest(header)
    # compare_digest on ASCII bytes of equal length takes equal time; the header's format says
    # nothing about the secret, so refusing a malformed one first reveals nothing.
    return given is not None and hmac.compare_digest(given.encode("ascii"), expected_hex.encode("ascii"))


# --- GitHub: X-Hub-Signature-256 over the raw body -------------------------------------------------

def sign_github(secret: str | bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` header GitHub sends for ``body``."""
    return SIGNATURE_PREFIX + _hmac_hex(secret, body)


def verify_github(secret: str | bytes | None, header: str | None, body: bytes) -> Check:
    if not header:
        return Check(Outcome.MISSING, "no X-Hub-Signature-256 header")
    if not secret:
        return Check(Outcome.INVALID, "source not configured")
    if not _matches(header, _hmac_hex(secret, body)):
        return Check(Outcome.INVALID, "HMAC mismatch")
    return OK


# --- GitLab: a shared token in X-Gitlab-Token ------------------------------------------------------

def verify_gitlab(token: str | None, header: str | None) -> Check:
    if not header:
        return Check(Outcome.MISSING, "no X-Gitlab-Token header")
    if not token:
        return Check(Outcome.INVALID, "source not configured")
    # Hash both sides first: compare_digest then sees equal lengths, so the token's length leaks nothing.
    given = hashlib.sha256(header.encode("utf-8", "replace")).digest()
    expected = hashlib.sha256(token.encode("utf-8")).digest()
    if not hmac.compare_digest(given, expected):
        return Check(Outcome.INVALID, "token mismatch")
    return OK


# --- Alertmanager: `Authorization: Bearer <token>` (http_config.authorization.credentials) ------------

BEARER_SCHEME = "bearer"


def verify_bearer(token: str | None, header: str | None) -> Check:
    if not header:
        return Check(Outcome.MISSING, "no Authorization header")
    if not token:
        return Check(Outcome.INVALID, "source not configured")
    scheme, _, credentials = header.strip().partition(" ")
    # Hash both sides (as for GitLab) so the comparison takes the same time whatever the lengths;
    # a wrong scheme is compared too rather than answered early.
    given = hashlib.sha256(credentials.strip().encode("utf-8", "replace")).digest()
    expected = hashlib.sha256(token.encode("utf-8")).digest()
    matches = hmac.compare_digest(given, expected)
    if scheme.lower() != BEARER_SCHEME:
        return Check(Outcome.INVALID, "Authorization scheme is not Bearer")
    if not matches:
        return Check(Outcome.INVALID, "token mismatch")
    return OK


# --- Generic: HMAC over "{timestamp}.{body}" with a freshness window ----------------------------

def generic_message(timestamp: str | int, body: bytes) -> bytes:
    return f"{timestamp}.".encode() + body


def sign_generic(secret: str | bytes, timestamp: str | int, body: bytes) -> str:
    """The ``X-Canaryflow-Signature`` header for ``body`` sent at ``timestamp`` (unix seconds)."""
    return SIGNATURE_PREFIX + _hmac_hex(secret, generic_message(timestamp, body))


def verify_generic(secret: str | bytes | None, timestamp: str | None, header: str | None, body: bytes, *,
                   now: float, tolerance: float = DEFAULT_TOLERANCE_SECONDS) -> Check:
    """Signature first, then freshness: both failures read ``INVALID`` to the caller."""
    if not header or not timestamp:
        return Check(Outcome.MISSING, "no X-Canaryflow-Signature or X-Canaryflow-Timestamp header")
    if not secret:
        return Check(Outcome.INVALID, "source not configured")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return Check(Outcome.INVALID, "timestamp is not unix seconds")
    if not _matches(header, _hmac_hex(secret, generic_message(timestamp, body))):
        return Check(Outcome.INVALID, "HMAC mismatch")
    skew = now - int(timestamp)
    if skew > tolerance:
        return Check(Outcome.INVALID, f"timestamp {math.ceil(skew)} s old (window {int(tolerance)} s)")
    if skew < -tolerance:
        return Check(Outcome.INVALID, f"timestamp {math.ceil(-skew)} s in the future (window {int(tolerance)} s)")
    return OK
