"""Coalescing without delay: ready chunks travel together, a lone chunk travels at once."""

from __future__ import annotations

import time

import pytest

from .clients import H1Connection
from .servers import RunningServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30)]

#: Far fewer than the 200 chunks produced; the ideal is 3 (start, the burst, end).
MAX_FRAMES = 10
#: A sync producer hands each chunk to the event loop from its worker thread, and the wake-up
#: itself (a write to the loop's self-pipe) releases the GIL, so at the start of a burst the
#: loop may take the chunks one or two at a time until its sends fall behind the thread (seen
#: on granian: 16 frames). Every message still carries everything produced when it was taken.
MAX_FRAMES_FROM_A_THREAD = 40


@pytest.mark.parametrize("style", ["async", "sync", "writer"])
def test_a_burst_of_tiny_chunks_arrives_in_a_few_frames(server: RunningServer, style: str) -> None:
    with H1Connection(server.port) as conn:
        conn.send_request("GET", f"/burst?n=200&style={style}")
        response = conn.read_response()

    expected = b"start\n" + b"".join(f"{i:04d}\n".encode() for i in range(200)) + b"end\n"
    assert response.status == 200, response.describe()
    assert response.terminated, response.describe()
    assert response.body == expected, response.describe()
    limit = MAX_FRAMES_FROM_A_THREAD if style == "sync" else MAX_FRAMES
    assert len(response.frames) <= limit, (
        f"{len(response.frames)} chunked frames for 200 chunks produced at once: {response.describe()}"
    )
    assert len(response.reads) <= limit, response.describe()


@pytest.mark.parametrize("style", ["async", "sync", "writer"])
def test_a_slow_producers_first_chunk_arrives_before_the_second_is_produced(
    server: RunningServer, style: str
) -> None:
    arrivals: list[tuple[float, bytes]] = []
    with H1Connection(server.port) as conn:
        conn.send_request("GET", f"/slow?n=4&interval=0.02&style={style}")
        response = conn.read_response(on_frame=lambda frame: arrivals.append((time.monotonic(), frame)))

    assert response.status == 200, response.describe()
    assert response.terminated, response.describe()
    # A chunk held back to wait for the next one would share its chunked frame with it: each
    # frame (one per ASGI message) must hold exactly one chunk, in order. This reads the
    # server's own write boundaries, so a client or server stalled by the scheduler cannot
    # make it pass or fail by timing.
    numbers = [[line.split()[0] for line in frame.decode().splitlines()] for _, frame in arrivals]
    assert numbers == [["0"], ["1"], ["2"], ["3"]], response.describe()
