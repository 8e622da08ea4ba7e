"""EventBroker's behaviour, one suite run against every backend: ``memory://`` and a real Redis.

Each test takes ``make_broker``, which builds a broker on the backend of the run (a Redis
started by these tests on a free loopback port, each test on keys of its own), and asserts
what a user of the public API sees: ids, exact replay, live delivery, the drop rule, errors.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streaming_responses import (
    BrokerClosed,
    EventBroker,
    EventsLost,
    EventSourceResponse,
    ServerSentEvent,
    SubscriberTooSlow,
    last_event_id,
)
from streaming_responses._broker_backend import BrokerBackend
from streaming_responses.testing import StreamAborted, StreamingTestClient
from tests.redis_server import RedisServer, redis_server
from tests.sse_parser import EventStreamParser

__all__ = ("redis_server",)

MakeBroker = Callable[..., EventBroker]
SCALING_PAGE = (Path(__file__).resolve().parents[1] / "docs" / "scaling.md").read_text()


@pytest.fixture(params=["memory", "redis"])
def make_broker(request: pytest.FixtureRequest) -> Iterator[MakeBroker]:
    """Builds brokers on the backend of this run; Redis keys are this test's own."""
    made: list[EventBroker] = []
    if request.param == "memory":

        def make(**settings: Any) -> EventBroker:
            broker = EventBroker.from_url("memory://", **settings)
            made.append(broker)
            return broker

    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        prefix = f"test-{uuid.uuid4().hex[:8]}:"

        def make(**settings: Any) -> EventBroker:
            settings.setdefault("key_prefix", prefix)
            broker = EventBroker.from_url(server.url, **settings)
            made.append(broker)
            return broker

    yield make
    for broker in made:
        broker.close()


async def take(events: AsyncIterator[ServerSentEvent], count: int) -> list[ServerSentEvent]:
    with anyio.fail_after(10):
        return [await anext(events) for _ in range(count)]


def position_of(event_id: str | None) -> tuple[int, ...]:
    """The position in a one-topic id ``topic@epoch.position``: ``(ms, seq)`` of a Redis stream
    id, ``(seq,)`` in process."""
    position = (event_id or "").split("@", 1)[1].split(".", 1)[1]
    if "-" not in position:
        return (int(position),)
    ms, seq = position.split("-")
    return (int(ms), int(seq))


def texts(events: list[ServerSentEvent]) -> list[str]:
    return [str(event.data) for event in events]


pytestmark = pytest.mark.anyio


async def test_publish_returns_the_event_with_an_id_that_names_its_topic_and_increases(
    make_broker: MakeBroker,
) -> None:
    async with make_broker() as broker:
        sent = [await broker.publish(str(n)) for n in range(5)]
        other = await broker.publish(ServerSentEvent("x", event="note"), topic="other")
    assert [event.data for event in sent] == ["0", "1", "2", "3", "4"]
    assert all(event.id and event.id.startswith("events@") for event in sent)
    assert (other.id or "").startswith("other@")
    assert other.event == "note"
    assert len({event.id for event in sent}) == 5
    positions = [position_of(event.id) for event in sent]
    assert positions == sorted(set(positions))  # strictly increasing


async def test_a_subscriber_gets_exactly_the_events_after_its_last_event_id_then_live_ones(
    make_broker: MakeBroker,
) -> None:
    async with make_broker() as broker:
        sent = [await broker.publish(str(n)) for n in range(1, 6)]
        async with broker.subscribe(sent[1].id) as events:
            assert texts(await take(events, 3)) == ["3", "4", "5"]
            live = await broker.publish("6")
            received = await take(events, 1)
            assert received == [live]
        assert broker.subscribers == 0


async def test_without_an_id_only_events_published_after_joining_arrive(make_broker: MakeBroker) -> None:
    async with make_broker() as broker:
        await broker.publish("old")
        async with broker.subscribe() as events:
            await broker.publish("new")
            assert texts(await take(events, 1)) == ["new"]
            assert events.pending == 0


async def test_every_subscriber_receives_every_event_once_in_the_published_order(
    make_broker: MakeBroker,
) -> None:
    async with make_broker() as broker:
        subscriptions = [broker.subscribe() for _ in range(20)]
        for subscription in subscriptions:
            await subscription.__aenter__()
        sent = [(await broker.publish({"n": n})).id for n in range(50)]
        for subscription in subscriptions:
            assert [event.id for event in await take(subscription, 50)] == sent
            assert subscription.pending == 0
            subscription.close()


async def test_an_id_the_history_no_longer_holds_raises_events_lost_and_the_oldest_kept_resumes(
    make_broker: MakeBroker,
) -> None:
    async with make_broker(history=3) as broker:
        # Redis trims whole nodes of 100 entries (MAXLEN ~): publish well past that.
        sent = [await broker.publish(str(n)) for n in range(400)]
        with pytest.raises(EventsLost) as info:
            async with broker.subscribe(sent[0].id):
                pass
        assert info.value.last_event_id == sent[0].id
        async with broker.subscribe(sent[-3].id) as events:
            assert texts(await take(events, 2)) == ["398", "399"]


@pytest.mark.parametrize(
    "bad_id",
    [
        "garbage",
        "events@",
        "@1-0",
        "events@1-0,events@2-0",
        "other@1-0",
        "events@not-a-position",
        "events@999999999999999-0",
        "events@1-0\x7f",
        "x" * 9000,
    ],
)
async def test_a_malformed_or_foreign_last_event_id_raises_events_lost_never_a_replay(
    make_broker: MakeBroker, bad_id: str
) -> None:
    async with make_broker() as broker:
        await broker.publish("a")
        with pytest.raises(EventsLost):
            async with broker.subscribe(bad_id):
                pass
        assert broker.subscribers == 0


async def test_an_id_of_another_broker_or_topic_raises_events_lost(make_broker: MakeBroker) -> None:
    async with make_broker() as broker, make_broker(key_prefix=f"other-{uuid.uuid4().hex[:6]}:") as other:
        await broker.publish("mine")
        foreign = await other.publish("theirs")
        await broker.publish("mine again")
        with pytest.raises(EventsLost):
            async with broker.subscribe(foreign.id):
                pass
        on_other_topic = await broker.publish("elsewhere", topic="elsewhere")
        with pytest.raises(EventsLost, match="not of this subscription"):
            async with broker.subscribe(on_other_topic.id):
                pass


async def test_events_lost_is_raised_on_the_first_iteration_without_async_with(
    make_broker: MakeBroker,
) -> None:
    async with make_broker() as broker:
        subscription = broker.subscribe("events@1-0")
        with pytest.raises(EventsLost):
            await anext(subscription)


async def test_an_event_with_its_own_id_or_bytes_is_refused(make_broker: MakeBroker) -> None:
    async with make_broker() as broker:
        with pytest.raises(ValueError, match="gives every event its id"):
            await broker.publish(ServerSentEvent("a", id="mine"))
        with pytest.raises(TypeError, match="pre-encoded bytes"):
            await broker.publish(b"data: x\n\n")
        with pytest.raises(ValueError, match="topic"):
            await broker.publish("a", topic="no spaces")


async def test_several_topics_in_one_subscription_resume_exactly_for_each_topic(
    make_broker: MakeBroker,
) -> None:
    async with make_broker() as broker:
        async with broker.subscribe(topics=["news", "chat"]) as events:
            await broker.publish("n1", topic="news")
            await broker.publish("c1", topic="chat")
            await broker.publish("ignored", topic="weather")
            first = await take(events, 2)
        assert sorted(texts(first)) == ["c1", "n1"]
        resume_from = first[-1].id
        assert resume_from is not None
        assert {part.split("@")[0] for part in resume_from.split(",")} == {"news", "chat"}
        # Published while the client is away, on both topics and on one it does not follow.
        await broker.publish("n2", topic="news")
        await broker.publish("w2", topic="weather")
        await broker.publish("c2", topic="chat")
        async with broker.subscribe(resume_from, topics=["chat", "news"]) as events:
            missed = await take(events, 2)
            assert sorted(texts(missed)) == ["c2", "n2"]
            await broker.publish("c3", topic="chat")
            assert texts(await take(events, 1)) == ["c3"]
            assert events.pending == 0
        with pytest.raises(EventsLost, match="not of this subscription"):
            async with broker.subscribe(resume_from, topics=["news"]):
                pass


async def test_publishing_while_subscribers_join_gives_no_gap_and_no_duplicate(
    make_broker: MakeBroker,
) -> None:
    async with make_broker(history=10_000, subscriber_buffer=10_000) as broker:
        first = await broker.publish("0")
        subscriptions = []

        async def publish_many() -> None:
            for n in range(1, 301):
                await broker.publish(str(n))

        async with anyio.create_task_group() as group:
            group.start_soon(publish_many)
            for _ in range(10):
                subscription = broker.subscribe(first.id)
                await subscription.__aenter__()
                subscriptions.append(subscription)
                await anyio.lowlevel.checkpoint()
        last = await broker.publish("end")
        for subscription in subscriptions:
            received: list[str] = []
            async for event in subscription:
                received.append(str(event.data))
                if event.id == last.id:
                    break
            assert received == [str(n) for n in range(1, 301)] + ["end"]
            subscription.close()


async def test_a_subscriber_that_falls_behind_is_dropped_loudly_and_resumes_from_the_history(
    make_broker: MakeBroker,
) -> None:
    async with make_broker(subscriber_buffer=3) as broker:
        slow = broker.subscribe()
        await slow.__aenter__()
        async with broker.subscribe() as fast:
            sent = []
            for n in range(3):
                sent.append(await broker.publish(str(n)))
                await take(fast, 1)
            first = await anext(slow)
            assert first.data == "0"
            assert not slow.dropped
            for n in range(3, 7):
                sent.append(await broker.publish(str(n)))
                assert texts(await take(fast, 1)) == [str(n)]
        assert slow.dropped
        with pytest.raises(SubscriberTooSlow, match="subscriber_buffer=3"):
            await anext(slow)
        assert broker.subscribers == 0
        async with broker.subscribe(first.id) as resumed:
            assert texts(await take(resumed, 6)) == ["1", "2", "3", "4", "5", "6"]


async def test_closing_the_broker_ends_every_subscription_and_refuses_further_use(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker()
    received: list[str] = []
    joined = anyio.Event()

    async def consume() -> None:
        async with broker.subscribe() as events:
            joined.set()
            async for event in events:
                received.append(str(event.data))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(consume)
            await joined.wait()
            await broker.publish("a")
            while not received:
                await anyio.sleep(0.001)
            await broker.aclose()
    assert received == ["a"]
    with pytest.raises(BrokerClosed, match="closed"):
        await broker.publish("b")
    with pytest.raises(BrokerClosed, match="closed"):
        broker.subscribe()


async def test_a_subscription_made_before_the_broker_closed_cannot_join_after(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker()
    subscription = broker.subscribe()
    await broker.aclose()
    with pytest.raises(BrokerClosed, match="subscribe"):
        async with subscription:
            pass


def stream_endpoint(broker: EventBroker, idiom: str, **settings: Any) -> Callable[..., Any]:
    """An event stream of ``broker`` written in one of the two idioms of the docs: a generator
    relaying the subscription, or the subscription handed to the response as it is."""

    async def endpoint(request: Request) -> Response:
        topics = request.query_params.get("topics")
        chosen = topics.split(",") if topics else None
        if idiom == "direct":
            return EventSourceResponse(broker.subscribe(last_event_id(request), topics=chosen), **settings)

        async def events() -> AsyncIterator[ServerSentEvent]:
            async with broker.subscribe(last_event_id(request), topics=chosen) as subscription:
                async for event in subscription:
                    yield event

        return EventSourceResponse(events(), **settings)

    return endpoint


IDIOMS = pytest.mark.parametrize("idiom", ["generator", "direct"])


def stream_client(broker: EventBroker, idiom: str = "direct") -> StreamingTestClient:
    routes = [Route("/events", stream_endpoint(broker, idiom, ping=None))]
    return StreamingTestClient(Starlette(routes=routes))


@IDIOMS
async def test_a_reconnecting_event_stream_resumes_without_duplicates(
    make_broker: MakeBroker, idiom: str
) -> None:
    broker = make_broker()
    endpoint = stream_endpoint(broker, idiom, ping=None)

    client = StreamingTestClient(Starlette(routes=[Route("/events", endpoint)]))
    seen: list[str] = []
    parser = EventStreamParser()
    with anyio.fail_after(20):
        async with client.stream("GET", "/events") as response:
            chunks = response.iter_bytes()
            await anext(chunks)  # the opening comment
            while broker.subscribers == 0:
                await anyio.sleep(0.001)
            await broker.publish("1")
            await broker.publish("2")
            while len(parser.events) < 2:
                parser.feed(await anext(chunks))
            seen.extend(event.data for event in parser.events)
        while broker.subscribers:
            await anyio.sleep(0.001)
        await broker.publish("3")  # published while the client is away
        resume_from = parser.last_event_id
        parser = EventStreamParser()
        async with client.stream("GET", "/events", headers={"last-event-id": resume_from}) as response:
            chunks = response.iter_bytes()
            while not parser.events:
                parser.feed(await anext(chunks))
            await broker.publish("4")
            while len(parser.events) < 2:
                parser.feed(await anext(chunks))
            seen.extend(event.data for event in parser.events)
    assert seen == ["1", "2", "3", "4"]
    await broker.aclose()


async def read_events(chunks: AsyncIterator[bytes], parser: EventStreamParser, count: int) -> list[str]:
    while len(parser.events) < count:
        parser.feed(await anext(chunks))
    return [event.data for event in parser.events]


@IDIOMS
async def test_a_stream_sees_the_replay_then_live_events_published_while_it_joins_exactly_once(
    make_broker: MakeBroker, idiom: str
) -> None:
    broker = make_broker()
    client = stream_client(broker, idiom)
    sent = [await broker.publish(str(n)) for n in range(1, 201)]
    publishing = True

    async def keep_publishing() -> None:
        number = 201
        while publishing:
            await broker.publish(str(number))
            number += 1
            await anyio.lowlevel.checkpoint()

    parser = EventStreamParser()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            group.start_soon(keep_publishing)
            async with client.stream(
                "GET", "/events", headers={"last-event-id": sent[9].id or ""}
            ) as response:
                data = await read_events(response.iter_bytes(), parser, 400)
            publishing = False
    numbers = [int(text) for text in data]
    expected = list(range(11, 11 + len(numbers)))  # the replay, then every live event once
    wrong = [
        (at, number)
        for at, (number, want) in enumerate(zip(numbers, expected, strict=True))
        if number != want
    ]
    assert not wrong, f"first out of order (index, number): {wrong[:5]}"
    await broker.aclose()


async def test_a_subscription_handed_to_the_response_follows_several_topics_with_exact_ids(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker()
    client = stream_client(broker)
    parser = EventStreamParser()
    with anyio.fail_after(20):
        async with client.stream("GET", "/events?topics=news,chat") as response:
            chunks = response.iter_bytes()
            while broker.subscribers == 0:
                await anyio.sleep(0.001)
            await broker.publish("n1", topic="news")
            await broker.publish("c1", topic="chat")
            # One order per topic; between topics, the order the fan-out got them in.
            assert sorted(await read_events(chunks, parser, 2)) == ["c1", "n1"]
        await broker.publish("n2", topic="news")
        resume = parser.last_event_id
        parser = EventStreamParser()
        async with client.stream(
            "GET", "/events?topics=news,chat", headers={"last-event-id": resume}
        ) as response:
            assert await read_events(response.iter_bytes(), parser, 1) == ["n2"]
    await broker.aclose()


async def test_a_subscription_handed_to_the_response_is_dropped_at_its_buffer_and_the_stream_fails(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(subscriber_buffer=3)
    stuck = anyio.Event()
    subscriptions = []

    async def endpoint(request: Request) -> Response:
        subscription = broker.subscribe()
        subscriptions.append(subscription)
        return EventSourceResponse(subscription, ping=None)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async def stalled_send(message: Any) -> None:
            if message.get("body", b"").startswith(b"data: "):
                await stuck.wait()  # a client that stopped reading: the sender is stuck here
            await send(message)

        await Starlette(routes=[Route("/events", endpoint)])(scope, receive, stalled_send)

    client = StreamingTestClient(app)
    with anyio.fail_after(20):
        async with client.stream("GET", "/events") as response:
            while broker.subscribers == 0:
                await anyio.sleep(0.001)
            # The sender is stuck in its first send; what arrives meanwhile waits in its queue
            # (several events may have gone out together first) until it holds three.
            number = 0
            while not subscriptions[0].dropped:
                await broker.publish(str(number))
                number += 1
                await anyio.sleep(0.001)
            stuck.set()
            with pytest.raises(StreamAborted) as caught:
                await response.read()
            assert isinstance(caught.value.__cause__, SubscriberTooSlow)
    assert broker.subscribers == 0
    await broker.aclose()


async def test_a_subscription_handed_to_the_response_ends_the_stream_when_the_broker_closes(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker()
    client = stream_client(broker)
    parser = EventStreamParser()
    with anyio.fail_after(20):
        async with client.stream("GET", "/events") as response:
            chunks = response.iter_bytes()
            while broker.subscribers == 0:
                await anyio.sleep(0.001)
            await broker.publish("last")
            assert await read_events(chunks, parser, 1) == ["last"]
            await broker.aclose()
            async for chunk in chunks:  # the body ends cleanly: the test client raises otherwise
                parser.feed(chunk)
    assert [event.data for event in parser.events] == ["last"]


async def test_events_published_from_another_thread_reach_a_subscription_handed_to_the_response() -> None:
    broker = EventBroker()
    client = stream_client(broker)
    parser = EventStreamParser()
    with anyio.fail_after(20):
        async with client.stream("GET", "/events") as response:
            while broker.subscribers == 0:
                await anyio.sleep(0.001)
            await anyio.to_thread.run_sync(lambda: [broker.publish_nowait(str(n)) for n in range(50)])
            data = await read_events(response.iter_bytes(), parser, 50)
    assert data == [str(n) for n in range(50)]
    await broker.aclose()


async def test_a_client_that_leaves_takes_its_subscription_with_it(make_broker: MakeBroker) -> None:
    broker = make_broker()
    client = stream_client(broker)
    with anyio.fail_after(20):
        async with client.stream("GET", "/events") as response:
            while broker.subscribers == 0:
                await anyio.sleep(0.001)
            await response.disconnect()
        while broker.subscribers:
            await anyio.sleep(0.001)
    await broker.aclose()


def _in_a_forked_child(broker: EventBroker, resume_from: str) -> dict[str, Any]:
    """Fork; in the child publish, subscribe and resume on ``broker``; return what it saw."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process that has threads: the child here only
        # runs asyncio.run() and exits, which is what a gunicorn worker does too.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which coverage does not follow
        code = 0
        try:

            async def child() -> dict[str, Any]:
                sent = await broker.publish("from the child")
                async with broker.subscribe(None) as events:
                    await broker.publish("live in the child")
                    live = texts(await take(events, 1))
                try:
                    async with broker.subscribe(resume_from) as events:
                        resumed: list[str] | None = texts(await take(events, 1))
                except EventsLost:
                    resumed = None
                await broker.aclose()
                return {"id": sent.id, "live": live, "resumed": resumed}

            result = asyncio.run(child())
        except BaseException as exc:
            result = {"error": repr(exc)}
            code = 1
        os.write(write_end, json.dumps(result).encode())
        os._exit(code)
    return _child_result(pid, read_end, write_end)


def _child_result(pid: int, read_end: int, write_end: int) -> dict[str, Any]:
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read()
    _, status = os.waitpid(pid, 0)
    result: dict[str, Any] = json.loads(output or b"{}")
    result["status"] = status
    return result


def test_a_broker_created_before_a_fork_works_in_each_child_with_ids_of_its_own(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker()
    if broker.url == "memory://":
        parent_id = broker.publish_nowait("from the parent").id or ""
    else:
        # Another process (here: another broker on the same keys) published on Redis.
        other = make_broker()
        parent_id = asyncio.run(_publish_and_close(other, "from the parent"))
    first = _in_a_forked_child(broker, parent_id)
    second = _in_a_forked_child(broker, parent_id)
    assert (first["status"], second["status"]) == (0, 0), (first, second)
    assert first["live"] == second["live"] == ["live in the child"]
    # Two workers forked from one broker never hand out the same id.
    assert first["id"] != second["id"]
    if broker.url == "memory://":
        # Each process has its own history: the parent's id is foreign in a child.
        assert (first["resumed"], second["resumed"]) == (None, None)
    else:
        # Redis is shared: a child resumes after the parent's event exactly.
        assert first["resumed"] == ["from the child"]


async def _publish_and_close(broker: EventBroker, text: str) -> str:
    async with broker:
        return (await broker.publish(text)).id or ""


async def test_the_scaling_out_example_runs_as_shown_on_every_backend(
    make_broker: MakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    match = re.search(r'^```python title="app.py"\n(.*?)^```', SCALING_PAGE, re.MULTILINE | re.DOTALL)
    assert match is not None
    url = make_broker().url
    if url.startswith("redis"):
        monkeypatch.setattr(EventBroker, "from_url", _with_prefix(EventBroker.from_url))
    monkeypatch.setenv("BROKER_URL", url)
    namespace: dict[str, Any] = {"__name__": "scaling_example"}
    exec(compile(match.group(1), "scaling_example", "exec"), namespace)
    app, broker = namespace["app"], namespace["broker"]
    client = StreamingTestClient(app)
    with anyio.fail_after(20):
        async with client.stream(
            "GET", "/messages/stream", headers={"last-event-id": "nonsense"}
        ) as response:
            parser = EventStreamParser()
            chunks = response.iter_bytes()
            while not parser.events:
                parser.feed(await anext(chunks))
            assert parser.events[0].type == "reset"
            while broker.subscribers == 0:
                await anyio.sleep(0.001)
            sent = (await client.post("/messages", json={"text": "hi"})).json()
            while len(parser.events) < 2:
                parser.feed(await anext(chunks))
    assert parser.events[1].data == '{"text":"hi"}'
    assert parser.events[1].last_event_id == sent["id"]
    await broker.aclose()


def _with_prefix(from_url: Callable[..., EventBroker]) -> Callable[..., EventBroker]:
    """``from_url`` on keys of this test's own (the example uses the default prefix)."""
    prefix = f"example-{uuid.uuid4().hex[:8]}:"

    def make(url: str, **settings: Any) -> EventBroker:
        return from_url(url, key_prefix=prefix, **settings)

    return make


# -- what resumable streams need from a backend (the same meaning on every engine) --------------


def backend_of(broker: EventBroker) -> BrokerBackend:
    return broker._live("test")[1]


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    """Wait until ``check()`` is true (an expiry on the engine's clock), failing after ``timeout``."""
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.02)


async def test_ends_gives_the_first_and_the_last_event_a_topic_holds(make_broker: MakeBroker) -> None:
    async with make_broker() as broker:
        backend = backend_of(broker)
        assert await backend.ends("empty") == (None, None)
        sent = [await broker.publish(str(n), topic="t") for n in range(4)]
        first, last = await backend.ends("t")
        assert first is not None
        assert last is not None
        assert (first.event.id, first.event.data) == (sent[0].id, "0")
        assert (last.event.id, last.event.data) == (sent[-1].id, "3")
        assert first.position < last.position


async def test_ends_skips_what_a_subscriber_wrote_to_follow_an_empty_topic(make_broker: MakeBroker) -> None:
    async with make_broker() as broker:
        backend = backend_of(broker)
        async with broker.subscribe(topics=["fresh"]):
            assert await backend.ends("fresh") == (None, None)
            sent = await broker.publish("first", topic="fresh")
        first, last = await backend.ends("fresh")
        assert first is not None
        assert last is not None
        assert first.event.id == last.event.id == sent.id


async def test_an_expiring_topic_keeps_its_events_until_then_and_is_gone_after(
    make_broker: MakeBroker,
) -> None:
    async with make_broker() as broker:
        backend = backend_of(broker)
        sent = [await broker.publish(str(n), topic="short") for n in range(3)]
        await broker.publish("stays", topic="other")
        await backend.expire("short", 60)
        await broker.publish("3", topic="short")  # appending keeps the expiry
        async with broker.subscribe(sent[0].id, topics=["short"]) as events:
            assert texts(await take(events, 3)) == ["1", "2", "3"]
        await backend.expire("short", 0.05)

        async def gone() -> bool:
            return await backend.ends("short") == (None, None)

        await eventually(gone, "the topic to expire")
        with pytest.raises(EventsLost):
            async with broker.subscribe(sent[0].id, topics=["short"]):
                pass
        assert (await backend.ends("other"))[1] is not None  # other topics are untouched
        await backend.expire("never-written", 10)  # nothing to expire: no error, nothing made
        assert await backend.ends("never-written") == (None, None)


async def test_expiring_at_once_drops_the_topic_now(make_broker: MakeBroker) -> None:
    async with make_broker() as broker:
        backend = backend_of(broker)
        await broker.publish("x", topic="now")
        await backend.expire("now", 0)
        assert await backend.ends("now") == (None, None)


async def test_a_claim_is_set_only_if_absent_renewed_by_its_owner_and_free_again_when_it_expires(
    make_broker: MakeBroker,
) -> None:
    async with make_broker() as broker:
        backend = backend_of(broker)
        assert await backend.claim("k#1", "first", 60) == "first"
        assert await backend.claim("k#1", "second", 60) == "first"
        assert await backend.claim("k#1", "first", 0.05) == "first"  # the owner renews it (shorter)

        async def free() -> bool:
            return await backend.claim("k#1", "second", 60) == "second"

        await eventually(free, "the claim to expire")
        assert await backend.claim("k#2", "other", 60) == "other"  # names are independent


async def test_held_members_are_counted_let_go_and_run_out_by_themselves(make_broker: MakeBroker) -> None:
    async with make_broker() as broker:
        backend = backend_of(broker)
        assert await backend.holders("h#1") == 0
        assert await backend.hold("h#1", "a", 60) == 1
        assert await backend.hold("h#1", "b", 60) == 2
        assert await backend.hold("h#1", "a", 60) == 2  # holding again renews, never counts twice
        assert await backend.hold("h#2", "a", 60) == 1
        assert await backend.hold("h#1", "a", 0) == 1
        assert await backend.holders("h#1") == 1
        assert await backend.hold("h#1", "b", 0.05) == 1

        async def ran_out() -> bool:
            return await backend.holders("h#1") == 0

        await eventually(ran_out, "the hold to run out")
        assert await backend.holders("h#2") == 1


async def test_a_subscription_handed_to_the_response_resets_an_id_it_cannot_resume(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker()
    client = stream_client(broker)
    parser = EventStreamParser()
    with anyio.fail_after(20):
        headers = {"last-event-id": "events@0000.1"}  # no broker of these tests gave it
        async with client.stream("GET", "/events", headers=headers) as response:
            chunks = response.iter_bytes()
            while not parser.events:
                parser.feed(await anext(chunks))
            assert (parser.events[0].type, parser.events[0].data) == ("reset", "reset")
            while broker.subscribers == 0:
                await anyio.sleep(0.001)
            live = await broker.publish("after the reset")
            while len(parser.events) < 2:
                parser.feed(await anext(chunks))
    assert parser.events[1].data == "after the reset"
    assert parser.events[1].last_event_id == live.id
    await broker.aclose()
