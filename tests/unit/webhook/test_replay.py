"""Idempotency keys from the signed material, and per-key reservations in one process."""

from __future__ import annotations

import asyncio

from canaryflow.webhook.replay import KEY_HEX_CHARS, Reservations, signed_key


def test_key_is_the_source_and_a_digest_of_the_signed_bytes_only():
    key = signed_key("github", b'{"a": 1}')
    source, _, digest = key.partition(":")
    assert source == "github" and len(digest) == KEY_HEX_CHARS and int(digest, 16) >= 0
    assert signed_key("github", b'{"a": 1}') == key  # a replay, a redelivery, another replica
    assert signed_key("github", b'{"a": 2}') != key  # another delivery
    assert signed_key("gitlab", b'{"a": 1}') != key  # the same bytes on another route


def test_reservations_serialise_one_key_and_leave_nothing_behind():
    reservations = Reservations()
    events: list[str] = []

    async def start(key: str, name: str, entered: asyncio.Event | None = None) -> None:
        async with reservations.hold(key):
            events.append(f"{name} in")
            if entered is not None:
                entered.set()
            await asyncio.sleep(0)  # let the others try to enter
            await asyncio.sleep(0)
            events.append(f"{name} out")

    async def scenario() -> None:
        first_in = asyncio.Event()
        first = asyncio.create_task(start("k", "first", first_in))
        await first_in.wait()
        assert len(reservations) == 1
        await asyncio.gather(first, start("k", "copy"), start("other", "other"))

    asyncio.run(scenario())
    # The copy of "k" entered only after the first left; another key did not wait for either.
    assert events.index("copy in") > events.index("first out")
    assert events.index("other in") < events.index("first out")
    assert len(reservations) == 0
