"""Server-sent events: the encoder against a WHATWG parser, validation, and the response."""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import pickle
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streaming_responses import (
    EventSourceResponse,
    Outcome,
    ServerSentEvent,
    end_all_streams,
    last_event_id,
)
from streaming_responses._events import (
    as_event,
    encode_event,
    encode_fields_item,
    encode_item,
    encode_items,
    event_from_fields,
)
from streaming_responses._sse import _EncodingIterator
from streaming_responses.testing import StreamAborted, StreamingTestClient
from tests.asgi import Recorder, http_scope
from tests.sse_parser import EventStreamParser, ParsedEvent, parse_stream

# -- the event and its encoding --------------------------------------------------------------

# Text a field may hold: anything but lone surrogates (not UTF-8 encodable).
field_text = st.text(st.characters(exclude_categories=["Cs"]))


@settings(max_examples=150, deadline=None)
@given(
    data=field_text,
    event=field_text.filter(lambda t: "\r" not in t and "\n" not in t and t != ""),
    # An id never has CR, LF or NUL, nor a space or tab at either end (HTTP would trim it).
    id=field_text.filter(lambda t: not set(t) & set("\r\n\0") and t == t.strip(" \t")),
)
def test_any_text_survives_the_round_trip_through_a_spec_parser(data: str, event: str, id: str) -> None:
    wire = encode_event(ServerSentEvent(data, event=event, id=id))
    parser = EventStreamParser()
    events = parser.feed(wire)
    expected_data = data.replace("\r\n", "\n").replace("\r", "\n")
    # WHATWG 9.2.6: the last event ID is set from the id field, then the event is dispatched.
    assert events == [ParsedEvent(type=event, data=expected_data, last_event_id=id)]


@settings(max_examples=50, deadline=None)
@given(st.lists(field_text, max_size=20), st.integers(1, 64))
def test_many_events_split_anywhere_parse_back_in_order(texts: list[str], cut: int) -> None:
    wire = encode_items(texts)
    parser = EventStreamParser()
    parsed = []
    for start in range(0, len(wire), cut):
        parsed.extend(parser.feed(wire[start : start + cut]))
    assert [event.data for event in parsed] == [t.replace("\r\n", "\n").replace("\r", "\n") for t in texts]


def _built_the_long_way(data: object, id: object) -> bytes | Exception:
    """What the full check of every field (`_build`) makes of ``data`` and ``id``."""
    event = object.__new__(ServerSentEvent)
    try:
        event._build(data, None, id, None, None)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        return exc
    return event.encode()


# Any text at all, with line ends, NUL, spaces, tabs and lone surrogates drawn often.
any_text = st.text(st.sampled_from("\r\n\0 \t\ud800a") | st.characters(exclude_categories=()), max_size=12)


@settings(max_examples=400, deadline=None)
@given(data=any_text | st.none(), id=any_text | st.none() | st.sampled_from([" 1", "1 ", "a b", "\t1", ""]))
def test_the_short_path_of_common_events_agrees_with_the_full_check(data: str | None, id: str | None) -> None:
    # The constructor takes a short path for one line of text with an id; whatever it
    # accepts, the full check must accept with the same bytes, and what it refuses, too.
    expected = _built_the_long_way(data, id)
    try:
        wire: bytes | Exception = ServerSentEvent(data=data, id=id).encode()
    except (TypeError, ValueError) as exc:
        wire = exc
    if isinstance(expected, Exception):
        assert type(wire) is type(expected)
        assert str(wire) == str(expected)
    else:
        assert wire == expected


def test_the_wire_format_uses_name_colon_space_value_and_one_data_line_per_line() -> None:
    event = ServerSentEvent("a\r\nb\rc\nd", event="note", id="7", retry=1500, comment="hello")
    assert (
        event.encode() == b": hello\nevent: note\ndata: a\ndata: b\ndata: c\ndata: d\nid: 7\nretry: 1500\n\n"
    )


def test_an_empty_string_still_dispatches_an_empty_event() -> None:
    assert encode_item("") == b"data: \n\n"
    assert parse_stream(encode_item("")) == [ParsedEvent(type="message", data="", last_event_id="")]


def test_a_comment_only_event_is_colon_lines_that_dispatch_nothing() -> None:
    wire = ServerSentEvent(comment="keep\nalive").encode()
    assert wire == b": keep\n: alive\n\n"
    parser = EventStreamParser()
    assert parser.feed(wire) == []
    assert parser.comments == ["keep", "alive"]


def test_retry_is_sent_as_digits_the_client_accepts() -> None:
    parser = EventStreamParser()
    parser.feed(ServerSentEvent(retry=250).encode())
    assert parser.retry == 250


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"event": "a\nb"}, ValueError, "event must not contain '\\\\n'"),
        ({"event": "a\rb"}, ValueError, "event must not contain '\\\\r'"),
        ({"id": "1\n2"}, ValueError, "id must not contain '\\\\n'"),
        ({"id": "1\x002"}, ValueError, "id must not contain '\\\\x00'"),
        ({"id": " 42"}, ValueError, "id must not start or end with a space or tab"),
        ({"id": "42 "}, ValueError, "id must not start or end with a space or tab"),
        ({"id": "42\t", "event": "tick"}, ValueError, "id must not start or end with a space or tab"),
        ({"retry": -1}, ValueError, "retry must be a non-negative"),
        ({"retry": 1.5}, TypeError, "retry must be an int"),
        ({"retry": True}, TypeError, "retry must be an int"),
        ({"event": 3}, TypeError, "event must be a str or None"),
    ],
)
def test_bad_fields_are_refused_when_the_event_is_built(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        ServerSentEvent("x", **kwargs)


def test_an_event_is_immutable() -> None:
    event = ServerSentEvent("x", id="1")
    with pytest.raises(AttributeError):
        event.id = "2"  # type: ignore[misc]
    assert event == ServerSentEvent("x", id="1")
    assert event.with_id("2") == ServerSentEvent("x", id="2")


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Price(BaseModel):
    symbol: str
    value: float


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        ({"a": [1, None, "é"]}, 'data: {"a":[1,null,"é"]}\n\n'),
        ([1, 2], "data: [1,2]\n\n"),
        (Point(1, 2.5), 'data: {"x":1,"y":2.5}\n\n'),
        (Price(symbol="ACME", value=12.5), 'data: {"symbol":"ACME","value":12.5}\n\n'),
        (42, "data: 42\n\n"),
    ],
)
def test_data_that_is_not_a_str_is_sent_as_json(data: object, wire: str) -> None:
    assert ServerSentEvent(data).encode() == wire.encode()
    assert encode_item(data) == wire.encode()


@pytest.mark.parametrize("bad", [math.nan, math.inf, {"x": [-math.inf]}])
def test_nan_and_infinities_are_an_error_not_invalid_json(bad: object) -> None:
    with pytest.raises(ValueError, match="NaN or an infinity"):
        ServerSentEvent(bad)


def test_an_object_json_cannot_represent_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        ServerSentEvent(object())


def test_fastapi_events_keep_fastapis_meaning_of_their_fields() -> None:
    from fastapi.sse import ServerSentEvent as FastAPIEvent

    assert encode_item(FastAPIEvent(data="hi", id="3", event="e")) == b'event: e\ndata: "hi"\nid: 3\n\n'
    assert encode_item(FastAPIEvent(raw_data="plain", retry=10)) == b"data: plain\nretry: 10\n\n"


def test_last_event_id_reads_the_header_and_refuses_what_no_event_of_ours_can_carry() -> None:
    def scope(value: bytes) -> dict[str, object]:
        return {"type": "http", "headers": [(b"last-event-id", value)]}

    assert last_event_id(scope(b"41")) == "41"
    assert last_event_id(scope(" é9 ".encode())) == "é9"
    assert last_event_id(scope(b"")) is None
    assert last_event_id(scope(b"\xff")) is None
    assert last_event_id({"type": "http", "headers": []}) is None


# -- the response, in process ------------------------------------------------------------------


def make_app(endpoint: object) -> Starlette:
    return Starlette(routes=[Route("/events", endpoint, methods=["GET", "HEAD"])])  # type: ignore[arg-type]


async def events_after(response_body: AsyncIterator[bytes], count: int) -> list[ParsedEvent]:
    parser = EventStreamParser()
    found: list[ParsedEvent] = []
    async for chunk in response_body:
        found.extend(parser.feed(chunk))
        if len(found) >= count:
            break
    return found


@pytest.mark.anyio
async def test_headers_go_out_before_the_first_event_without_a_connection_header() -> None:
    release = anyio.Event()

    async def endpoint(request: Request) -> Response:
        async def later() -> AsyncIterator[str]:
            await release.wait()
            yield "late"

        return EventSourceResponse(later())

    client = StreamingTestClient(make_app(endpoint))
    async with client.stream("GET", "/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert "connection" not in response.headers
        release.set()
        assert await events_after(response.iter_bytes(), 1) == [ParsedEvent("message", "late", "")]


def test_a_connection_header_is_refused() -> None:
    with pytest.raises(ValueError, match="must not set the 'Connection' header"):
        EventSourceResponse(iter(()), headers={"Connection": "keep-alive"})


@pytest.mark.anyio
async def test_pings_fill_silences_and_stop_when_events_flow() -> None:
    async def endpoint(request: Request) -> Response:
        async def slow() -> AsyncIterator[ServerSentEvent]:
            await anyio.sleep(0.25)
            yield ServerSentEvent("done", id="1")

        return EventSourceResponse(slow(), ping=0.05, ping_comment="still here")

    client = StreamingTestClient(make_app(endpoint))
    response = await client.get("/events")
    parser = EventStreamParser()
    assert parser.feed(response.body) == [ParsedEvent("message", "done", "1")]
    assert 3 <= parser.comments.count("still here") <= 6


@pytest.mark.anyio
async def test_ping_none_sends_no_comments_and_does_not_spin() -> None:
    async def endpoint(request: Request) -> Response:
        async def slow() -> AsyncIterator[str]:
            await anyio.sleep(0.2)
            yield "x"

        return EventSourceResponse(slow(), ping=None)

    response = await StreamingTestClient(make_app(endpoint)).get("/events")
    assert response.body == b":\n\ndata: x\n\n"
    # One opening message, one event, the end: no busy loop sent anything in between.
    assert len([m for m in response.messages if m["type"] == "http.response.body"]) <= 3


@pytest.mark.anyio
async def test_a_mid_stream_error_sends_a_generic_error_event_then_aborts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def endpoint(request: Request) -> Response:
        async def failing() -> AsyncIterator[str]:
            yield "one"
            await anyio.sleep(0.01)
            raise RuntimeError("secret database password")

        return EventSourceResponse(failing())

    client = StreamingTestClient(make_app(endpoint))
    with caplog.at_level(logging.CRITICAL, logger="streaming_responses"):
        async with client.stream("GET", "/events") as response:
            received: list[bytes] = []

            async def read_all() -> None:
                async for chunk in response.iter_bytes():
                    received.append(chunk)

            with pytest.raises(StreamAborted):
                await read_all()
    body = b"".join(received)
    events = parse_stream(body)
    assert events == [ParsedEvent("message", "one", ""), ParsedEvent("error", "stream failed", "")]
    assert b"secret" not in body


@pytest.mark.anyio
async def test_the_error_event_can_carry_what_the_app_chooses() -> None:
    async def endpoint(request: Request) -> Response:
        async def failing() -> AsyncIterator[str]:
            yield "one"
            await anyio.sleep(0.01)
            raise KeyError("k")

        return EventSourceResponse(
            failing(), error_event=lambda exc: ServerSentEvent({"error": type(exc).__name__}, event="error")
        )

    client = StreamingTestClient(make_app(endpoint), http_version="2")
    response = await client.get("/events", headers={"te": "trailers"})
    assert parse_stream(response.body)[-1] == ParsedEvent("error", '{"error":"KeyError"}', "")
    assert response.trailers is not None
    assert response.trailers["stream-status"] == "error"


@pytest.mark.anyio
async def test_head_sends_the_headers_and_never_runs_the_generator() -> None:
    ran: list[str] = []

    async def endpoint(request: Request) -> Response:
        async def gen() -> AsyncIterator[str]:
            ran.append("ran")
            yield "x"

        return EventSourceResponse(gen())

    response = await StreamingTestClient(make_app(endpoint)).request("HEAD", "/events")
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.body == b""
    assert ran == []


@pytest.mark.anyio
async def test_sync_generators_and_lists_work_through_the_core() -> None:
    def numbers() -> Iterator[ServerSentEvent]:
        for n in range(500):
            yield ServerSentEvent({"n": n}, id=str(n))

    async def sync_endpoint(request: Request) -> Response:
        return EventSourceResponse(numbers())

    response = await StreamingTestClient(make_app(sync_endpoint)).get("/events")
    events = parse_stream(response.body)
    assert [e.data for e in events] == [f'{{"n":{n}}}' for n in range(500)]
    assert events[-1].last_event_id == "499"

    async def list_endpoint(request: Request) -> Response:
        return EventSourceResponse(["a", ServerSentEvent("b", event="x")])

    response = await StreamingTestClient(make_app(list_endpoint)).get("/events")
    assert parse_stream(response.body) == [ParsedEvent("message", "a", ""), ParsedEvent("x", "b", "")]


@pytest.mark.anyio
async def test_a_disconnect_while_idle_closes_the_generator_at_once() -> None:
    closed = anyio.Event()

    async def endpoint(request: Request) -> Response:
        async def idle() -> AsyncIterator[str]:
            try:
                yield "hello"
                await anyio.sleep_forever()
            finally:
                closed.set()

        return EventSourceResponse(idle())

    client = StreamingTestClient(make_app(endpoint))
    async with client.stream("GET", "/events") as response:
        await events_after(response.iter_bytes(), 1)
        with anyio.fail_after(0.1):
            await response.disconnect()
            await closed.wait()


@pytest.mark.anyio
async def test_end_all_streams_sends_the_shutdown_event_and_ends_the_body() -> None:
    outcomes: list[Outcome] = []

    async def endpoint(request: Request) -> Response:
        async def endless() -> AsyncIterator[ServerSentEvent]:
            n = 0
            while True:
                n += 1
                yield ServerSentEvent(str(n), id=str(n))
                await anyio.sleep(0.01)

        return EventSourceResponse(
            endless(),
            shutdown_event=ServerSentEvent("bye", event="shutdown", retry=1000),
            on_outcome=lambda outcome: outcomes.append(outcome.kind),
        )

    client = StreamingTestClient(make_app(endpoint))
    async with client.stream("GET", "/events") as response:
        await events_after(response.iter_bytes(), 3)
        assert end_all_streams() == 1
        await response.read()
        assert response.complete
        events = parse_stream(response.body)
    assert events[-1] == ParsedEvent("shutdown", "bye", events[-2].last_event_id)
    assert outcomes == [Outcome.SHUTDOWN]


@pytest.mark.anyio
async def test_a_generator_reads_last_event_id_to_resume() -> None:
    async def endpoint(request: Request) -> Response:
        start = int(last_event_id(request) or 0)

        async def numbers() -> AsyncIterator[ServerSentEvent]:
            for n in range(start + 1, start + 4):
                yield ServerSentEvent(str(n), id=str(n))

        return EventSourceResponse(numbers())

    response = await StreamingTestClient(make_app(endpoint)).get("/events", headers={"last-event-id": "41"})
    assert [e.data for e in parse_stream(response.body)] == ["42", "43", "44"]


@pytest.mark.anyio
async def test_a_fastapi_generator_endpoint_uses_it_as_response_class() -> None:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/events", response_class=EventSourceResponse)
    async def feed() -> AsyncIterator[dict[str, int]]:
        for n in range(3):
            yield {"n": n}

    client = StreamingTestClient(app)
    response = await client.get("/events")
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert [e.data for e in parse_stream(response.body)] == ['{"n":0}', '{"n":1}', '{"n":2}']
    schema = (await client.get("/openapi.json")).json()
    assert "text/event-stream" in schema["paths"]["/events"]["get"]["responses"]["200"]["content"]


# -- dicts: JSON data by default, an event's fields with dicts="fields" ---------------------------


def test_a_dict_is_json_data_by_default_even_with_a_data_key() -> None:
    assert encode_item({"data": "hi", "id": "1"}) == b'data: {"data":"hi","id":"1"}\n\n'


def test_with_fields_a_dict_names_the_fields_of_the_event() -> None:
    assert encode_fields_item({"data": "hi", "id": "1"}) == b"data: hi\nid: 1\n\n"
    assert encode_fields_item({"data": {"n": 1}, "event": "e", "retry": 5}) == (
        b'event: e\ndata: {"n":1}\nretry: 5\n\n'
    )
    assert encode_fields_item({"comment": "only"}) == b": only\n\n"
    assert encode_fields_item("text") == b"data: text\n\n"  # other items as without fields
    assert event_from_fields({"data": "x", "id": "2"}) == ServerSentEvent("x", id="2")


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"data": "x", "sep": "\n"}, TypeError, "only the keys data, event, id, retry, comment; .*'sep'"),
        ({"payload": 1}, TypeError, "also has 'payload'"),
        ({"data": "x", "id": "a\nb"}, ValueError, "id must not contain"),
        ({"data": object()}, TypeError, "not JSON serializable"),
        ({"retry": "5"}, TypeError, "retry must be an int"),
    ],
)
def test_a_dict_of_fields_is_checked_like_the_event(
    fields: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        encode_fields_item(fields)


@pytest.mark.anyio
async def test_dicts_fields_reads_dict_items_as_events_in_every_producer_style() -> None:
    items = [{"data": "a", "id": "1"}, {"data": "b", "event": "x"}, ServerSentEvent("c")]

    async def agen() -> AsyncIterator[Any]:
        for item in items:
            yield item

    async def writer(send_event: Any) -> None:
        for item in items:
            await send_event(item)

    contents = {
        "async": agen,
        "sync": lambda: iter(items),
        "list": lambda: list(items),
        "writer": lambda: writer,
    }
    for style, make in contents.items():

        async def endpoint(request: Request, make: Any = make) -> Response:
            return EventSourceResponse(make(), dicts="fields")

        response = await StreamingTestClient(make_app(endpoint)).get("/events")
        assert parse_stream(response.body) == [
            ParsedEvent("message", "a", "1"),
            ParsedEvent("x", "b", "1"),
            ParsedEvent("message", "c", "1"),
        ], style


@pytest.mark.anyio
async def test_a_dict_with_an_unknown_key_fails_the_stream_with_fields() -> None:
    async def endpoint(request: Request) -> Response:
        return EventSourceResponse([{"data": "x", "sep": "\r\n"}], dicts="fields")

    with pytest.raises(TypeError, match="'sep'"):
        await StreamingTestClient(make_app(endpoint)).get("/events")


@pytest.mark.anyio
async def test_a_subclass_sets_dicts_for_a_fastapi_generator_endpoint() -> None:
    from fastapi import FastAPI

    class FieldEvents(EventSourceResponse):
        dicts = "fields"

    app = FastAPI()

    @app.get("/events", response_class=FieldEvents)
    async def feed() -> AsyncIterator[dict[str, str]]:
        for n in range(3):
            yield {"data": f"n{n}", "id": str(n)}

    response = await StreamingTestClient(app).get("/events")
    assert parse_stream(response.body)[-1] == ParsedEvent("message", "n2", "2")
    explicit: EventSourceResponse = FieldEvents([{"data": "x"}], dicts="data")
    assert explicit.dicts == "data"


def test_dicts_takes_data_or_fields_only() -> None:
    with pytest.raises(ValueError, match="dicts must be 'data' or 'fields', not 'json'"):
        EventSourceResponse([], dicts="json")  # type: ignore[arg-type]


# -- less travelled paths -----------------------------------------------------------------------


class Name(str, enum.Enum):
    ADA = "ada"


def test_str_subclasses_are_sent_as_their_text_and_surrogates_are_refused() -> None:
    assert ServerSentEvent(Name.ADA).encode() == b"data: ada\n\n"
    assert ServerSentEvent(data_text := "x").data_text == data_text
    with pytest.raises(ValueError, match="UTF-8"):
        ServerSentEvent("\ud800")
    with pytest.raises(ValueError, match="UTF-8"):
        encode_item("\ud800")


def test_events_compare_hash_print_and_pickle_by_their_fields() -> None:
    event = ServerSentEvent("x", event="e", id="1", retry=5, comment="c")
    assert (event.data, event.event, event.id, event.retry, event.comment) == ("x", "e", "1", 5, "c")
    assert repr(event) == "ServerSentEvent(data='x', event='e', id='1', retry=5, comment='c')"
    assert hash(event) == hash(ServerSentEvent("x", event="e", id="1", retry=5, comment="c"))
    assert event != "x"
    assert pickle.loads(pickle.dumps(event)) == event
    assert ServerSentEvent().encode() == b"\n"
    assert ServerSentEvent("x", id=Name.ADA).id == "ada"
    with pytest.raises(ValueError, match="id must not contain"):
        ServerSentEvent("x").with_id("a\nb")
    assert ServerSentEvent("x", id="1").with_id(None).encode() == b"data: x\n\n"


def test_encode_item_takes_bytes_as_they_are_and_refuses_other_events_in_encode_event() -> None:
    assert encode_item(b"data: pre\n\n") == b"data: pre\n\n"
    assert encode_item(memoryview(b"data: m\n\n")) == b"data: m\n\n"
    assert encode_item("two\nlines") == b"data: two\ndata: lines\n\n"
    with pytest.raises(TypeError, match="takes a ServerSentEvent"):
        encode_event("x")  # type: ignore[arg-type]


def test_a_fastapi_event_without_data_and_through_as_event() -> None:
    from fastapi.sse import ServerSentEvent as FastAPIEvent

    assert encode_item(FastAPIEvent(comment="only")) == b": only\n\n"
    assert as_event(FastAPIEvent(data={"a": 1})) == ServerSentEvent('{"a":1}')


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"ping": 0}, ValueError, "ping must be a positive"),
        ({"ping_comment": 1}, TypeError, "ping_comment must be a str"),
        ({"send_timeout": "1"}, TypeError, "send_timeout must be a number"),
        ({"error_event": "boom"}, TypeError, "error_event must be"),
        ({"shutdown_event": "bye"}, TypeError, "shutdown_event must be"),
        ({"on_shutdown": "later"}, ValueError, "on_shutdown must be one of"),
        ({"headers": {"Transfer-Encoding": "chunked"}}, ValueError, "Transfer-Encoding"),
    ],
)
def test_bad_response_arguments_are_refused_at_construction(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        EventSourceResponse(iter(()), **kwargs)


def test_user_headers_win_over_the_defaults_and_a_late_connection_header_is_dropped() -> None:
    response = EventSourceResponse(
        iter(()), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "yes"}
    )
    response.headers["connection"] = "close"  # as FastAPI copies its Response parameter's headers
    sent = dict(response.pump_settings().raw_headers)
    assert sent[b"cache-control"] == b"no-store"
    assert sent[b"x-accel-buffering"] == b"yes"
    assert b"connection" not in sent


@pytest.mark.anyio
async def test_a_writer_callable_sends_events_one_call_at_a_time() -> None:
    async def endpoint(request: Request) -> Response:
        async def produce(send_event: Any) -> None:
            await send_event(ServerSentEvent("a", id="1"))
            await send_event({"b": 2})

        return EventSourceResponse(produce)

    response = await StreamingTestClient(make_app(endpoint)).get("/events")
    assert parse_stream(response.body) == [
        ParsedEvent("message", "a", "1"),
        ParsedEvent("message", '{"b":2}', "1"),
    ]


@pytest.mark.anyio
async def test_an_item_that_cannot_be_encoded_ends_the_stream_as_an_error() -> None:
    async def endpoint(request: Request) -> Response:
        async def bad() -> AsyncIterator[object]:
            yield "fine"
            yield math.nan

        return EventSourceResponse(bad(), error_event=None)

    client = StreamingTestClient(make_app(endpoint), raise_app_exceptions=False)
    with pytest.raises(StreamAborted):
        await client.get("/events")


@pytest.mark.anyio
async def test_an_error_event_callable_may_send_nothing() -> None:
    async def endpoint(request: Request) -> Response:
        async def failing() -> AsyncIterator[str]:
            yield "one"
            raise RuntimeError("x")

        return EventSourceResponse(failing(), error_event=lambda exc: None)

    client = StreamingTestClient(make_app(endpoint), http_version="2")
    response = await client.get("/events", headers={"te": "trailers"})
    assert parse_stream(response.body) == [ParsedEvent("message", "one", "")]


@pytest.mark.anyio
async def test_a_client_that_stops_reading_is_dropped_after_send_timeout() -> None:
    closed = anyio.Event()
    outcomes: list[Outcome] = []

    async def endpoint(request: Request) -> Response:
        async def flood() -> AsyncIterator[str]:
            try:
                while True:
                    yield "x" * 1000
            finally:
                closed.set()

        return EventSourceResponse(
            flood(), send_timeout=0.1, on_outcome=lambda outcome: outcomes.append(outcome.kind)
        )

    client = StreamingTestClient(make_app(endpoint), raise_app_exceptions=False)
    async with client.stream("GET", "/events"):
        with anyio.fail_after(3):
            await closed.wait()  # the test never reads: the app's send() blocks, then gives up
    assert outcomes == [Outcome.TIMEOUT]


@pytest.mark.anyio
async def test_a_sync_generator_is_closed_when_the_client_leaves() -> None:
    closed = threading.Event()

    def endless() -> Iterator[str]:
        try:
            while True:
                yield "tick"
                time.sleep(0.01)
        finally:
            closed.set()

    async def endpoint(request: Request) -> Response:
        return EventSourceResponse(endless())

    client = StreamingTestClient(make_app(endpoint))
    async with client.stream("GET", "/events") as response:
        await events_after(response.iter_bytes(), 2)
    with anyio.fail_after(3):
        while not closed.is_set():
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_head_closes_an_iterator_that_was_never_started() -> None:
    class Source:
        closed = False

        def __aiter__(self) -> Source:
            return self

        async def __anext__(self) -> str:
            raise StopAsyncIteration  # pragma: no cover - HEAD never iterates

        async def aclose(self) -> None:
            Source.closed = True

    async def endpoint(request: Request) -> Response:
        return EventSourceResponse(Source())

    await StreamingTestClient(make_app(endpoint)).request("HEAD", "/events")
    assert Source.closed
    never_started = _EncodingIterator(iter(["x"]), encode_item)
    never_started.close()  # a list iterator has no close(): nothing to do, no error


# -- errors before the first event -------------------------------------------------------------


def _missing_model_events(style: str) -> Any:
    """An event source that refuses an unknown model before its first event, in ``style``."""

    async def async_events() -> AsyncIterator[str]:
        raise HTTPException(404, "unknown model")
        yield ""  # pragma: no cover

    async def after_a_bare_yield() -> AsyncIterator[str]:
        await anyio.lowlevel.checkpoint()  # a checkpoint is not a wait
        raise HTTPException(404, "unknown model")
        yield ""  # pragma: no cover

    def sync_events() -> Iterator[str]:
        raise HTTPException(404, "unknown model")
        yield ""  # pragma: no cover

    async def writer(send_event: Any) -> None:
        raise HTTPException(404, "unknown model")

    makers: dict[str, Callable[[], Any]] = {
        "async": async_events,
        "bare-yield": after_a_bare_yield,
        "sync": sync_events,
        "writer": lambda: writer,
    }
    return makers[style]()


@pytest.mark.anyio
@pytest.mark.parametrize("style", ["async", "bare-yield", "sync", "writer"])
async def test_an_http_exception_before_the_first_event_answers_its_real_status(style: str) -> None:
    async def endpoint(request: Request) -> Response:
        return EventSourceResponse(_missing_model_events(style))

    client = StreamingTestClient(make_app(endpoint))
    async with client.stream("GET", "/events") as response:
        body = await response.read()
    assert response.status_code == 404
    assert b"unknown model" in body
    assert b"event: error" not in body


@pytest.mark.anyio
async def test_an_error_right_after_the_first_event_still_opens_the_stream_with_it() -> None:
    async def events() -> AsyncIterator[str]:
        yield "first"
        raise RuntimeError("then it broke")

    recorder = Recorder()
    with pytest.raises(RuntimeError):
        await EventSourceResponse(events())(http_scope(), recorder.receive, recorder.send)
    assert recorder.start["status"] == 200
    assert b"data: first\n\n" in recorder.body
    assert recorder.body.endswith(b"event: error\ndata: stream failed\n\n")
    assert not recorder.ended


@pytest.mark.anyio
@pytest.mark.parametrize("in_thread", [False, True])
async def test_a_stream_whose_first_event_waits_still_opens_before_it(in_thread: bool) -> None:
    release = threading.Event()
    opened = anyio.Event()

    async def async_events() -> AsyncIterator[str]:
        await anyio.to_thread.run_sync(release.wait)
        yield "late"

    def sync_events() -> Iterator[str]:
        release.wait()
        yield "late"

    class Watching(Recorder):
        async def send(self, message: Any) -> None:
            await super().send(message)
            if message["type"] == "http.response.body":
                opened.set()

    recorder = Watching()
    response = EventSourceResponse(sync_events() if in_thread else async_events())
    async with anyio.create_task_group() as group:
        group.start_soon(response, http_scope(), recorder.receive, recorder.send)
        with anyio.fail_after(10):
            await opened.wait()
        assert recorder.bodies == [b":\n\n"]  # opened before the event exists
        release.set()
    assert b"data: late\n\n" in recorder.body


def test_an_id_that_http_would_trim_is_refused_also_when_set_later() -> None:
    with pytest.raises(ValueError, match="could never be resumed"):
        ServerSentEvent("hi").with_id("7 ")
    assert ServerSentEvent("hi", id="a b").id == "a b"  # inner spaces survive the header
    assert ServerSentEvent("hi", id="").id == ""  # an empty id resets the client's last id
