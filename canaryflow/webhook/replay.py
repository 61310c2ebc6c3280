"""Replays and copies of a delivery start no second run: the idempotency key comes from what was signed.

Delivery-id headers are covered by no signature. A key made of the delivery id let a captured
request, resent with a new id, start a new run; a memory of seen signatures held in one process
did not survive a restart, was not shared by replicas, and was written only after the run had been
created, so simultaneous copies all got through. The key is therefore a digest of the signed
material itself — the exact bytes the signature or token vouches for, never a header's spelling:

- GitHub: the raw body (``X-Hub-Signature-256`` signs it);
- generic: ``"<timestamp>.<body>"`` (a new timestamp is a new delivery; a stale one is refused);
- GitLab: the raw body (the token authenticates the sender, not the body, but the body is all a
  replay can reuse).

Prefect then dedupes on the key by itself (a unique index per flow), across concurrent copies,
restarts and replicas, for as long as the run exists. :class:`Reservations` only makes copies
arriving at one process wait for each other, so the first one's answer is the one they share.
The key does not depend on the secret: a redelivery after a secret rotation still finds its run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator

#: Hex characters of the digest in a key: 128 bits, far beyond any collision among deliveries.
KEY_HEX_CHARS = 32


def signed_key(source: str, signed: bytes) -> str:
    """``<source>:<digest of the signed material>`` — the Prefect idempotency key of a delivery."""
    digest = hashlib.sha256(source.encode() + b"\0" + signed).hexdigest()
    return f"{source}:{digest[:KEY_HEX_CHARS]}"


class Reservations:
    """Per-key locks held while a run is started, dropped when the last holder leaves (memory stays
    bounded by the requests in flight)."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._held)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._held.get(key, (asyncio.Lock(), 0))
        self._held[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._held[key]
            if users == 1:
                del self._held[key]
            else:
                self._held[key] = (lock, users - 1)
