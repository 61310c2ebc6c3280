"""OCI image references, checked before a delivery starts anything. Pure, no I/O.

``image`` comes from the payload on every CI route (a deployment's custom payload, a package URL, a
pipeline variable, the generic body) and is echoed in the answer and the log. Unchecked, an object,
a number or an unencodable string there started a run and then broke the answer. The grammar is
the one of ``distribution/reference`` (what ``docker pull`` accepts)::

    reference := name [ ":" tag ] [ "@" digest ]
    name      := [ domain "/" ] path-component ( "/" path-component )*

A syntax check only: whether the image exists is the platform's business.
"""

from __future__ import annotations

import re
from typing import Any

#: distribution/reference: NameTotalLengthMax.
MAX_NAME_LENGTH = 255
#: A tag is at most 128 characters and a digest is an algorithm and hex: no real reference is longer.
MAX_REFERENCE_LENGTH = MAX_NAME_LENGTH + 1 + 128 + 1 + 200

_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_NAME = rf"(?:(?P<domain>{_DOMAIN})/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?")


def is_image_reference(value: Any) -> bool:
    """True for a string such as ``ghcr.io/acme/checkout:v2`` or ``registry:5000/a/b@sha256:<hex>``."""
    if not isinstance(value, str) or not value.isascii() or len(value) > MAX_REFERENCE_LENGTH:
        return False
    match = REFERENCE.fullmatch(value)
    if match is None or len(match.group("name")) > MAX_NAME_LENGTH:
        return False
    # As docker reads a name: the first component is a registry only if it looks like a host
    # (a dot, a port, "localhost"); otherwise it is part of the repository path, which is lower case.
    domain = match.group("domain")
    return domain is None or "." in domain or ":" in domain or domain == "localhost" or domain.islower()
