"""Resumable streams across real worker processes on one Redis: refreshes, cancel, kills.

Each test starts its own Redis (no persistence, a free loopback port) and two uvicorn processes
of ``tests.e2e.resumable_app`` (worker A and worker B, each on its own port), talks to them
with raw HTTP/1.1 sockets, and stops everything by pid. A job is started on A; clients attach
through B (and A). The producer keeps its own record in Redis, so the tests read what happened
to it (when a cancellation reached it, when its ``finally`` ran) from its own clock, and it
waits for the test at gates, so a refresh is mid-stream by construction, never by timing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.redis_server import RedisServer, require_redis, start_redis
from tests.sse_parser import ParsedEvent

from .clients import EventStreamReader, http1
from .servers import RunningServer, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

APP = "tests.e2e.resumable_app:app"


@dataclass
class Cluster:
    """One Redis and the worker processes of one test."""

    redis: RedisServer
    prefix: str
    env: dict[str, str]
    servers: list[RunningServer] = field(default_factory=list)

    def start(self) -> RunningServer:
        server = start_server("uvicorn-httptools", app=APP, env=self.env)
        self.servers.append(server)
        return server

    def open_gate(self, name: str) -> None:
        """Let the producer ``name`` go on to its next gate."""
        self.redis.command("RPUSH", f"{self.prefix}gate:{name}", "go")


@contextlib.contextmanager
def cluster(**settings: str) -> Iterator[Cluster]:
    require_redis()
    with start_redis() as redis:
        prefix = f"e2e-{uuid.uuid4().hex[:8]}:"
        env = {"BROKER_URL": redis.url, "BROKER_PREFIX": prefix, **settings}
        running = Cluster(redis, prefix, env)
        try:
            yield running
        finally:
            for server in running.servers:
                server.stop()


def post(server: RunningServer, path: str) -> dict[str, object]:
    response = http1(server.port, "POST", path, timeout=15)
    assert response.status == 200, (response.status, response.body)
    result: dict[str, object] = json.loads(response.body)
    return result


def start_job(server: RunningServer, name: str, **settings: int) -> str:
    query = "&".join([f"name={name}", *(f"{key}={value}" for key, value in settings.items())])
    started = post(server, f"/start?{query}")
    assert started["pid"] == server.process.pid
    return str(started["id"])


def record(server: RunningServer, name: str) -> dict[str, float]:
    result: dict[str, float] = json.loads(http1(server.port, "GET", f"/records/{name}", timeout=15).body)
    return result


class Attached(EventStreamReader):
    """A client's event stream of one resumable stream, read off a raw socket as a browser would."""

    def __init__(self, server: RunningServer, stream_id: str, last_id: str | None = None) -> None:
        super().__init__(server.port, f"/streams/{stream_id}", last_id)


def tokens(events: list[ParsedEvent]) -> list[str]:
    return [event.data for event in events if event.type == "message"]


def ending(events: list[ParsedEvent]) -> str | None:
    if not events or events[-1].type != "end":
        return None
    return str(json.loads(events[-1].data)["outcome"])


def test_a_job_started_on_one_worker_is_followed_through_refreshes_on_both_with_every_token_once() -> None:
    total, gate_every = 60, 10
    with cluster() as running:
        a, b = running.start(), running.start()
        stream_id = start_job(a, "refreshes", tokens=total, gate_every=gate_every)
        received: list[ParsedEvent] = []
        pids = []
        last_id: str | None = None
        # Five refreshes, each at a gate (the producer waits before tokens 10, 20, ..., 50), so
        # none of them can see the ending; the last client reads tokens 50-59 and the ending.
        for refresh, server in enumerate([b, a, b, a, b]):
            attached = Attached(server, stream_id, last_id)
            assert attached.head.status == 200, attached.head
            pids.append(attached.pid)
            # Read up to the gate the producer waits at: the refresh is mid-stream.
            wanted = gate_every * (refresh + 1) - len(received)
            events = attached.events(wanted)
            attached.close()  # the page is reloaded (or the network drops)
            received.extend(events)
            last_id = attached.parser.last_event_id
            running.open_gate("refreshes")
        rest = Attached(a, stream_id, last_id)
        received.extend(rest.until_closed())
        rest.close()
        missing = http1(b.port, "GET", "/streams/AAAAAAAAAAAAAAAA", timeout=15)
    assert tokens(received) == [f"token {n}" for n in range(total)]
    assert ending(received) == "complete"
    assert rest.ended
    assert not rest.aborted
    assert set(pids) == {a.process.pid, b.process.pid}
    assert missing.status == 404


def test_cancel_from_the_other_worker_stops_the_producer_and_ends_every_client_with_cancelled(
    record_property: Callable[[str, object], None],
) -> None:
    latencies = []
    with cluster() as running:
        a, b = running.start(), running.start()
        for run in range(5):
            name = f"cancelled-{run}"
            stream_id = start_job(a, name, tokens=100, hold_after=3)
            watching = [Attached(b, stream_id), Attached(a, stream_id)]
            for attached in watching:
                assert tokens(attached.events(3)) == ["token 0", "token 1", "token 2"]
            stopped = post(b, f"/streams/{stream_id}/cancel")
            endings = [ending(attached.until_closed()) for attached in watching]
            for attached in watching:
                attached.close()
            seen = record(b, name)
            assert stopped["stopped"] is True
            assert stopped["pid"] == b.process.pid  # asked on B, the job runs on A
            assert seen["pid"] == a.process.pid
            assert endings == ["cancelled", "cancelled"]
            # The cancellation reached the await the producer was in, then its finally ran;
            # both after B was asked (one monotonic clock for every process of the machine).
            requested_at = float(str(stopped["requested_at"]))
            assert requested_at < seen["cancelled_at"] <= seen["finally_at"]
            latencies.append((seen["cancelled_at"] - requested_at) * 1000)
            assert post(b, f"/streams/{stream_id}/cancel")["stopped"] is False
    record_property("cancel_latency_ms", [round(ms, 2) for ms in latencies])
    print(f"\ncancel on B -> CancelledError in the producer on A, ms: {[round(ms, 2) for ms in latencies]}")


def test_a_sigkill_of_the_producers_worker_ends_the_attached_client_with_an_error_ending() -> None:
    with cluster(RESUMABLE_LEASE="1") as running:
        a, b = running.start(), running.start()
        stream_id = start_job(a, "killed", tokens=100, hold_after=2)
        attached = Attached(b, stream_id)
        assert tokens(attached.events(2)) == ["token 0", "token 1"]
        os.kill(a.process.pid, signal.SIGKILL)  # a process this test started
        events = attached.until_closed()
        attached.close()
        later = Attached(b, stream_id)
        later_events = later.until_closed()
        later.close()
        cancelled = post(b, f"/streams/{stream_id}/cancel")
    assert tokens(events) == ["token 0", "token 1"]
    assert ending(events) == "error"
    assert attached.ended
    assert not attached.aborted
    # A client that comes later replays the tokens and learns the same.
    assert (tokens(later_events), ending(later_events)) == (["token 0", "token 1"], "error")
    assert cancelled["stopped"] is False


def test_a_sigterm_of_the_producers_worker_ends_the_attached_client_with_the_shutdown_ending() -> None:
    with cluster() as running:
        a, b = running.start(), running.start()
        stream_id = start_job(a, "stopped", tokens=100, hold_after=2)
        attached = Attached(b, stream_id)
        assert tokens(attached.events(2)) == ["token 0", "token 1"]
        a.process.send_signal(signal.SIGTERM)  # a process this test started
        events = attached.until_closed()
        attached.close()
        assert a.process.wait(30) is not None
        seen = record(b, "stopped")
    assert ending(events) == "shutdown"
    assert attached.ended
    assert not attached.aborted
    assert "cancelled_at" in seen
    assert "finally_at" in seen
