"""The in-process backend: publishing from threads, the history bounds, settings and errors."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anyio
import pytest

from streaming_responses import BrokerError, EventBroker, EventsLost, ServerSentEvent


async def take(events: AsyncIterator[ServerSentEvent], count: int) -> list[ServerSentEvent]:
    with anyio.fail_after(5):
        return [await anext(events) for _ in range(count)]


@pytest.mark.anyio
async def test_publish_nowait_from_another_thread_wakes_a_waiting_subscriber() -> None:
    broker = EventBroker()
    async with broker.subscribe() as events:

        def later() -> None:
            broker.publish_nowait("from a thread")

        async with anyio.create_task_group() as group:
            group.start_soon(anyio.to_thread.run_sync, later)
            assert [e.data for e in await take(events, 1)] == ["from a thread"]


@pytest.mark.anyio
async def test_many_threads_publishing_at_once_give_every_subscriber_every_event_once() -> None:
    broker = EventBroker(history=5000, subscriber_buffer=5000)
    async with broker.subscribe() as events:

        def publish_many(name: str) -> None:
            for n in range(500):
                broker.publish_nowait(f"{name}-{n}")

        async with anyio.create_task_group() as group:
            for name in "abcd":
                group.start_soon(anyio.to_thread.run_sync, publish_many, name)
        received = [str(event.data) for event in await take(events, 2000)]
    assert sorted(received) == sorted(f"{name}-{n}" for name in "abcd" for n in range(500))
    for name in "abcd":  # each thread's events in the order it published them
        assert [r for r in received if r.startswith(name)] == [f"{name}-{n}" for n in range(500)]


@pytest.mark.anyio
async def test_a_history_of_zero_resumes_only_after_the_newest_event() -> None:
    broker = EventBroker(history=0)
    first = await broker.publish("a")
    newest = await broker.publish("b")
    with pytest.raises(EventsLost, match="older than the history"):
        async with broker.subscribe(first.id):
            pass
    async with broker.subscribe(newest.id) as events:
        assert events.pending == 0
        await broker.publish("c")
        assert [e.data for e in await take(events, 1)] == ["c"]


@pytest.mark.anyio
async def test_max_age_trims_events_older_than_that_many_seconds() -> None:
    broker = EventBroker(max_age=0.05)
    old = await broker.publish("old")
    kept = await broker.publish("kept")
    deadline = time.monotonic() + 0.06
    while time.monotonic() < deadline:  # the age bound is about time passing, not ordering
        await anyio.sleep(0.01)
    await broker.publish("new")
    with pytest.raises(EventsLost):
        async with broker.subscribe(old.id):
            pass
    # Resuming after the newest trimmed event is still exact: nothing after it is gone.
    async with broker.subscribe(kept.id) as events:
        assert [e.data for e in await take(events, 1)] == ["new"]


@pytest.mark.anyio
async def test_an_id_from_the_future_of_this_epoch_is_events_lost() -> None:
    broker = EventBroker()
    sent = await broker.publish("a")
    epoch = (sent.id or "").split("@")[1].split(".")[0]
    with pytest.raises(EventsLost, match="never published"):
        async with broker.subscribe(f"events@{epoch}.999"):
            pass


def test_publish_nowait_needs_the_in_process_broker() -> None:
    broker = EventBroker.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(BrokerError, match=r"await broker\.publish"):
        broker.publish_nowait("a")


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"history": -1}, ValueError),
        ({"history": 1.5}, TypeError),
        ({"subscriber_buffer": 0}, ValueError),
        ({"subscriber_buffer": True}, TypeError),
        ({"max_age": 0}, ValueError),
        ({"max_age": "1"}, TypeError),
        ({"topic": "two words"}, ValueError),
        ({"topic": 3}, TypeError),
    ],
)
def test_bad_settings_are_refused_with_an_error_naming_them(
    settings: dict[str, object], error: type[Exception]
) -> None:
    name = next(iter(settings))
    with pytest.raises(error, match=name if name != "topic" else "topic"):
        EventBroker(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "error", "match"),
    [
        ("http://localhost", ValueError, "unknown broker URL scheme"),
        ("memory://somewhere", ValueError, "just 'memory://'"),
        (42, TypeError, "url must be a str"),
    ],
)
def test_bad_urls_are_refused(url: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        EventBroker.from_url(url)  # type: ignore[arg-type]


def test_from_url_memory_is_the_in_process_broker_and_ignores_redis_settings() -> None:
    broker = EventBroker.from_url("memory://", timeout=1.0, history=5, topic="feed")
    assert broker.url == "memory://"
    assert broker.topic == "feed"
    assert broker.publish_nowait("a").id is not None
    assert repr(broker).startswith("<EventBroker memory:// topic='feed' history=5 subscribers=0")
    broker.close()
    assert repr(broker).endswith("closed>")


@pytest.mark.anyio
async def test_subscribe_refuses_an_id_that_is_not_a_str() -> None:
    with pytest.raises(TypeError, match="last_event_id"):
        EventBroker().subscribe(7)  # type: ignore[arg-type]
