"""The Redis Streams backend against a real Redis: connections, stalls, restarts, data loss.

Each test that stops, pauses or restarts Redis starts a server of its own (``start_redis``), so
the others keep theirs. Nothing here waits a fixed time for an ordering: tests wait for what
the broker does (an event, an exception) under ``anyio.fail_after``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest

from streaming_responses import (
    BrokerError,
    BrokerUnavailable,
    EventBroker,
    EventsLost,
    ServerSentEvent,
)
from tests.redis_server import RedisServer, redis_server, require_redis, start_redis

__all__ = ("redis_server",)

pytestmark = pytest.mark.anyio


async def take(
    events: AsyncIterator[ServerSentEvent], count: int, seconds: float = 10
) -> list[ServerSentEvent]:
    with anyio.fail_after(seconds):
        return [await anext(events) for _ in range(count)]


def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}:"


async def test_one_reader_connection_serves_every_subscription_of_a_process(
    redis_server: RedisServer,
) -> None:
    before = len(redis_server.clients())
    async with EventBroker.from_url(redis_server.url, key_prefix=prefix(), max_connections=2) as broker:
        subscriptions = []
        for n in range(300):
            subscription = broker.subscribe(topics=[f"topic{n % 3}"])
            await subscription.__aenter__()
            subscriptions.append(subscription)
        for n in range(3):
            await broker.publish(f"to topic{n}", topic=f"topic{n}")
        for n, subscription in enumerate(subscriptions):
            assert [e.data for e in await take(subscription, 1)] == [f"to topic{n % 3}"]
        clients = redis_server.clients()
        # One reader (blocked in XREAD on all three topics) and the small command pool.
        assert len(clients) - before <= 3, clients
        assert sum(1 for client in clients if client.get("cmd") == "xread") == 1, clients
        for subscription in subscriptions:
            subscription.close()
    assert len(redis_server.clients()) == before


async def test_each_event_is_decoded_once_per_process_and_shared_by_every_subscriber(
    redis_server: RedisServer,
) -> None:
    broker = EventBroker.from_url(redis_server.url, key_prefix=prefix())
    async with broker, broker.subscribe() as first, broker.subscribe() as second:
        await broker.publish({"n": 1})
        [a], [b] = await take(first, 1), await take(second, 1)
    assert a is b
    assert a.data == '{"n":1}'  # on Redis, data arrives as the text that was sent


async def test_the_history_is_trimmed_to_about_its_bound(redis_server: RedisServer) -> None:
    key_prefix = prefix()
    async with EventBroker.from_url(redis_server.url, key_prefix=key_prefix, history=10) as broker:
        for n in range(1000):
            await broker.publish(str(n))
    length = int(redis_server.command("XLEN", key_prefix + "events").split(b"\r\n")[0][1:])
    # MAXLEN ~ trims whole nodes of up to 100 entries: at least 10 kept, never all 1000.
    assert 10 <= length <= 10 + 100


async def test_a_paused_redis_makes_publish_fail_clearly_and_subscribers_continue_after() -> None:
    require_redis()
    with start_redis() as server:
        key_prefix = prefix()
        settings = {"key_prefix": key_prefix, "timeout": 0.5, "stall_timeout": 120.0}
        async with EventBroker.from_url(server.url, **settings) as broker:  # type: ignore[arg-type]
            async with broker.subscribe() as events:
                await broker.publish("before")
                assert [e.data for e in await take(events, 1)] == ["before"]
                server.pause()
                try:
                    with pytest.raises(BrokerUnavailable, match=f"127.0.0.1:{server.port}.*publish"):
                        await broker.publish("during")
                finally:
                    server.resume()
                after = await broker.publish("after")
                received: list[ServerSentEvent] = []
                while not received or received[-1].id != after.id:
                    received.extend(await take(events, 1, seconds=30))
            # Exactly what Redis holds after "before", once each, in its order: the publish
            # that timed out may have reached Redis before the pause took hold of it.
            stored = server.command("XRANGE", key_prefix + "events", "-", "+").count(b"\r\nd\r\n")
            assert [e.data for e in received][-1] == "after"
            assert len(received) == stored - 1
            assert len({e.id for e in received}) == len(received)


async def test_a_redis_restart_that_lost_the_data_ends_live_subscriptions_with_events_lost() -> None:
    require_redis()
    with start_redis() as server:
        settings = {"key_prefix": prefix(), "timeout": 1.0, "stall_timeout": 120.0}
        async with EventBroker.from_url(server.url, **settings) as broker:  # type: ignore[arg-type]
            async with broker.subscribe() as events:
                seen = await broker.publish("seen")
                assert [e.id for e in await take(events, 1)] == [seen.id]
                server.restart()  # no persistence: the stream and its epoch are gone
                with pytest.raises(EventsLost, match="lost in a restart"):
                    await take(events, 1, seconds=30)
            with pytest.raises(EventsLost):
                async with broker.subscribe(seen.id):
                    pass
            async with broker.subscribe() as events:  # a fresh start works
                fresh = await broker.publish("fresh")
                assert [e.id for e in await take(events, 1)] == [fresh.id]
            assert fresh.id != seen.id


async def test_subscribers_are_not_left_hanging_when_redis_stays_away() -> None:
    require_redis()
    with start_redis() as server:
        settings = {"key_prefix": prefix(), "timeout": 0.5, "stall_timeout": 1.0}
        async with EventBroker.from_url(server.url, **settings) as broker:  # type: ignore[arg-type]
            async with broker.subscribe() as events:
                server.stop()
                with pytest.raises(BrokerUnavailable, match="no answer for 1s"):
                    await take(events, 1, seconds=30)
            with pytest.raises(BrokerUnavailable):
                await broker.publish("nobody there")


async def test_the_reader_reconnects_with_backoff_not_in_a_busy_loop() -> None:
    require_redis()
    with start_redis() as server:
        broker = EventBroker.from_url(server.url, key_prefix=prefix(), timeout=0.5, stall_timeout=2.0)
        async with broker, broker.subscribe() as events:
            server.stop()
            # In Redis's place, a server that accepts each connection and closes it at once.
            listener = socket.create_server(("127.0.0.1", server.port))
            attempts = 0
            stop = threading.Event()

            def accept() -> None:
                nonlocal attempts
                listener.settimeout(0.05)
                while not stop.is_set():
                    try:
                        conn, _ = listener.accept()
                    except TimeoutError:
                        continue
                    attempts += 1
                    conn.close()

            thread = threading.Thread(target=accept)
            thread.start()
            try:
                with pytest.raises(BrokerUnavailable, match="no answer for 2s"):
                    await take(events, 1, seconds=30)
            finally:
                stop.set()
                thread.join()
                listener.close()
    # Doubling delays from 50 ms: a handful of attempts in 2 s (a busy loop makes thousands).
    assert 2 <= attempts <= 20, attempts


async def test_a_rediss_url_speaks_tls_and_fails_clearly_against_a_plain_server(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url.replace("redis://", "rediss://")
    async with EventBroker.from_url(url, timeout=1.0) as broker:
        assert broker.url.startswith("rediss://")
        with pytest.raises(BrokerUnavailable, match="publish"):
            await broker.publish("over tls")


def test_the_url_shown_never_contains_the_password() -> None:
    broker = EventBroker.from_url("redis://user:s3cret@cache.internal:6380/2")
    assert broker.url == "redis://cache.internal:6380/2"
    assert "s3cret" not in repr(broker)


@pytest.mark.parametrize(
    ("settings", "error", "match"),
    [
        ({"history": 0}, ValueError, "at least 1 event on Redis"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"stall_timeout": None}, TypeError, "stall_timeout"),
        ({"max_connections": 0}, ValueError, "max_connections"),
        ({"key_prefix": 1}, TypeError, "key_prefix"),
    ],
)
def test_bad_redis_settings_are_refused(
    settings: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        EventBroker.from_url("redis://127.0.0.1:6379/0", **settings)  # type: ignore[arg-type]


def test_the_package_imports_without_redis_and_a_redis_url_says_how_to_install_it() -> None:
    code = (
        "import sys\n"
        "sys.modules['redis'] = None\n"
        "import streaming_responses\n"
        "broker = streaming_responses.EventBroker.from_url('memory://')\n"
        "try:\n"
        "    streaming_responses.EventBroker.from_url('redis://127.0.0.1:6379/0')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'streaming-responses[redis]'" in done.stdout


async def test_a_broker_error_from_redis_names_what_it_refused(redis_server: RedisServer) -> None:
    key_prefix = prefix()
    redis_server.command("SET", key_prefix + "events", "not a stream")
    async with EventBroker.from_url(redis_server.url, key_prefix=key_prefix) as broker:
        with pytest.raises(BrokerError, match="refused to publish to topic 'events'"):
            await broker.publish("a")


async def test_a_reader_that_fails_ends_its_subscriptions_instead_of_leaving_them_hanging(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from streaming_responses._broker_redis import RedisBackend

    def broken(*args: object) -> None:
        raise ValueError("an unreadable reply")

    monkeypatch.setattr(RedisBackend, "_dispatch", broken)
    broker = EventBroker.from_url(redis_server.url, key_prefix=prefix())
    async with broker, broker.subscribe() as events:
        await broker.publish("a")
        with pytest.raises(BrokerError, match=r"reader .* failed: ValueError"):
            await take(events, 1)
    assert "the Redis reader" in caplog.text


def pttl(server: RedisServer, key: str) -> int:
    """PTTL of ``key``: milliseconds left, -1 without an expiry, -2 when it does not exist."""
    return int(server.command("PTTL", key).split(b"\r\n")[0][1:])


async def test_expiry_claims_and_holds_are_redis_key_expiry(redis_server: RedisServer) -> None:
    key_prefix = prefix()
    async with EventBroker.from_url(redis_server.url, key_prefix=key_prefix) as broker:
        backend = broker._live("test")[1]
        await broker.publish("x", topic="t")
        assert pttl(redis_server, key_prefix + "t") == -1
        await backend.expire("t", 30)
        # The stream and its epoch expire together, in Redis itself.
        for key in (key_prefix + "t", key_prefix + "t#epoch"):
            assert 0 < pttl(redis_server, key) <= 30_000
        await backend.claim("c#1", "v", 20)
        assert 0 < pttl(redis_server, key_prefix + "c#1") <= 20_000
        await backend.hold("h#1", "a", 10)
        await backend.hold("h#1", "b", 40)
        # The set of holders lives as long as its longest hold, then Redis drops it.
        assert 10_000 < pttl(redis_server, key_prefix + "h#1") <= 40_000
        await backend.hold("h#1", "b", 0)
        assert 0 < pttl(redis_server, key_prefix + "h#1") <= 10_000
        await backend.expire("t", 0)
        assert pttl(redis_server, key_prefix + "t") == pttl(redis_server, key_prefix + "t#epoch") == -2


def test_a_read_that_began_before_its_topic_was_followed_again_does_not_judge_it() -> None:
    # The reader's XREAD (with a check that the last entry read is still there) can return after
    # its topic was forgotten (the last subscriber left), expired in Redis and followed again
    # by a new subscriber. That check is about the old position: the new subscriber must not be
    # failed with EventsLost by it (it was, and joined with "no position" under load).
    from streaming_responses._broker_fanout import Fanout, Subscription
    from streaming_responses._broker_redis import RedisBackend

    backend = RedisBackend(
        "redis://127.0.0.1:9/0",
        history=10,
        max_age=None,
        timeout=1.0,
        stall_timeout=1.0,
        key_prefix="test:",
        max_connections=2,
    )
    fanout = Fanout(subscriber_buffer=10)
    backend.attach(fanout)
    old, new = (1000, 0), (2000, 0)
    followed_again = Subscription(fanout, backend, ("short",), None)
    fanout.add(followed_again)
    fanout.start_at("short", new)
    backend._dispatch(fanout, {"short": old}, [[], None])  # the old entry is gone
    assert followed_again._error is None
    assert fanout.position("short") == new
    # The same read while the topic is still followed from the old position: the loss is real.
    still = Fanout(subscriber_buffer=10)
    backend.attach(still)
    following = Subscription(still, backend, ("short",), None)
    still.add(following)
    still.start_at("short", old)
    backend._dispatch(still, {"short": old}, [[], None])
    assert isinstance(following._error, EventsLost)
