"""The rows of the benchmark table, and nothing else.

A row names an endpoint pair in :mod:`benchmarks.app` (ours and the baseline), how much to
ask of it at full and at smoke size, and the target it must meet. Adding a row is adding an
entry to :data:`CASES` (and an endpoint, if the producer kind is new).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

#: The two sides of every row, in the order each round runs them.
SIDES = ("ours", "baseline")


@dataclass(frozen=True)
class Throughput:
    """A body of ``chunks`` chunks of ``chunk_bytes`` bytes, timed by curl on both sides.

    Passes when the baseline's median time is at least ``min_ratio`` times ours.
    """

    name: str
    description: str
    ours: str
    baseline: str
    chunks: int
    smoke_chunks: int
    chunk_bytes: int
    min_ratio: float

    def count(self, smoke: bool) -> int:
        """Return the number of chunks to serve."""
        return self.smoke_chunks if smoke else self.chunks

    def path(self, side: str, smoke: bool) -> str:
        """Return the path (with query) of ``side``'s endpoint."""
        base = self.ours if side == "ours" else self.baseline
        return f"{base}?chunks={self.count(smoke)}&size={self.chunk_bytes}"

    def expected_bytes(self, smoke: bool) -> int:
        """Return the exact body size both sides must send."""
        return self.count(smoke) * self.chunk_bytes

    def target(self) -> str:
        """Return the target for the table."""
        return f">= {self.min_ratio:g}x"


@dataclass(frozen=True)
class Latency:
    """A slow producer (one time stamp every ``interval_ms``), read by a raw-socket client.

    Passes when the median added latency (receive - yield) of ours is at most ``max_ms``.
    """

    name: str
    description: str
    ours: str
    baseline: str
    chunks: int
    smoke_chunks: int
    interval_ms: int
    max_ms: float

    def count(self, smoke: bool) -> int:
        """Return the number of time stamps to serve."""
        return self.smoke_chunks if smoke else self.chunks

    def path(self, side: str, smoke: bool) -> str:
        """Return the path (with query) of ``side``'s endpoint."""
        base = self.ours if side == "ours" else self.baseline
        return f"{base}?chunks={self.count(smoke)}&interval_ms={self.interval_ms}"

    def target(self) -> str:
        """Return the target for the table."""
        return f"<= {self.max_ms:g} ms"


Case: TypeAlias = Throughput | Latency

CASES: tuple[Case, ...] = (
    Throughput(
        name="async",
        description="async generator, 32-byte chunks",
        ours="/async/ours",
        baseline="/async/starlette",
        chunks=200_000,
        smoke_chunks=2_000,
        chunk_bytes=32,
        min_ratio=20,
    ),
    Throughput(
        name="sync",
        description="sync generator, 32-byte chunks",
        ours="/sync/ours",
        baseline="/sync/starlette",
        chunks=50_000,
        smoke_chunks=500,
        chunk_bytes=32,
        min_ratio=100,
    ),
    Latency(
        name="latency",
        description="added latency (receive - yield), a chunk every 20 ms",
        ours="/latency/ours",
        baseline="/latency/starlette",
        chunks=50,
        smoke_chunks=5,
        interval_ms=20,
        max_ms=1.0,
    ),
)
