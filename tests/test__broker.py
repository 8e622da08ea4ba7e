"""EventBroker: exact replay after Last-Event-ID, no duplicates, bounded history and subscribers."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streaming_responses import (
    EventBroker,
    EventsLost,
    EventSourceResponse,
    ServerSentEvent,
    SubscriberTooSlow,
    last_event_id,
)
from streaming_responses.testing import StreamingTestClient
from tests.sse_parser import EventStreamParser


async def take(events: AsyncIterator[ServerSentEvent], count: int) -> list[ServerSentEvent]:
    with anyio.fail_after(5):
        return [await anext(events) for _ in range(count)]


def test_ids_are_assigned_in_order_and_own_ids_are_kept() -> None:
    broker = EventBroker(first_id=100)
    assert broker.publish("a").id == "100"
    assert broker.publish(ServerSentEvent("b", event="x")).id == "101"
    assert broker.publish(ServerSentEvent("c", id="mine")).id == "mine"
    assert broker.publish({"d": 1}).id == "102"
    assert broker.publish({"d": 1}).data == {"d": 1}


def test_the_default_first_id_follows_the_clock_so_a_restart_never_reuses_ids() -> None:
    first = int(EventBroker().publish("a").id or "0")
    later = int(EventBroker().publish("a").id or "0")
    assert later > first > 1_600_000_000_000_000


@pytest.mark.anyio
async def test_a_subscriber_gets_exactly_the_events_after_its_last_event_id_then_live_ones() -> None:
    broker = EventBroker(first_id=1)
    for n in range(1, 6):
        broker.publish(str(n))
    async with broker.subscribe("2") as events:
        assert [e.data for e in await take(events, 3)] == ["3", "4", "5"]
        broker.publish("6")
        assert [e.id for e in await take(events, 1)] == ["6"]
    assert broker.subscribers == 0


@pytest.mark.anyio
async def test_without_an_id_only_live_events_arrive() -> None:
    broker = EventBroker(first_id=1)
    broker.publish("old")
    async with broker.subscribe() as events:
        broker.publish("new")
        assert [e.data for e in await take(events, 1)] == ["new"]
        assert events.pending == 0


def test_an_id_older_than_the_history_raises_events_lost() -> None:
    broker = EventBroker(history=3, first_id=1)
    for n in range(1, 8):
        broker.publish(str(n))
    assert broker.kept == 3
    with pytest.raises(EventsLost, match="'4'") as info:
        broker.subscribe("4")
    assert info.value.last_event_id == "4"
    with pytest.raises(EventsLost):
        broker.subscribe("never-published")
    assert broker.subscribe("5").pending == 2  # 6 and 7: the oldest kept id still resumes


def test_a_repeated_own_id_resumes_after_its_newest_use() -> None:
    broker = EventBroker(history=10, first_id=1)
    broker.publish(ServerSentEvent("a", id="same"))
    broker.publish("b")
    broker.publish(ServerSentEvent("c", id="same"))
    broker.publish("d")
    assert broker.subscribe("same").pending == 1


def test_a_history_of_zero_keeps_nothing_to_replay() -> None:
    broker = EventBroker(history=0, first_id=1)
    broker.publish("a")
    assert broker.kept == 0
    with pytest.raises(EventsLost):
        broker.subscribe("1")


@pytest.mark.anyio
async def test_concurrent_publishing_while_subscribing_gives_no_gap_and_no_duplicate() -> None:
    broker = EventBroker(history=10_000, subscriber_buffer=10_000, first_id=1)
    broker.publish("0")
    stop = threading.Event()

    def publisher() -> None:
        for _ in range(4_000):  # bounded, so the history keeps everything
            if stop.is_set():
                return
            broker.publish("x")

    threads = [threading.Thread(target=publisher) for _ in range(2)]
    for thread in threads:
        thread.start()
    subscriptions = []
    try:
        for _ in range(20):
            subscriptions.append(broker.subscribe("1"))
            await anyio.sleep(0.001)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    last = broker.publish("end").id
    for subscription in subscriptions:
        ids: list[int] = []
        async for event in subscription:
            ids.append(int(event.id or "0"))
            if event.id == last:
                break
        assert ids == list(range(2, int(last or "0") + 1))
        subscription.close()


@pytest.mark.anyio
async def test_publishing_from_another_thread_wakes_a_waiting_subscriber() -> None:
    broker = EventBroker(first_id=1)
    async with broker.subscribe() as events:

        def later() -> None:
            broker.publish("from a thread")

        async with anyio.create_task_group() as group:
            group.start_soon(anyio.to_thread.run_sync, later)
            assert [e.data for e in await take(events, 1)] == ["from a thread"]


@pytest.mark.anyio
async def test_a_subscriber_that_falls_behind_is_dropped_loudly() -> None:
    broker = EventBroker(subscriber_buffer=3, first_id=1)
    slow = broker.subscribe()
    async with broker.subscribe() as fast:
        for n in range(3):
            broker.publish(str(n))
            await take(fast, 1)
        assert not slow.dropped
        broker.publish("one too many")
        assert [e.data for e in await take(fast, 1)] == ["one too many"]
    assert slow.dropped
    assert broker.subscribers == 0
    with pytest.raises(SubscriberTooSlow, match="subscriber_buffer=3"):
        await anext(slow)


@pytest.mark.anyio
async def test_a_waiting_subscriber_that_is_dropped_wakes_up_with_the_error() -> None:
    broker = EventBroker(subscriber_buffer=1, first_id=1)
    subscription = broker.subscribe()
    broker.publish("a")
    broker.publish("b")  # the buffer of one was full
    with pytest.raises(SubscriberTooSlow):
        await take(subscription, 1)


@pytest.mark.anyio
async def test_closing_the_broker_ends_every_subscription() -> None:
    broker = EventBroker(first_id=1)
    received: list[str] = []

    async def consume() -> None:
        async for event in broker.subscribe():
            received.append(str(event.data))

    async with anyio.create_task_group() as group:
        group.start_soon(consume)
        await anyio.sleep(0.01)
        broker.publish("a")
        await anyio.sleep(0.01)
        broker.close()
    assert received == ["a"]
    with pytest.raises(RuntimeError, match="closed"):
        broker.publish("b")
    with pytest.raises(RuntimeError, match="closed"):
        broker.subscribe()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"history": -1}, ValueError),
        ({"history": 1.5}, TypeError),
        ({"subscriber_buffer": 0}, ValueError),
        ({"subscriber_buffer": True}, TypeError),
        ({"first_id": -1}, ValueError),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        EventBroker(**kwargs)  # type: ignore[arg-type]


def test_bytes_cannot_be_published() -> None:
    with pytest.raises(TypeError, match="pre-encoded bytes"):
        EventBroker().publish(b"data: x\n\n")


@pytest.mark.anyio
async def test_a_reconnecting_event_stream_resumes_from_the_broker_without_duplicates() -> None:
    broker = EventBroker(first_id=1)

    async def endpoint(request: Request) -> Response:
        async def events() -> AsyncIterator[ServerSentEvent]:
            async with broker.subscribe(last_event_id(request)) as subscription:
                async for event in subscription:
                    yield event

        return EventSourceResponse(events(), ping=None)

    client = StreamingTestClient(Starlette(routes=[Route("/events", endpoint)]))
    seen: list[str] = []
    parser = EventStreamParser()
    async with client.stream("GET", "/events") as response:
        chunks = response.iter_bytes()
        await anext(chunks)  # the opening comment: the subscription exists from now on
        while broker.subscribers == 0:
            await anyio.sleep(0.001)
        broker.publish("1")
        broker.publish("2")
        while len(parser.events) < 2:
            parser.feed(await anext(chunks))
        seen.extend(event.data for event in parser.events)
    broker.publish("3")  # published while the client is away
    resume_from = parser.last_event_id
    parser = EventStreamParser()
    async with client.stream("GET", "/events", headers={"last-event-id": resume_from}) as response:
        chunks = response.iter_bytes()
        while not parser.events:
            parser.feed(await anext(chunks))
        broker.publish("4")
        while len(parser.events) < 2:
            parser.feed(await anext(chunks))
        seen.extend(event.data for event in parser.events)
    assert seen == ["1", "2", "3", "4"]
    assert repr(broker).startswith("<EventBroker history=4/1000 subscribers=")
