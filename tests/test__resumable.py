"""ResumableStreams in process, every rule on every backend: ``memory://`` and a real Redis.

Each test takes ``world``, which makes brokers and ``ResumableStreams`` objects on the backend
of the run. Two ``ResumableStreams`` made by one world stand for two workers: on Redis each has
a broker (a reader, connections) of its own on the same keys; in process they share the broker.
The tests use the public API as an application would (start, attach, cancel, HTTP through the
streaming test client) and wait for what the code does (an event, an ending, an outcome), never
for a fixed time; where a rule is about time (abandon_after, max_duration, keep, the lease), the
test waits for the rule to act and fails if it does not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import threading
import time
import types
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from streaming_responses import (
    AttachedStream,
    BrokerClosed,
    EventBroker,
    EventSourceResponse,
    JobEnding,
    JobOutcome,
    ResumableStreams,
    ServerSentEvent,
    StreamNotFound,
    UnsupportedEventLoop,
    end_all_streams,
    last_event_id,
)
from streaming_responses.testing import StreamingTestClient
from tests.redis_server import RedisServer, redis_server, require_redis, start_redis
from tests.sse_parser import EventStreamParser, ParsedEvent

__all__ = ("redis_server",)

pytestmark = pytest.mark.anyio

#: Seconds any single wait of these tests may take before the test fails.
WAIT = 20.0


@dataclass
class World:
    """Brokers and ResumableStreams of one test, on one backend."""

    kind: str
    server: RedisServer | None
    prefix: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:8]}:")
    brokers: list[EventBroker] = field(default_factory=list)
    workers: list[ResumableStreams] = field(default_factory=list)
    outcomes: list[JobOutcome] = field(default_factory=list)

    def broker(self, *, fresh: bool = False, **settings: Any) -> EventBroker:
        """A broker on this world's storage (in process: the same broker unless ``fresh``)."""
        if self.server is None:
            if fresh or not self.brokers:
                self.brokers.append(EventBroker(**settings))
            return self.brokers[-1]
        broker = EventBroker.from_url(self.server.url, key_prefix=self.prefix, **settings)
        self.brokers.append(broker)
        return broker

    def worker(self, broker: EventBroker | None = None, **settings: Any) -> ResumableStreams:
        """A ResumableStreams standing for one worker; its outcomes go to ``outcomes``."""
        settings.setdefault("on_outcome", self.outcomes.append)
        streams = ResumableStreams(broker or self.broker(), **settings)
        self.workers.append(streams)
        return streams

    async def outcome(self, stream_id: str) -> JobOutcome:
        """The outcome of a job, once it was reported."""
        with anyio.fail_after(WAIT):
            while True:
                for outcome in self.outcomes:
                    if outcome.stream_id == stream_id:
                        return outcome
                await anyio.sleep(0.005)


@pytest.fixture(params=["memory", "redis"])
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    server = request.getfixturevalue("redis_server") if request.param == "redis" else None
    made = World(request.param, server)
    yield made
    for streams in made.workers:
        await streams.aclose()
    for broker in made.brokers:
        await broker.aclose()


# -- helpers --------------------------------------------------------------------------------


@dataclass
class Record:
    """What a producer saw happen to it."""

    yielded: list[str] = field(default_factory=list)
    cancelled_at: str | None = None  # where the cancellation reached it
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # its finally ran


def tokens(
    count: int, record: Record | None = None, *, gate: asyncio.Event | None = None, hold_at: int = -1
) -> AsyncIterator[str]:
    """An async generator of ``token 0`` .. ``token {count-1}``; it waits for ``gate`` before
    token ``hold_at``, and then forever after the last one if ``gate`` is never set."""
    record = record or Record()

    async def produce() -> AsyncIterator[str]:
        try:
            for n in range(count):
                if n == hold_at and gate is not None:
                    try:
                        await gate.wait()
                    except asyncio.CancelledError:
                        record.cancelled_at = f"waiting before token {n}"
                        raise
                record.yielded.append(f"token {n}")
                yield f"token {n}"
                await asyncio.sleep(0)
        finally:
            record.finished.set()

    return produce()


def forever(record: Record, first: str = "first") -> AsyncIterator[str]:
    """Yields ``first``, then waits until cancelled (like a model that stopped answering)."""

    async def produce() -> AsyncIterator[str]:
        try:
            yield first
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                record.cancelled_at = "waiting for the model"
                raise
        finally:
            record.finished.set()

    return produce()


async def read(events: AttachedStream, count: int) -> list[ServerSentEvent]:
    """The next ``count`` events of an attach (fewer if it ends first)."""
    got: list[ServerSentEvent] = []
    iterator = events.__aiter__()
    with anyio.fail_after(WAIT):
        for _ in range(count):
            try:
                got.append(await iterator.__anext__())
            except StopAsyncIteration:
                break
    return got


async def read_all(events: AttachedStream) -> list[ServerSentEvent]:
    got: list[ServerSentEvent] = []
    with anyio.fail_after(WAIT):
        async for event in events:
            got.append(event)
    return got


def items(events: list[ServerSentEvent]) -> list[str]:
    return [str(event.data) for event in events if event.event != "end"]


def ending(events: list[ServerSentEvent]) -> str | None:
    """The outcome the final event names (``None``: the stream has no final event)."""
    if not events or events[-1].event != "end":
        return None
    data = events[-1].data
    return str((json.loads(data) if isinstance(data, str) else data)["outcome"])


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.01)


def http_app(streams: ResumableStreams) -> Starlette:
    async def events(request: Request) -> Response:
        return streams.attach(request.path_params["stream_id"], last_event_id(request), ping=None)

    async def missing(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"handled": "by the app", "status": exc.status_code}, status_code=exc.status_code)

    return Starlette(
        routes=[Route("/streams/{stream_id}", events, methods=["GET", "HEAD"])],
        exception_handlers={HTTPException: missing},
    )


async def http_events(
    client: StreamingTestClient, path: str, last_id: str | None = None
) -> list[ParsedEvent]:
    headers = {"last-event-id": last_id} if last_id is not None else None
    response = await client.get(path, headers=headers, timeout=WAIT)
    assert response.status_code == 200, response.text
    return EventStreamParser().feed(response.body)


# -- attaching ------------------------------------------------------------------------------


async def test_a_client_gets_every_item_then_the_complete_ending_and_on_outcome_sees_it(world: World) -> None:
    streams = world.worker()
    stream_id = await streams.start(tokens(5))
    events = await read_all(streams.attach(stream_id))
    assert items(events) == [f"token {n}" for n in range(5)]
    assert ending(events) == "complete"
    ids = [event.id for event in events]
    assert all(ids)
    assert len(set(ids)) == len(ids)
    outcome = await world.outcome(stream_id)
    assert (outcome.kind, outcome.events, outcome.error, outcome.key) == (JobEnding.COMPLETE, 5, None, None)
    assert outcome.duration > 0


async def test_a_client_that_comes_back_with_its_last_event_id_gets_exactly_the_rest(world: World) -> None:
    streams = world.worker()
    gate = asyncio.Event()
    stream_id = await streams.start(tokens(8, gate=gate, hold_at=4))
    first = streams.attach(stream_id)
    seen = await read(first, 3)
    await first.aclose()
    gate.set()
    again = await read_all(streams.attach(stream_id, seen[-1].id))
    assert items(seen) + items(again) == [f"token {n}" for n in range(8)]
    assert ending(again) == "complete"


async def test_without_an_id_a_client_gets_the_whole_stream_from_its_start_also_after_it_ended(
    world: World,
) -> None:
    streams = world.worker()
    gate = asyncio.Event()
    stream_id = await streams.start(tokens(6, gate=gate, hold_at=3))
    reload_mid_answer = streams.attach(stream_id)
    assert items(await read(reload_mid_answer, 3)) == ["token 0", "token 1", "token 2"]
    await reload_mid_answer.aclose()
    gate.set()
    during = await read_all(streams.attach(stream_id))
    await world.outcome(stream_id)
    after = await read_all(streams.attach(stream_id))
    assert items(during) == items(after) == [f"token {n}" for n in range(6)]
    assert [event.id for event in during] == [event.id for event in after]


async def test_several_clients_attached_at_once_each_get_the_whole_stream(world: World) -> None:
    streams, other_worker = world.worker(), world.worker()
    gate = asyncio.Event()
    stream_id = await streams.start(tokens(20, gate=gate, hold_at=1))
    tabs = [streams.attach(stream_id), other_worker.attach(stream_id), other_worker.attach(stream_id)]
    for tab in tabs:
        assert items(await read(tab, 1)) == ["token 0"]
    assert await streams.attached(stream_id) == 3
    gate.set()
    results = [await read_all(tab) for tab in tabs]
    for result in results:
        assert items(result) == [f"token {n}" for n in range(1, 20)]
        assert ending(result) == "complete"
    assert len({tuple(event.id for event in result) for result in results}) == 1
    await eventually(lambda: _equals(streams.attached(stream_id), 0))


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_attaching_on_another_worker_follows_a_job_running_elsewhere(world: World) -> None:
    owner, other = world.worker(), world.worker()
    gate = asyncio.Event()
    stream_id = await owner.start(tokens(10, gate=gate, hold_at=5))
    elsewhere = other.attach(stream_id)
    assert items(await read(elsewhere, 5)) == [f"token {n}" for n in range(5)]
    gate.set()
    rest = await read_all(elsewhere)
    assert items(rest) == [f"token {n}" for n in range(5, 10)]
    assert ending(rest) == "complete"


# -- unknown, expired, already seen ---------------------------------------------------------


@pytest.mark.parametrize("stream_id", ["AAAAAAAAAAAAAAAA", "not-an-id", "../../etc/passwd"])
async def test_an_unknown_or_malformed_id_is_a_404_through_the_apps_exception_handlers(
    world: World, stream_id: str
) -> None:
    client = StreamingTestClient(http_app(world.worker()))
    for method in ("GET", "HEAD"):
        response = await client.request(method, f"/streams/{stream_id}")
        assert response.status_code == 404
        if method == "GET":
            assert response.json() == {"handled": "by the app", "status": 404}
        assert response.headers["content-type"] == "application/json"


async def test_fastapi_answers_an_unknown_stream_with_its_own_404() -> None:
    from fastapi import FastAPI

    streams = ResumableStreams(EventBroker())
    app = FastAPI()

    @app.get("/answers/{stream_id}/events")
    async def events(stream_id: str, request: Request) -> EventSourceResponse:
        return streams.attach(stream_id, last_event_id(request))

    response = await StreamingTestClient(app).get("/answers/AAAAAAAAAAAAAAAA/events")
    assert response.status_code == 404
    assert response.json() == {"detail": "no such stream: it never existed, or it expired"}


async def test_iterating_cancelling_or_counting_an_unknown_id(world: World) -> None:
    streams = world.worker()
    for stream_id in ("AAAAAAAAAAAAAAAA", "nope"):
        with pytest.raises(StreamNotFound, match=stream_id):
            await read_all(streams.attach(stream_id))
        with pytest.raises(StreamNotFound):
            await streams.cancel(stream_id)
        assert await streams.attached(stream_id) == 0


async def test_an_ended_stream_stays_attachable_for_keep_seconds_then_is_a_404(world: World) -> None:
    kept, short = world.worker(keep=60), world.worker(keep=0.2)
    kept_id = await kept.start(tokens(2))
    short_id = await short.start(tokens(2))
    await world.outcome(kept_id)
    await world.outcome(short_id)
    assert ending(await read_all(kept.attach(kept_id))) == "complete"
    client = StreamingTestClient(http_app(short))

    async def gone() -> bool:
        return (await client.get(f"/streams/{short_id}")).status_code == 404

    await eventually(gone)
    with pytest.raises(StreamNotFound):
        await read_all(short.attach(short_id))
    if world.server is not None:
        # Redis itself expires the stream: its keys carry the expiry, and the lease is gone.
        key = f"{world.prefix}resumable/{kept_id}"
        for name in (key, key + "#epoch"):
            ttl = int(world.server.command("PTTL", name).split(b"\r\n")[0][1:])
            assert 0 < ttl <= 60_000
        assert world.server.command("EXISTS", key + "#lease").startswith(b":0")


async def test_a_client_that_already_had_the_final_event_gets_204_which_stops_an_eventsource(
    world: World,
) -> None:
    streams = world.worker()
    stream_id = await streams.start(tokens(2))
    events = await read_all(streams.attach(stream_id))
    client = StreamingTestClient(http_app(streams))
    response = await client.get(f"/streams/{stream_id}", headers={"last-event-id": events[-1].id or ""})
    assert (response.status_code, response.body) == (204, b"")
    assert await read_all(streams.attach(stream_id, events[-1].id)) == []
    # One event before the end: the final event again, nothing else.
    before_end = await http_events(client, f"/streams/{stream_id}", events[-2].id)
    assert [(event.type, json.loads(event.data)) for event in before_end] == [
        ("end", {"outcome": "complete"})
    ]


# -- over HTTP: refreshes, slow clients ------------------------------------------------------


async def test_a_page_that_refreshes_mid_stream_gets_every_token_exactly_once(world: World) -> None:
    streams, other_worker = world.worker(), world.worker()
    gates = [asyncio.Event() for _ in range(4)]

    async def produce() -> AsyncIterator[str]:
        for n in range(50):
            if n % 10 == 9 and n < 40:
                await gates[n // 10].wait()  # so that each refresh happens mid-stream
            yield f"token {n}"

    stream_id = await streams.start(produce())
    clients = [StreamingTestClient(http_app(streams)), StreamingTestClient(http_app(other_worker))]
    received: list[ParsedEvent] = []
    last_id: str | None = None
    for refresh in range(5):
        headers = {"last-event-id": last_id} if last_id is not None else None
        async with clients[refresh % 2].stream("GET", f"/streams/{stream_id}", headers=headers) as response:
            parser = EventStreamParser()
            chunks = response.iter_bytes()
            with anyio.fail_after(WAIT):
                # Up to the token a gate holds back; the last time, to the final event.
                while len(received) + len(parser.events) < (9 + 10 * refresh if refresh < 4 else 51):
                    parser.feed(await anext(chunks))
            received.extend(parser.events)
            last_id = parser.last_event_id
            await response.disconnect()  # the page goes away mid-answer
        if refresh < 4:
            gates[refresh].set()
    assert [event.data for event in received if event.type == "message"] == [f"token {n}" for n in range(50)]
    assert [(event.type, json.loads(event.data)) for event in received[-1:]] == [
        ("end", {"outcome": "complete"})
    ]


async def test_a_client_that_does_not_read_never_holds_the_producer_back(world: World) -> None:
    streams = world.worker()
    stream_id = await streams.start(tokens(300))
    client = StreamingTestClient(http_app(streams))
    async with client.stream("GET", f"/streams/{stream_id}") as response:
        # The client reads nothing; the job still runs to its end at its own pace.
        outcome = await world.outcome(stream_id)
        assert (outcome.kind, outcome.events) == (JobEnding.COMPLETE, 300)
        body = await response.read()
    events = EventStreamParser().feed(body)
    assert [event.data for event in events[:-1]] == [f"token {n}" for n in range(300)]
    assert events[-1].type == "end"


# -- cancel -----------------------------------------------------------------------------------


async def test_cancel_stops_the_producer_where_it_awaits_and_every_client_gets_cancelled(
    world: World,
) -> None:
    streams, other_worker = world.worker(), world.worker()
    record = Record()
    stream_id = await streams.start(forever(record))
    here, there = streams.attach(stream_id), other_worker.attach(stream_id)
    assert items(await read(here, 1)) == items(await read(there, 1)) == ["first"]
    assert await streams.cancel(stream_id) is True
    assert ending(await read_all(here)) == ending(await read_all(there)) == "cancelled"
    assert record.cancelled_at == "waiting for the model"
    assert record.finished.is_set()  # its finally ran before the clients were told
    assert (await world.outcome(stream_id)).kind is JobEnding.CANCELLED
    assert await streams.cancel(stream_id) is False  # already ended
    assert ending(await read_all(other_worker.attach(stream_id))) == "cancelled"  # kept as it ended


async def test_cancel_from_another_worker_reaches_the_producer(world: World) -> None:
    owner, other = world.worker(), world.worker()
    record = Record()
    stream_id = await owner.start(forever(record))
    watching = other.attach(stream_id)
    assert items(await read(watching, 1)) == ["first"]
    assert await other.cancel(stream_id) is True
    with anyio.fail_after(WAIT):
        await record.finished.wait()
    assert record.cancelled_at == "waiting for the model"
    assert ending(await read_all(watching)) == "cancelled"
    assert await other.cancel(stream_id) is False


async def test_cancellation_reaches_an_httpx_request_the_producer_awaits(world: World) -> None:
    streams = world.worker()
    request_started, request_closed = asyncio.Event(), asyncio.Event()

    class ModelStream(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"data: hello\n\n"
            request_started.set()
            await asyncio.Event().wait()  # the model thinks, forever
            yield b""  # pragma: no cover

        async def aclose(self) -> None:
            request_closed.set()

    model = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: httpx.Response(200, stream=ModelStream())),
        base_url="http://model.invalid",
    )

    async def ask() -> AsyncIterator[str]:
        async with model.stream("POST", "/v1/chat/completions", json={"stream": True}) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    yield line[6:]

    stream_id = await streams.start(ask())
    watching = streams.attach(stream_id)
    assert items(await read(watching, 1)) == ["hello"]
    await request_started.wait()
    assert await streams.cancel(stream_id)
    assert ending(await read_all(watching)) == "cancelled"
    assert request_closed.is_set()
    await model.aclose()


# -- abandon_after and max_duration -------------------------------------------------------------


async def test_a_job_no_client_attaches_to_is_abandoned_after_abandon_after(world: World) -> None:
    streams = world.worker(abandon_after=0.3)
    record = Record()
    stream_id = await streams.start(forever(record))
    outcome = await world.outcome(stream_id)
    assert outcome.kind is JobEnding.ABANDONED
    assert outcome.duration >= 0.3
    assert record.cancelled_at == "waiting for the model"
    assert record.finished.is_set()
    assert ending(await read_all(streams.attach(stream_id))) == "abandoned"


async def test_an_attached_client_keeps_a_job_running_and_one_that_leaves_lets_it_be_abandoned(
    world: World,
) -> None:
    abandon_after = 1.0
    streams = world.worker(abandon_after=abandon_after)
    gate = asyncio.Event()
    stream_id = await streams.start(tokens(3, gate=gate, hold_at=1))
    watching = streams.attach(stream_id)
    assert items(await read(watching, 1)) == ["token 0"]
    # Attached for three times abandon_after: the heartbeat checks a dozen times and finds a client.
    began = time.monotonic()
    while time.monotonic() - began < 3 * abandon_after:
        assert await streams.attached(stream_id) == 1
        await anyio.sleep(0.1)
    assert not any(outcome.stream_id == stream_id for outcome in world.outcomes)
    gate.set()
    assert items(await read_all(watching)) == ["token 1", "token 2"]
    assert (await world.outcome(stream_id)).kind is JobEnding.COMPLETE

    record = Record()
    left = await streams.start(forever(record))
    leaving = streams.attach(left)
    assert items(await read(leaving, 1)) == ["first"]
    await leaving.aclose()  # the tab was closed
    outcome = await world.outcome(left)
    assert outcome.kind is JobEnding.ABANDONED
    assert outcome.duration >= abandon_after


async def test_max_duration_ends_a_job_with_the_timeout_ending(world: World) -> None:
    streams = world.worker(max_duration=0.3)
    record = Record()
    stream_id = await streams.start(forever(record))
    watching = streams.attach(stream_id)
    events = await read_all(watching)
    assert (items(events), ending(events)) == (["first"], "timeout")
    outcome = await world.outcome(stream_id)
    assert outcome.kind is JobEnding.TIMEOUT
    assert outcome.duration >= 0.3
    assert record.cancelled_at == "waiting for the model"


# -- errors -------------------------------------------------------------------------------------


async def test_a_producer_that_raises_ends_with_the_error_ending_and_is_logged_once(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    streams = world.worker()

    async def fails() -> AsyncIterator[str]:
        yield "partial answer"
        raise RuntimeError("the model server went away")

    with caplog.at_level(logging.ERROR, logger="streaming_responses"):
        stream_id = await streams.start(fails())
        events = await read_all(streams.attach(stream_id))
        outcome = await world.outcome(stream_id)
    assert (items(events), ending(events)) == (["partial answer"], "error")
    assert outcome.kind is JobEnding.ERROR
    assert isinstance(outcome.error, RuntimeError)
    assert outcome.events == 1
    failures = [r for r in caplog.records if r.exc_info and r.exc_info[1] is outcome.error]
    assert len(failures) == 1
    # The client sees a generic ending, never the exception's text.
    assert "went away" not in json.dumps([str(event.data) for event in events])


@pytest.mark.parametrize(
    ("item", "error"),
    [
        (b"data: raw\n\n", TypeError),
        (ServerSentEvent("with an id", id="7"), ValueError),
        (ServerSentEvent("sneaky", event="streaming_responses.end"), ValueError),
    ],
)
async def test_an_item_that_cannot_be_an_event_of_the_stream_ends_it_as_an_error(
    world: World, item: object, error: type[Exception]
) -> None:
    streams = world.worker()
    record = Record()

    async def produce() -> AsyncIterator[object]:
        try:
            yield "fine"
            yield item
            yield "never"  # pragma: no cover
        finally:
            record.finished.set()

    stream_id = await streams.start(produce())
    events = await read_all(streams.attach(stream_id))
    assert (items(events), ending(events)) == (["fine"], "error")
    outcome = await world.outcome(stream_id)
    assert isinstance(outcome.error, error)
    assert record.finished.is_set()  # the producer was closed


async def test_a_worker_that_stops_without_a_word_ends_its_clients_streams_with_an_error(
    world: World,
) -> None:
    # The worker running the job freezes (its event loop stops: no heartbeat, no final event),
    # as a worker killed with SIGKILL does; a client attached on another worker learns it
    # through the lease. Afterwards the worker runs again and is closed cleanly.
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    owner_broker = world.broker()
    owner = ResumableStreams(owner_broker, lease=0.5)
    record = Record()
    stream_id = asyncio.run_coroutine_threadsafe(owner.start(forever(record)), loop).result(WAIT)
    viewer = world.worker(lease=0.5)
    watching = viewer.attach(stream_id)
    assert items(await read(watching, 1)) == ["first"]
    loop.call_soon_threadsafe(loop.stop)
    thread.join(WAIT)
    events = await read_all(watching)
    assert (items(events), ending(events)) == ([], "error")
    assert events[-1].id is None  # made up by the client's worker: not an event of the stream
    assert await viewer.cancel(stream_id) is False  # nobody runs it any more

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(owner.aclose(), loop).result(WAIT)
        if world.server is not None:
            asyncio.run_coroutine_threadsafe(owner_broker.aclose(), loop).result(WAIT)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT)
        loop.close()
    assert record.finished.is_set()


# -- shutdown and closing -------------------------------------------------------------------------


async def test_a_server_shutdown_ends_running_jobs_with_the_shutdown_ending(world: World) -> None:
    streams, other_worker = world.worker(), world.worker()
    record = Record()
    stream_id = await streams.start(forever(record))
    watching = other_worker.attach(stream_id)
    assert items(await read(watching, 1)) == ["first"]
    assert end_all_streams() >= 1  # what SIGTERM does through the shutdown registry
    assert ending(await read_all(watching)) == "shutdown"
    assert (await world.outcome(stream_id)).kind is JobEnding.SHUTDOWN
    assert record.cancelled_at == "waiting for the model"


async def test_with_on_shutdown_finish_jobs_run_to_their_end_and_aclose_waits_for_them(world: World) -> None:
    streams = world.worker(on_shutdown="finish")
    gate = asyncio.Event()
    stream_id = await streams.start(tokens(3, gate=gate, hold_at=2))
    watching = streams.attach(stream_id)
    assert items(await read(watching, 2)) == ["token 0", "token 1"]
    end_all_streams()
    closing = asyncio.ensure_future(streams.aclose())
    await asyncio.sleep(0)
    assert not closing.done()
    gate.set()
    await closing
    assert (await world.outcome(stream_id)).kind is JobEnding.COMPLETE
    assert items(await read_all(watching)) == ["token 2"]
    with pytest.raises(BrokerClosed, match="closed ResumableStreams"):
        await streams.start(tokens(1))


async def test_aclose_ends_the_jobs_with_the_shutdown_ending_and_leaves_no_task_behind(world: World) -> None:
    before = asyncio.all_tasks()
    streams = world.worker()
    records = [Record() for _ in range(3)]
    ids = [await streams.start(forever(record)) for record in records]
    for stream_id in ids:  # each producer is running (waiting for its model)
        watching = streams.attach(stream_id)
        assert items(await read(watching, 1)) == ["first"]
        await watching.aclose()
    async with streams:
        pass
    assert [(await world.outcome(stream_id)).kind for stream_id in ids] == [JobEnding.SHUTDOWN] * 3
    assert all(record.finished.is_set() for record in records)
    other = world.worker()
    assert ending(await read_all(other.attach(ids[0]))) == "shutdown"
    await other.aclose()
    for broker in world.brokers:  # the broker's own reader ends with the broker
        await broker.aclose()
    assert asyncio.all_tasks() - before == set()


# -- idempotent start, history, ending format, settings ------------------------------------------


async def test_the_same_key_starts_one_job_and_gives_its_id_while_the_stream_is_kept(world: World) -> None:
    streams, other_worker = world.worker(), world.worker()
    started, unused = Record(), Record()
    gate = asyncio.Event()
    first = await streams.start(tokens(2, started, gate=gate, hold_at=1), key="post-42")
    retried = await other_worker.start(tokens(2, unused), key="post-42")
    assert retried == first
    assert unused.yielded == []
    assert unused.finished.is_set() is False
    gate.set()
    await world.outcome(first)
    assert await streams.start(tokens(2, unused), key="post-42") == first  # ended, still kept
    assert unused.yielded == []
    assert await streams.start(tokens(1), key="post-43") != first
    assert [outcome.stream_id for outcome in world.outcomes].count(first) == 1


async def test_a_stream_longer_than_the_history_goes_on_for_its_clients_and_is_lost_for_late_ones(
    world: World,
) -> None:
    # A client that follows the stream is never more than `step` events behind (the producer
    # waits for it), well within the history; the stream is many times longer than the history.
    # Redis keeps at least `history` entries, trimming whole nodes of about 100.
    history, step, count = (20, 10, 100) if world.server is None else (150, 50, 1000)
    broker = world.broker(fresh=True, history=history)
    streams = world.worker(broker)
    permits: asyncio.Queue[None] = asyncio.Queue()

    async def produce() -> AsyncIterator[str]:
        for n in range(count):
            if n % step == 0:
                await permits.get()
            yield f"token {n}"

    stream_id = await streams.start(produce())
    following = streams.attach(stream_id)
    followed: list[ServerSentEvent] = []
    for _ in range(count // step):
        permits.put_nowait(None)
        followed += await read(following, step)
    followed += await read_all(following)
    assert items(followed) == [f"token {n}" for n in range(count)]
    assert ending(followed) == "complete"
    late = await read_all(streams.attach(stream_id))
    assert (items(late), ending(late)) == ([], "lost")
    near_the_end = await read_all(streams.attach(stream_id, followed[-3].id))
    assert items(near_the_end) == [f"token {count - 1}"]
    assert ending(near_the_end) == "complete"


async def test_end_event_shapes_the_final_event_for_openai_compatible_clients(world: World) -> None:
    def done(end: JobEnding) -> object:
        return "[DONE]" if end is JobEnding.COMPLETE else {"error": {"message": f"generation {end.value}"}}

    streams = world.worker(end_event=done)
    stream_id = await streams.start(tokens(1))
    events = await read_all(streams.attach(stream_id))
    assert [(event.event, event.data) for event in events] == [(None, "token 0"), (None, "[DONE]")]
    assert events[-1].encode().startswith(b"data: [DONE]\nid: ")
    cancelled = await streams.start(forever(Record()))
    await streams.cancel(cancelled)
    assert (await read_all(streams.attach(cancelled)))[-1].data == {
        "error": {"message": "generation cancelled"}
    }


@pytest.mark.parametrize(
    ("settings", "error", "match"),
    [
        ({"keep": 0}, ValueError, "keep"),
        ({"keep": "60"}, TypeError, "keep"),
        ({"abandon_after": -1}, ValueError, "abandon_after"),
        ({"max_duration": float("inf")}, ValueError, "max_duration"),
        ({"lease": 0}, ValueError, "lease"),
        ({"on_shutdown": "wait"}, ValueError, "on_shutdown"),
        ({"on_outcome": "print"}, TypeError, "on_outcome"),
        ({"end_event": 1}, TypeError, "end_event"),
        ({"prefix": "a@b"}, ValueError, "topic"),
        ({"prefix": "p" * 61}, ValueError, "prefix"),
    ],
)
def test_bad_settings_are_refused_with_an_error_naming_them(
    settings: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        ResumableStreams(EventBroker(), **settings)


async def test_bad_arguments_are_refused_with_an_error_naming_them() -> None:
    with pytest.raises(TypeError, match="broker must be an EventBroker"):
        ResumableStreams("redis://localhost")  # type: ignore[arg-type]
    streams = ResumableStreams(EventBroker())

    def sync_tokens() -> Iterator[str]:
        yield "x"  # pragma: no cover

    with pytest.raises(TypeError, match="async iterable"):
        await streams.start(sync_tokens())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key must be a str"):
        await streams.start(tokens(1), key=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key must be 1 to"):
        await streams.start(tokens(1), key="")
    with pytest.raises(TypeError, match="last_event_id"):
        streams.attach("AAAAAAAAAAAAAAAA", 7)  # type: ignore[arg-type]
    await streams.aclose()


# -- trio ---------------------------------------------------------------------------------------


def test_on_trio_resumable_streams_refuse_with_a_clear_error() -> None:
    trio = pytest.importorskip("trio")
    made_outside = ResumableStreams(EventBroker())

    async def main() -> None:
        with pytest.raises(UnsupportedEventLoop, match="trio is running"):
            ResumableStreams(EventBroker())
        with pytest.raises(UnsupportedEventLoop, match=r"start\(\) needs asyncio"):
            await made_outside.start(tokens(1))
        with pytest.raises(UnsupportedEventLoop):
            await made_outside.cancel("AAAAAAAAAAAAAAAA")
        with pytest.raises(UnsupportedEventLoop):
            await read_all(made_outside.attach("AAAAAAAAAAAAAAAA"))
        # Returned from an endpoint: the error comes before anything is sent (a 500).
        client = StreamingTestClient(http_app(made_outside))
        with pytest.raises(UnsupportedEventLoop):
            await client.get("/streams/AAAAAAAAAAAAAAAA")

    trio.run(main)


def test_the_job_outcome_and_the_endings_are_plain_data() -> None:
    outcome = JobOutcome("AAAAAAAAAAAAAAAA", JobEnding.CANCELLED, 3, 1.5)
    assert outcome.error is None
    assert outcome.key is None
    assert [ending.value for ending in JobEnding] == [
        "complete",
        "error",
        "cancelled",
        "abandoned",
        "timeout",
        "shutdown",
        "lost",
    ]
    with pytest.raises(AttributeError):
        outcome.kind = JobEnding.COMPLETE  # type: ignore[misc]


# -- the guide's recipe -------------------------------------------------------------------------

GUIDE = (Path(__file__).resolve().parents[1] / "docs" / "resumable.md").read_text()
RECIPE = re.search(r'^```python title="chat.py"\n(.*?)^```', GUIDE, re.MULTILINE | re.DOTALL)


async def test_the_llm_recipe_of_the_guide_runs_as_shown(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    match = RECIPE
    assert match is not None
    if world.server is not None:
        from_url = EventBroker.from_url

        def with_prefix(url: str, **settings: Any) -> EventBroker:
            return from_url(url, key_prefix=world.prefix, **settings)

        monkeypatch.setattr(EventBroker, "from_url", with_prefix)
        monkeypatch.setenv("BROKER_URL", world.server.url)
    else:
        monkeypatch.setenv("BROKER_URL", "memory://")
    # A module of its own, as a file would be (pydantic resolves the models' names there).
    module = types.ModuleType("chat_recipe")
    monkeypatch.setitem(sys.modules, "chat_recipe", module)
    exec(compile(match.group(1), "chat_recipe", "exec"), module.__dict__)
    namespace = module.__dict__
    model_closed = asyncio.Event()

    class ModelStream(httpx.AsyncByteStream):
        """An OpenAI-compatible model server: chunks, then [DONE]; "think" never finishes."""

        def __init__(self, words: list[str], hang: bool) -> None:
            self.words, self.hang = words, hang

        async def __aiter__(self) -> AsyncIterator[bytes]:
            for word in self.words:
                chunk = {"choices": [{"index": 0, "delta": {"content": word}}]}
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            if self.hang:
                await asyncio.Event().wait()
            yield b"data: [DONE]\n\n"

        async def aclose(self) -> None:
            model_closed.set()

    def model_server(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body["stream"] is True
        text = body["messages"][-1]["content"]
        return httpx.Response(200, stream=ModelStream(text.split(), hang="think" in text))

    namespace["model"] = httpx.AsyncClient(
        transport=httpx.MockTransport(model_server), base_url="http://model"
    )
    app, streams = namespace["app"], namespace["streams"]
    client = StreamingTestClient(app)
    request = {"model": "m", "messages": [{"role": "user", "content": "hello resumable world"}]}

    bad = await client.post("/v1/chat/streams", json={"model": "m", "messages": []})
    assert bad.status_code == 422
    started = await client.post("/v1/chat/streams", json=request, headers={"idempotency-key": "k1"})
    stream_id = started.json()["id"]
    again = await client.post("/v1/chat/streams", json=request, headers={"idempotency-key": "k1"})
    assert again.json()["id"] == stream_id
    events = await http_events(client, f"/v1/chat/streams/{stream_id}")
    assert [json.loads(e.data)["choices"][0]["delta"]["content"] for e in events[:-1]] == [
        "hello",
        "resumable",
        "world",
    ]
    assert (events[-1].type, events[-1].data) == ("message", "[DONE]")
    assert (await client.get("/v1/chat/streams/AAAAAAAAAAAAAAAA")).status_code == 404

    thinking = {"model": "m", "messages": [{"role": "user", "content": "think hard"}]}
    stream_id = (await client.post("/v1/chat/streams", json=thinking)).json()["id"]
    async with client.stream("GET", f"/v1/chat/streams/{stream_id}") as response:
        parser = EventStreamParser()
        chunks = response.iter_bytes()
        with anyio.fail_after(WAIT):
            while len(parser.events) < 2:
                parser.feed(await anext(chunks))
            stopped = await client.post(f"/v1/chat/streams/{stream_id}/stop")
            async for chunk in chunks:
                parser.feed(chunk)
    assert stopped.json() == {"stopped": True}
    assert model_closed.is_set()  # the request to the model server was cancelled and closed
    assert [json.loads(e.data)["choices"][0]["delta"]["content"] for e in parser.events[:-1]] == [
        "think",
        "hard",
    ]
    assert json.loads(parser.events[-1].data) == {
        "error": {"message": "the generation ended: cancelled", "type": "cancelled"}
    }
    assert (await client.post("/v1/chat/streams/AAAAAAAAAAAAAAAA/stop")).status_code == 404
    await streams.aclose()
    await namespace["broker"].aclose()
    await namespace["model"].aclose()


async def test_cancel_requests_still_arrive_after_redis_was_away_longer_than_stall_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    require_redis()
    with start_redis() as server:
        prefix = f"test-{uuid.uuid4().hex[:8]}:"
        owner_broker = EventBroker.from_url(server.url, key_prefix=prefix, timeout=0.5, stall_timeout=0.5)
        other_broker = EventBroker.from_url(server.url, key_prefix=prefix)
        outcomes: list[JobOutcome] = []
        owner = ResumableStreams(owner_broker, lease=60, on_outcome=outcomes.append)
        other = ResumableStreams(other_broker)
        record = Record()
        stream_id = await owner.start(forever(record))
        watching = other.attach(stream_id)
        assert items(await read(watching, 1)) == ["first"]  # the job now waits for its model
        await watching.aclose()
        with caplog.at_level(logging.WARNING, logger="streaming_responses"):
            server.pause()
            try:
                with anyio.fail_after(WAIT):
                    while "the cancel listener" not in caplog.text:
                        await anyio.sleep(0.02)
            finally:
                server.resume()
            # Published while the owner's listener is still away: it finds it when it joins again.
            assert await other.cancel(stream_id) is True
            with anyio.fail_after(WAIT):
                await record.finished.wait()
                while not outcomes:
                    await anyio.sleep(0.01)
        assert record.cancelled_at == "waiting for the model"
        assert outcomes[0].kind is JobEnding.CANCELLED
        for streams, broker in ((owner, owner_broker), (other, other_broker)):
            await streams.aclose()
            await broker.aclose()


async def test_a_client_too_slow_for_its_buffer_is_ended_without_an_ending_and_resumes_exactly(
    world: World,
) -> None:
    broker = world.broker(fresh=True, subscriber_buffer=5, history=2000)
    streams = world.worker(broker)
    gate = asyncio.Event()
    padding = "x" * 2000  # 2 MB in all: more than the response and the test client hold

    async def produce() -> AsyncIterator[str]:
        for n in range(1000):
            if n == 1:
                await gate.wait()
            yield f"{n} {padding}"

    stream_id = await streams.start(produce())
    client = StreamingTestClient(http_app(streams))
    async with client.stream("GET", f"/streams/{stream_id}") as response:
        parser = EventStreamParser()
        chunks = response.iter_bytes()
        with anyio.fail_after(WAIT):
            while not parser.events:
                parser.feed(await anext(chunks))
            gate.set()  # the rest comes at once while this client reads nothing
            await world.outcome(stream_id)
            async for chunk in chunks:
                parser.feed(chunk)
    assert response.complete  # its body ended normally...
    assert all(event.type == "message" for event in parser.events)  # ...without the final event
    rest = await http_events(client, f"/streams/{stream_id}", parser.last_event_id)
    received = [event.data for event in parser.events + rest if event.type == "message"]
    assert received == [f"{n} {padding}" for n in range(1000)]
    assert len(parser.events) < 1000  # the first stream really was cut short
    assert rest[-1].type == "end"


async def test_a_failing_or_async_on_outcome_is_awaited_or_logged_and_the_job_still_ends(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[JobOutcome] = []

    async def remember(outcome: JobOutcome) -> None:
        await asyncio.sleep(0)
        seen.append(outcome)

    def broken(outcome: JobOutcome) -> None:
        raise RuntimeError("the metrics backend is down")

    remembering, failing = world.worker(on_outcome=remember), world.worker(on_outcome=broken)
    first = await remembering.start(tokens(1))
    assert ending(await read_all(remembering.attach(first))) == "complete"
    with caplog.at_level(logging.ERROR, logger="streaming_responses"):
        second = await failing.start(tokens(1))
        assert ending(await read_all(failing.attach(second))) == "complete"
        with anyio.fail_after(WAIT):
            while "on_outcome callback" not in caplog.text or not seen:
                await anyio.sleep(0.01)
    assert [outcome.stream_id for outcome in seen] == [first]


async def test_starting_on_a_closed_broker_raises_and_closes_the_producer(world: World) -> None:
    broker = world.broker(fresh=True)
    streams = world.worker(broker)
    await broker.aclose()
    closed = asyncio.Event()

    class Producer:
        def __aiter__(self) -> Producer:
            return self

        async def __anext__(self) -> str:
            raise StopAsyncIteration  # pragma: no cover

        async def aclose(self) -> None:
            closed.set()

    with pytest.raises(BrokerClosed):
        await streams.start(Producer())
    assert closed.is_set()


def test_a_job_whose_event_loop_ends_without_aclose_still_writes_its_shutdown_ending() -> None:
    broker = EventBroker()
    record = Record()
    outcomes: list[JobOutcome] = []

    async def serve_then_stop() -> str:
        streams = ResumableStreams(broker, on_outcome=outcomes.append)
        stream_id = await streams.start(forever(record))
        watching = streams.attach(stream_id)
        assert items(await read(watching, 1)) == ["first"]
        await watching.aclose()
        return stream_id  # asyncio.run() then cancels the tasks left: the job is one

    stream_id = asyncio.run(serve_then_stop())

    async def look() -> list[ServerSentEvent]:
        return await read_all(ResumableStreams(broker).attach(stream_id))

    assert ending(asyncio.run(look())) == "shutdown"
    assert [outcome.kind for outcome in outcomes] == [JobEnding.SHUTDOWN]
    assert record.cancelled_at == "waiting for the model"
