"""The bytes both ends agree on: throughput bodies and latency time stamps.

The app (server process) and the runner (client process) import this module, so the body a
row must produce is defined once. Bodies are built from distinct chunks so that a response with
lost, repeated or reordered chunks fails verification even when its size is right.
"""

from __future__ import annotations

import functools
import time


@functools.lru_cache(maxsize=8)
def chunks(count: int, size: int) -> tuple[bytes, ...]:
    """Return ``count`` distinct chunks of exactly ``size`` bytes.

    Chunk ``i`` is ``i`` in decimal and a newline, right-aligned with dots (cut to ``size``).
    Cached so that building the chunks is never part of a timed request.

    >>> chunks(2, 4)
    (b'..0\\n', b'..1\\n')
    """
    if count < 0 or size < 1:
        raise ValueError(f"need count >= 0 and size >= 1, got count={count} size={size}")
    return tuple((b"%d\n" % i).rjust(size, b".")[-size:] for i in range(count))


def body(count: int, size: int) -> bytes:
    """Return the whole body of a throughput row: ``chunks(count, size)`` joined."""
    return b"".join(chunks(count, size))


def stamp() -> bytes:
    """Return one latency record: ``time.monotonic_ns()`` now, in decimal, and a newline.

    CLOCK_MONOTONIC is system-wide on Linux, so the client process can subtract it from its own
    reading of the same clock.
    """
    return b"%d\n" % time.monotonic_ns()
