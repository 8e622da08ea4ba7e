"""The broker on Redis across real worker processes: fan-out, resume, kills, stalls, restarts.

Each test starts its own Redis (no persistence, a free loopback port) and its own workers of
``tests.e2e.broker_app`` (two uvicorn processes, or gunicorn ``--preload -w 2``), talks to them
with raw HTTP/1.1 sockets, and stops everything by pid. A stream says it has joined the broker
with a ``: joined`` comment; the tests wait for that, never for a fixed time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.redis_server import RedisServer, require_redis, start_redis
from tests.sse_parser import ParsedEvent

from .clients import EventStreamReader, http1
from .servers import RunningServer, ServerKind, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

APP = "tests.e2e.broker_app:app"


def _gunicorn(app: str, port: int) -> list[str]:
    return [
        "-m", "gunicorn", app,
        "--bind", f"127.0.0.1:{port}",
        "--workers", "2",
        "--preload",
        "--worker-class", "uvicorn.workers.UvicornWorker",
        "--graceful-timeout", "1",
        "--log-level", "warning",
    ]  # fmt: skip


GUNICORN = ServerKind("gunicorn-preload-2", _gunicorn)


@dataclass
class Cluster:
    """One Redis and the worker processes of one test."""

    redis: RedisServer
    prefix: str
    env: dict[str, str]
    servers: list[RunningServer] = field(default_factory=list)

    def start(self, kind: ServerKind | str = "uvicorn-httptools") -> RunningServer:
        server = start_server(kind, app=APP, env=self.env)
        self.servers.append(server)
        return server


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


def publish(server: RunningServer, text: str, topic: str | None = None) -> dict[str, str]:
    """POST ``text`` to ``/publish``; the JSON answer as strings, with ``status``."""
    path = "/publish" + (f"?topic={topic}" if topic else "")
    response = http1(server.port, "POST", path, body=text.encode(), timeout=15)
    body = {name: str(value) for name, value in json.loads(response.body).items()}
    body["status"] = str(response.status)
    return body


class Stream(EventStreamReader):
    """The app's ``/events`` stream on ``server``, which must answer 200."""

    def __init__(self, server: RunningServer, last_id: str | None = None, query: str = "") -> None:
        super().__init__(server.port, "/events" + query, last_id)
        assert self.head.status == 200, self.head

    def joined(self, count: int = 1, timeout: float = 30.0) -> Stream:
        """Wait until the stream says its subscription is live (``count`` times in all)."""
        deadline = time.monotonic() + timeout
        while self.parser.comments.count("joined") < count and not (self.ended or self.aborted):
            self.read(deadline)
        assert self.parser.comments.count("joined") >= count, (self.parser.comments, self.parser.events)
        return self


def data(events: list[ParsedEvent]) -> list[str]:
    return [event.data for event in events if event.type == "message"]


def test_two_uvicorn_processes_deliver_every_event_to_every_subscriber_once_in_one_order() -> None:
    with cluster() as running:
        a, b = running.start(), running.start()
        streams = [Stream(server).joined() for server in (a, b, a, b, a, b)]
        sent = [publish(server, f"event {n}") for n, server in enumerate([a, b] * 5)]
        assert {item["status"] for item in sent} == {"200"}, sent
        assert {item["pid"] for item in sent} == {str(a.process.pid), str(b.process.pid)}
        ids = [item["id"] for item in sent]
        orders = []
        for stream in streams:
            events = stream.events(10)
            assert sorted(data(events)) == sorted(f"event {n}" for n in range(10)), events
            orders.append([event.last_event_id for event in events])
            stream.close()
    # One global order (the stream's), the same on every worker, with the ids publish returned.
    assert all(order == orders[0] for order in orders), orders
    assert sorted(orders[0]) == sorted(ids)


def test_a_client_resumes_on_the_other_worker_with_exactly_the_events_it_missed() -> None:
    with cluster() as running:
        a, b = running.start(), running.start()
        first = Stream(a).joined()
        for n in range(3):
            publish(b, f"seen {n}")
        seen = first.events(3)
        first.close()
        for n in range(4):
            publish(a, f"missed {n}")
        again = Stream(b, last_id=seen[-1].last_event_id).joined()
        publish(a, "live")
        events = again.events(5)
        again.close()
    assert data(seen) == [f"seen {n}" for n in range(3)]
    assert data(events) == [f"missed {n}" for n in range(4)] + ["live"]


def test_after_a_sigkill_of_its_worker_a_client_resumes_on_another_exactly() -> None:
    with cluster() as running:
        a, b = running.start(), running.start()
        stream = Stream(a).joined()
        publish(b, "one")
        publish(b, "two")
        before = stream.events(2)
        os.kill(a.process.pid, signal.SIGKILL)  # a process this test started
        after_kill = stream.until_closed()
        stream.close()
        publish(b, "three")
        publish(b, "four")
        resumed = Stream(b, last_id=before[-1].last_event_id).joined()
        events = resumed.events(2)
        resumed.close()
    assert stream.aborted, "the killed worker's stream must not look complete"
    assert data(after_kill) == ["one", "two"]
    assert data(events) == ["three", "four"]


def test_a_paused_redis_fails_publishing_clearly_and_streams_continue_after_sigcont() -> None:
    with cluster(BROKER_TIMEOUT="0.5", BROKER_STALL_TIMEOUT="60") as running:
        a, b = running.start(), running.start()
        stream = Stream(a).joined()
        first = publish(b, "before")
        assert stream.events(1)[-1].data == "before"
        running.redis.pause()
        try:
            failed = publish(b, "during")
        finally:
            running.redis.resume()
        assert failed["status"] == "503", failed
        assert "unavailable" in failed["error"], failed
        assert f"127.0.0.1:{running.redis.port}" in failed["error"], failed
        last = publish(b, "after")
        events = stream.events(2)
        while events[-1].last_event_id != last["id"]:
            events = stream.events(len(events) + 1)
        stream.close()
    texts = data(events)
    assert texts[0] == "before"
    assert texts[-1] == "after"
    # The publish that timed out may have reached Redis before the pause held it; if it did,
    # it is delivered once, in its place. Nothing else, nothing twice.
    assert texts in (["before", "after"], ["before", "during", "after"]), texts
    assert first["id"] == events[0].last_event_id


def test_a_redis_restart_that_lost_the_data_resets_streams_instead_of_replaying_wrongly() -> None:
    with cluster(BROKER_TIMEOUT="1", BROKER_STALL_TIMEOUT="60") as running:
        a, b = running.start(), running.start()
        stream = Stream(a).joined()
        old = publish(b, "before the restart")
        assert data(stream.events(1)) == ["before the restart"]
        running.redis.restart()  # no persistence: every stream is gone
        stream.joined(count=2)  # the reset, then live again on the same connection
        assert [event.type for event in stream.parser.events] == ["message", "reset"]
        new = publish(b, "after the restart")
        assert data(stream.events(3)) == ["before the restart", "after the restart"]
        stream.close()
        # A browser that reconnects with an id from before the restart is told to reset.
        late = Stream(b, last_id=old["id"]).joined()
        assert [event.type for event in late.parser.events] == ["reset"]
        late.close()
    assert new["id"] != old["id"]


def test_a_slow_subscriber_is_dropped_with_an_error_and_resumes_from_the_history() -> None:
    count = 200
    with cluster(BROKER_SUBSCRIBER_BUFFER="4") as running:
        a, b = running.start(), running.start()
        slow = Stream(a).joined()
        payload = "x" * 262144
        # 50 MiB while the client reads nothing: more than the socket buffers and the core's
        # bounded queue hold, so the subscription's buffer of 4 overflows.
        sent = [publish(b, f"{n} {payload}")["id"] for n in range(count)]
        events = slow.until_closed(timeout=60)
        slow.close()
        received = [event for event in events if event.type == "message"]
        assert [event.type for event in events][-1] == "error", [event.type for event in events][-3:]
        assert slow.aborted, "a dropped stream must end as an error, not look complete"
        assert len(received) < count
        resumed = Stream(b, last_id=received[-1].last_event_id if received else None).joined()
        rest = resumed.events(count - len(received), timeout=60)
        resumed.close()
    assert [event.last_event_id for event in received + rest] == sent


@pytest.mark.parametrize("bad_id", ["garbage", "events@1-0", "events@000000000000.1-0", "other@x.1-0"])
def test_a_malformed_or_foreign_last_event_id_gets_a_reset_never_a_replay(bad_id: str) -> None:
    with cluster() as running:
        a = running.start()
        publish(a, "something")
        stream = Stream(a, last_id=bad_id).joined()
        publish(a, "live")
        events = stream.events(2)
        stream.close()
    assert [(event.type, event.data) for event in events] == [("reset", "reset"), ("message", "live")]


def test_a_thousand_subscribers_on_two_workers_use_a_handful_of_redis_connections() -> None:
    with cluster() as running:
        a, b = running.start(), running.start()
        before = len(running.redis.clients())
        streams: list[Stream] = []
        try:
            for server in (a, b) * 500:
                streams.append(Stream(server))
            for stream in streams:
                stream.joined(timeout=60)
            clients = running.redis.clients()
            last = publish(a, "to everyone")
            for stream in streams:
                assert data(stream.events(1, timeout=60)) == ["to everyone"]
                assert stream.parser.events[0].last_event_id == last["id"]
        finally:
            for stream in streams:
                stream.close()
    # Per worker: one reader and the pool's few command connections (not one per subscriber).
    assert len(clients) - before <= 8, clients
    assert sum(1 for client in clients if client.get("cmd") == "xread") == 2, clients


def test_gunicorn_preload_with_two_workers_fans_out_and_resumes_across_workers() -> None:
    with cluster() as running:
        server = running.start(GUNICORN)
        streams: dict[int, Stream] = {}
        for _ in range(200):  # the kernel picks the worker of each connection
            stream = Stream(server)
            if stream.pid in streams:
                stream.close()
                continue
            streams[stream.pid] = stream.joined()
            if len(streams) == 2:
                break
        assert len(streams) == 2, "both workers should have accepted one of 200 connections"
        sent = [publish(server, f"event {n}") for n in range(6)]
        # Both workers published (ids unique across the forked workers) ...
        assert len({item["id"] for item in sent}) == 6
        for stream in streams.values():
            assert data(stream.events(6)) == [f"event {n}" for n in range(6)]
        # ... and a client moving from one worker to the other resumes exactly.
        (_, first), (pid_b, second) = streams.items()
        first.close()
        publish(server, "missed")
        seen_last = first.parser.events[-1].last_event_id
        moved = None
        for _ in range(200):
            candidate = Stream(server, last_id=seen_last)
            if candidate.pid == pid_b:
                moved = candidate.joined()
                break
            candidate.close()
        assert moved is not None
        assert data(moved.events(1)) == ["missed"]
        moved.close()
        second.close()


def test_several_topics_on_one_stream_resume_exactly_for_each_across_workers() -> None:
    with cluster() as running:
        a, b = running.start(), running.start()
        stream = Stream(a, query="?topics=news,chat").joined()
        publish(b, "n1", topic="news")
        publish(b, "c1", topic="chat")
        publish(b, "w1", topic="weather")
        seen = stream.events(2)
        stream.close()
        publish(a, "c2", topic="chat")
        publish(a, "n2", topic="news")
        resumed = Stream(b, last_id=seen[-1].last_event_id, query="?topics=news,chat").joined()
        events = resumed.events(2)
        resumed.close()
    assert sorted(data(seen)) == ["c1", "n1"]
    assert sorted(data(events)) == ["c2", "n2"]
