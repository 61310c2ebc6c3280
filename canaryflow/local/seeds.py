"""Seeds for the local platform's random draws: one seed for a whole stack, one stream per process.

Errors, latencies, routing and arrivals are random, as in real traffic; a test that wants to replay
a run passes one seed to the stack, and every process derives its own stream from it. Streams are
derived (a hash of the parent seed and the stream's name), not shared: stable and canary given the
same seed would fail on exactly the same request numbers, a correlation real versions never have.
Without a seed every generator is seeded from OS entropy.

The seed travels as a ``--seed`` command-line flag rather than a ``CANARYFLOW_*`` variable: the
release CLI refuses ``CANARYFLOW_*`` names it does not know, and a flag shows in ``ps`` which
process got which stream.
"""

from __future__ import annotations

import argparse
import hashlib
import random


def derive_seed(seed: int | None, *stream: object) -> int | None:
    """The seed of the named sub-stream of ``seed``; None (OS entropy) stays None."""
    if seed is None:
        return None
    digest = hashlib.sha256(repr((seed, *stream)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def seeded_rng(seed: int | None, *stream: object) -> random.Random:
    """A generator for the named sub-stream of ``seed`` (OS entropy when ``seed`` is None)."""
    return random.Random(derive_seed(seed, *stream))


def seed_flag(seed: int | None) -> list[str]:
    """The command-line flag that hands ``seed`` to a child process (nothing when None)."""
    return [] if seed is None else ["--seed", str(seed)]


def add_seed_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--seed`` flag every platform process takes."""
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of this process's random draws (default: OS entropy)")
