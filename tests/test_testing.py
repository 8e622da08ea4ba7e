"""The streaming test client: scope, request body, response view, disconnects, strictness."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.responses import StreamingResponse as StarletteStreamingResponse
from starlette.routing import Route

from streaming_responses import Framing, StreamError
from streaming_responses._types import ASGIApp, Message, Receive, Scope, Send
from streaming_responses.testing import ASGIProtocolError, StreamAborted, StreamingTestClient, TestResponse

pytestmark = pytest.mark.anyio

START: Message = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}


def body(data: bytes = b"", *, more: bool = False) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": more}


def scripted(*messages: Message, then: Exception | None = None) -> ASGIApp:
    """An app that sends ``messages`` in order, then raises ``then`` if given."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for message in messages:
            await send(message)
        if then is not None:
            raise then

    return app


async def echo_request(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the scope's method and headers and the request messages it received."""
    received: list[Message] = []
    while True:
        message = await receive()
        received.append(message)
        if not message.get("more_body", False):
            break
    text = repr(
        {
            "method": scope["method"],
            "headers": scope["headers"],
            "messages": [(m["body"], m["more_body"]) for m in received],
        }
    )
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send(body(text.encode()))


def echoed(response: TestResponse) -> dict[str, Any]:
    result: dict[str, Any] = eval(response.text)  # the app answers with a repr() of plain data
    return result


async def until_complete(response: TestResponse) -> None:
    """Wait, without reading the body, until the app has sent its final message."""
    with anyio.fail_after(1):
        while not response.complete:
            await anyio.sleep(0.001)


# -- reading a response --------------------------------------------------------------------------


async def test_request_reads_the_whole_response_with_status_headers_and_messages() -> None:
    app = scripted(START, body(b"Hello, ", more=True), body(b"world"))
    response = await StreamingTestClient(app).request("GET", "/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain"
    assert response.raw_headers == [(b"content-type", b"text/plain")]
    assert response.body == b"Hello, world"
    assert response.text == "Hello, world"
    assert response.framing is Framing.CHUNKED
    assert response.complete
    assert response.app_exception is None
    assert response.trailers is None
    assert not response.declared_trailers
    assert response.messages == [START, body(b"Hello, ", more=True), body(b"world")]
    assert repr(response) == "<TestResponse [200] chunked>"


async def test_iter_bytes_yields_one_item_per_non_empty_body_message_as_sent() -> None:
    app = scripted(START, body(b"a", more=True), body(more=True), body(b"bc", more=True), body())
    async with StreamingTestClient(app).stream("GET", "/") as response:
        assert [chunk async for chunk in response.iter_bytes()] == [b"a", b"bc"]
        assert [chunk async for chunk in response.iter_bytes()] == []
        assert await response.read() == b"abc"


async def test_read_after_partial_iteration_returns_the_whole_body() -> None:
    app = scripted(START, body(b"one ", more=True), body(b"two ", more=True), body(b"three"))
    async with StreamingTestClient(app).stream("GET", "/") as response:
        assert await anext(response.iter_bytes()) == b"one "
        assert await response.read() == b"one two three"
        assert response.body == b"one two three"


async def test_stream_is_entered_as_soon_as_the_response_starts() -> None:
    go_on = anyio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        await go_on.wait()
        await send(body(b"late"))

    async with StreamingTestClient(app).stream("GET", "/") as response:
        assert response.status_code == 200
        assert not response.complete
        assert response.messages == [START]
        go_on.set()
        assert await response.read() == b"late"
        assert response.complete


async def test_the_body_is_only_available_after_read() -> None:
    async with StreamingTestClient(scripted(START, body(b"x"))).stream("GET", "/") as response:
        with pytest.raises(RuntimeError, match="read"):
            _ = response.body
        await response.read()
    assert response.body == b"x"


async def test_text_uses_the_charset_of_the_content_type_and_json_parses_the_body() -> None:
    latin = scripted(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain; charset=latin-1")],
        },
        body("café".encode("latin-1")),
    )
    assert (await StreamingTestClient(latin).get("/")).text == "café"
    as_json = scripted(START, body(b'{"a": [1, 2]}'))
    assert (await StreamingTestClient(as_json).get("/")).json() == {"a": [1, 2]}


async def test_the_app_may_send_body_chunks_as_bytearray_or_memoryview() -> None:
    app = scripted(
        START,
        {"type": "http.response.body", "body": bytearray(b"ab"), "more_body": True},
        {"type": "http.response.body", "body": memoryview(b"cd")},
    )
    assert (await StreamingTestClient(app).get("/")).body == b"abcd"


async def test_the_app_can_run_ahead_of_the_test_only_by_the_buffer_size() -> None:
    class SmallBuffer(StreamingTestClient):
        max_buffered_chunks = 2

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        for n in range(10):
            await send(body(b"%d" % n, more=True))
        await send(body())

    async with SmallBuffer(app).stream("GET", "/") as response:
        await anyio.sleep(0.05)
        assert len(response.messages) == 1 + 3  # the third chunk waits in send()
        assert await response.read() == b"0123456789"


# -- framing ------------------------------------------------------------------------------------


async def test_a_content_length_header_makes_the_framing_content_length() -> None:
    app = scripted(
        {"type": "http.response.start", "status": 200, "headers": [(b"Content-Length", b"5")]},
        body(b"he", more=True),
        body(b"llo"),
    )
    response = await StreamingTestClient(app).get("/")
    assert response.framing is Framing.CONTENT_LENGTH
    assert response.headers["content-length"] == "5"
    assert response.body == b"hello"


async def test_repeated_equal_content_length_headers_are_accepted() -> None:
    headers = [(b"content-length", b"2"), (b"content-length", b"2")]
    app = scripted({"type": "http.response.start", "status": 200, "headers": headers}, body(b"ok"))
    assert (await StreamingTestClient(app).get("/")).framing is Framing.CONTENT_LENGTH


async def test_head_responses_have_no_body_framing_and_the_client_drops_their_body() -> None:
    app = scripted(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]},
        body(b"hello"),
    )
    response = await StreamingTestClient(app).head("/")
    assert response.framing is Framing.NO_BODY
    assert response.headers["content-length"] == "5"
    assert response.body == b""
    assert response.messages[1]["body"] == b"hello"


@pytest.mark.parametrize("status", [101, 204, 304])
async def test_1xx_204_and_304_responses_have_no_body_framing(status: int) -> None:
    app = scripted({"type": "http.response.start", "status": status, "headers": []}, body())
    response = await StreamingTestClient(app).get("/")
    assert response.framing is Framing.NO_BODY
    assert response.body == b""


async def test_starlette_head_requests_are_answered_without_a_body() -> None:
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route("/", endpoint, methods=["GET", "HEAD"])])
    response = await StreamingTestClient(app).head("/")
    assert response.status_code == 200
    assert response.framing is Framing.NO_BODY
    assert response.body == b""


# -- disconnecting ------------------------------------------------------------------------------


async def test_an_endless_stream_is_read_for_three_chunks_then_disconnected_and_finally_runs() -> None:
    events: list[str] = []

    async def endless(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(START)
            async with anyio.create_task_group() as group:

                async def stop_on_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass  # pragma: no cover - the request body is a single message
                    group.cancel_scope.cancel()

                group.start_soon(stop_on_disconnect)
                n = 0
                while True:
                    await send(body(b"tick %d\n" % n, more=True))
                    n += 1
                    await anyio.sleep(0.001)  # a clock, a queue, a database: endless streams wait
        finally:
            events.append("finally")

    async with StreamingTestClient(endless, timeout=2).stream("GET", "/") as response:
        chunks = response.iter_bytes()
        first = [await anext(chunks) for _ in range(3)]
        await response.disconnect()
        assert events == ["finally"]
        assert response.disconnected
        assert not response.complete
        with pytest.raises(StreamAborted, match="the test disconnected before the final"):
            await response.read()
    assert first == [b"tick 0\n", b"tick 1\n", b"tick 2\n"]
    assert response.app_exception is None


async def test_an_endless_starlette_stream_stops_its_generator_when_disconnected() -> None:
    closed = anyio.Event()

    async def forever() -> AsyncIterator[bytes]:
        n = 0
        try:
            while True:
                yield b"tick %d\n" % n
                n += 1
                await anyio.sleep(0.001)
        finally:
            closed.set()

    async def endpoint(request: Request) -> StarletteStreamingResponse:
        return StarletteStreamingResponse(forever(), media_type="text/plain")

    client = StreamingTestClient(Starlette(routes=[Route("/ticks", endpoint)]), timeout=2)
    async with client.stream("GET", "/ticks") as response:
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        chunks = response.iter_bytes()
        assert [await anext(chunks) for _ in range(3)] == [b"tick 0\n", b"tick 1\n", b"tick 2\n"]
        await response.disconnect()
    with anyio.fail_after(1):
        await closed.wait()


async def test_starlettes_is_disconnected_sees_the_disconnect() -> None:
    polls: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        await send(START)
        while not await request.is_disconnected():
            polls.append(False)
            await send(body(b"tick", more=True))
            await anyio.sleep(0.001)
        polls.append(True)

    async with StreamingTestClient(app, timeout=1).stream("GET", "/") as response:
        chunks = response.iter_bytes()
        assert [await anext(chunks) for _ in range(2)] == [b"tick", b"tick"]
        await response.disconnect()
    assert polls[-1] is True
    assert polls.count(True) == 1


async def test_sends_after_a_disconnect_are_dropped() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        while (await receive())["type"] != "http.disconnect":
            pass
        await send(body(b"nobody is listening"))

    async with StreamingTestClient(app).stream("GET", "/") as response:
        await response.disconnect()
    assert response.messages == [START]
    assert response.app_exception is None


async def test_disconnect_raises_timeout_error_when_the_app_ignores_it_and_the_exit_cancels_it() -> None:
    cancelled: list[bool] = []

    async def deaf(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    began = time.perf_counter()
    async with StreamingTestClient(deaf, timeout=0.2).stream("GET", "/") as response:
        with pytest.raises(TimeoutError, match=r"waited 0.2s for the app to return after http.disconnect"):
            await response.disconnect()
    assert time.perf_counter() - began < 1
    assert cancelled == [True]


async def test_leaving_the_block_early_disconnects_and_lets_the_app_return() -> None:
    events: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        await send(body(b"first", more=True))
        await receive()
        events.append((await receive())["type"])

    async with StreamingTestClient(app).stream("GET", "/") as response:
        assert response.status_code == 200
    assert events == ["http.disconnect"]
    assert response.disconnected


async def test_leaving_the_block_cancels_an_app_that_ignores_the_disconnect() -> None:
    cancelled = anyio.Event()

    async def deaf(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    began = time.perf_counter()
    async with StreamingTestClient(deaf, timeout=0.2).stream("GET", "/"):
        pass
    assert cancelled.is_set()
    assert time.perf_counter() - began < 1


async def test_an_app_that_sends_endlessly_after_the_disconnect_is_cancelled() -> None:
    async def spinning(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        while True:
            await send(body(b"x", more=True))

    async with StreamingTestClient(spinning, timeout=0.2).stream("GET", "/") as response:
        assert await anext(response.iter_bytes()) == b"x"
    assert not response.complete


# -- the request body and receive() ---------------------------------------------------------------


async def test_bytes_content_is_one_message_with_a_content_length() -> None:
    response = await StreamingTestClient(echo_request).post("/", content=b"hello")
    assert echoed(response)["messages"] == [(b"hello", False)]
    assert (b"content-length", b"5") in echoed(response)["headers"]


async def test_str_content_is_encoded_as_utf8() -> None:
    response = await StreamingTestClient(echo_request).put("/", content="é")
    assert echoed(response)["messages"] == [("é".encode(), False)]
    assert (b"content-length", b"2") in echoed(response)["headers"]


async def test_no_content_is_one_empty_message_without_a_content_length() -> None:
    response = await StreamingTestClient(echo_request).get("/")
    assert echoed(response)["messages"] == [(b"", False)]
    assert [name for name, _ in echoed(response)["headers"]] == [b"host"]


async def test_a_sync_iterable_is_one_message_per_chunk_then_an_empty_final_one() -> None:
    def chunks() -> Iterator[bytes]:
        yield b"a"
        yield b"b"

    response = await StreamingTestClient(echo_request).post("/", content=chunks())
    assert echoed(response)["messages"] == [(b"a", True), (b"b", True), (b"", False)]
    assert (b"transfer-encoding", b"chunked") in echoed(response)["headers"]


async def test_an_async_iterable_is_one_message_per_chunk_and_is_closed_afterwards() -> None:
    closed: list[bool] = []

    async def chunks() -> AsyncIterator[bytes]:
        try:
            yield b"a"
            yield bytearray(b"b")  # type: ignore[misc]
        finally:
            closed.append(True)

    client = StreamingTestClient(echo_request, http_version="2")
    response = await client.post("/", content=chunks())
    assert echoed(response)["messages"] == [(b"a", True), (b"b", True), (b"", False)]
    assert not any(name == b"transfer-encoding" for name, _ in echoed(response)["headers"])
    assert closed == [True]


async def test_an_unfinished_async_request_body_is_closed_when_the_block_ends() -> None:
    closed: list[bool] = []

    async def chunks() -> AsyncIterator[bytes]:
        try:
            yield b"a"
            yield b"b"
        finally:
            closed.append(True)

    async def reads_one(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(START)
        await send(body())

    await StreamingTestClient(reads_one).post("/", content=chunks())
    assert closed == [True]


async def test_json_is_sent_compact_with_a_content_type() -> None:
    response = await StreamingTestClient(echo_request).patch("/", json={"a": [1, 2]})
    headers = echoed(response)["headers"]
    assert echoed(response)["messages"] == [(b'{"a":[1,2]}', False)]
    assert (b"content-type", b"application/json") in headers
    assert (b"content-length", b"11") in headers


async def test_headers_given_by_the_test_win_over_the_ones_the_client_adds() -> None:
    response = await StreamingTestClient(echo_request).post(
        "/", json=[], headers={"Content-Type": "application/x-custom", "Host": "example.org"}
    )
    headers = echoed(response)["headers"]
    assert headers == [
        (b"content-type", b"application/x-custom"),
        (b"host", b"example.org"),
        (b"content-length", b"2"),
    ]


async def test_content_and_json_together_are_refused() -> None:
    with pytest.raises(TypeError, match="either content= or json="):
        await StreamingTestClient(echo_request).post("/", content=b"x", json={})


async def test_a_mapping_as_content_is_refused_with_a_hint() -> None:
    mapping: Any = {"a": 1}
    with pytest.raises(TypeError, match="use json="):
        await StreamingTestClient(echo_request).post("/", content=mapping)


async def test_a_request_chunk_that_is_not_bytes_fails_in_the_apps_receive() -> None:
    with pytest.raises(TypeError, match="request content chunks must be bytes or str, not int"):
        await StreamingTestClient(echo_request).post("/", content=[1])  # type: ignore[list-item]


async def test_receive_waits_after_the_body_until_the_response_is_complete() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(START)
        with anyio.move_on_after(0.05):
            await receive()
            seen.append("returned early")  # pragma: no cover - must not happen
        seen.append("still waiting")
        await send(body(b"done"))
        seen.append((await receive())["type"])
        seen.append((await receive())["type"])

    await StreamingTestClient(app).get("/")
    assert seen == ["still waiting", "http.disconnect", "http.disconnect"]


async def test_a_receive_pending_on_the_request_body_returns_disconnect() -> None:
    async def stalls() -> AsyncIterator[bytes]:
        yield b"first"
        await anyio.sleep_forever()
        yield b"never"  # pragma: no cover

    seen: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await receive())
        await send(START)
        seen.append(await receive())

    async with StreamingTestClient(app, timeout=1).stream("POST", "/", content=stalls()) as response:
        await anyio.sleep(0.05)  # the app is now waiting in receive() for the next request chunk
        await response.disconnect()
    assert seen == [
        {"type": "http.request", "body": b"first", "more_body": True},
        {"type": "http.disconnect"},
    ]


async def test_a_duplex_exchange_echoes_each_request_chunk_before_the_next_is_sent() -> None:
    async def shout(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        while True:
            message = await receive()
            await send(body(message["body"].upper(), more=message["more_body"]))
            if not message["more_body"]:
                return

    requests, request_body = anyio.create_memory_object_stream[bytes](1)
    async with StreamingTestClient(shout).stream("POST", "/", content=request_body) as response:
        chunks = response.iter_bytes()
        await requests.send(b"ping")
        assert await anext(chunks) == b"PING"
        await requests.send(b"pong")
        assert await anext(chunks) == b"PONG"
        await requests.aclose()
        assert [chunk async for chunk in chunks] == []
        assert response.complete


# -- the scope ----------------------------------------------------------------------------------


async def capture_scope(client: StreamingTestClient, method: str, url: str, **kwargs: Any) -> Scope:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)
        await send(START)
        await send(body())

    client.app = app
    response = await client.request(method, url, **kwargs)
    assert response.scope is scopes[0]
    return scopes[0]


async def test_the_scope_describes_the_request_like_a_server_would() -> None:
    scope = await capture_scope(
        StreamingTestClient(echo_request),
        "get",
        "/a%20b/c?x=1&y=2",
        headers=[("X-Token", b"t"), (b"x-token", "u")],
    )
    assert scope == {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/a b/c",
        "raw_path": b"/a%20b/c",
        "query_string": b"x=1&y=2",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"x-token", b"t"), (b"x-token", b"u")],
        "client": ("127.0.0.1", 123),
        "server": ("testserver", 80),
        "extensions": {},
        "state": {},
    }


async def test_non_ascii_paths_and_queries_are_percent_encoded_in_the_raw_forms() -> None:
    scope = await capture_scope(StreamingTestClient(echo_request), "GET", "/café?q=é ö")
    assert scope["path"] == "/café"
    assert scope["raw_path"] == b"/caf%C3%A9"
    assert scope["query_string"] == b"q=%C3%A9%20%C3%B6"


async def test_a_base_url_sets_scheme_server_host_and_a_path_prefix() -> None:
    client = StreamingTestClient(
        echo_request, base_url="https://example.org:8443/api/", client=("10.0.0.1", 5)
    )
    scope = await capture_scope(client, "GET", "items")
    assert scope["scheme"] == "https"
    assert scope["path"] == "/api/items"
    assert scope["server"] == ("example.org", 8443)
    assert scope["client"] == ("10.0.0.1", 5)
    assert scope["headers"] == [(b"host", b"example.org:8443")]


async def test_an_absolute_url_overrides_the_base_url() -> None:
    scope = await capture_scope(StreamingTestClient(echo_request), "GET", "https://other.example")
    assert (scope["scheme"], scope["path"], scope["server"]) == ("https", "/", ("other.example", 443))


async def test_an_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="absolute http"):
        await StreamingTestClient(echo_request).get("ftp://example.org/file")


@pytest.mark.parametrize(
    ("http_version", "trailers", "offered"),
    [("1.1", None, False), ("2", None, True), ("3", None, True), ("2", False, False), ("1.0", True, True)],
)
async def test_the_trailers_extension_is_offered_for_http2_and_3_by_default(
    http_version: str, trailers: bool | None, offered: bool
) -> None:
    client = StreamingTestClient(echo_request, http_version=http_version, trailers=trailers)
    scope = await capture_scope(client, "GET", "/")
    assert scope["http_version"] == http_version
    assert ("http.response.trailers" in scope["extensions"]) is offered


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"http_version": "1.2"}, "http_version must be one of"),
        ({"base_url": "testserver"}, "base_url must be an absolute"),
        ({"base_url": "ws://testserver"}, "base_url must be an absolute"),
        ({"timeout": -1}, "timeout must be a positive number"),
    ],
)
def test_the_client_refuses_bad_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StreamingTestClient(echo_request, **kwargs)


async def test_the_method_helpers_send_their_method() -> None:
    client = StreamingTestClient(echo_request)
    for helper, method in [
        (client.get, "GET"),
        (client.options, "OPTIONS"),
        (client.delete, "DELETE"),
        (client.post, "POST"),
        (client.put, "PUT"),
        (client.patch, "PATCH"),
    ]:
        assert echoed(await helper("/"))["method"] == method
    assert (await client.head("/")).status_code == 200


# -- app exceptions -----------------------------------------------------------------------------


async def test_an_exception_before_the_start_propagates_from_stream_entry() -> None:
    entered = False
    with pytest.raises(ValueError, match="boom"):
        async with StreamingTestClient(scripted(then=ValueError("boom"))).stream("GET", "/"):
            entered = True  # pragma: no cover
    assert not entered


async def test_an_exception_before_the_start_is_a_500_when_app_exceptions_are_not_raised() -> None:
    client = StreamingTestClient(scripted(then=ValueError("boom")), raise_app_exceptions=False)
    response = await client.get("/")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert response.framing is Framing.CONTENT_LENGTH
    assert isinstance(response.app_exception, ValueError)
    assert response.messages == []
    head = await client.head("/")
    assert (head.status_code, head.body, head.framing) == (500, b"", Framing.NO_BODY)


async def test_an_exception_after_the_start_aborts_the_stream_with_the_exception_as_cause() -> None:
    app = scripted(START, body(b"partial", more=True), then=ValueError("mid-stream"))
    async with StreamingTestClient(app).stream("GET", "/") as response:
        chunks = response.iter_bytes()
        assert await anext(chunks) == b"partial"
        with pytest.raises(StreamAborted, match="the app raised ValueError before sending the final") as info:
            await anext(chunks)
    assert isinstance(info.value.__cause__, ValueError)
    assert isinstance(info.value, StreamError)
    assert response.app_exception is info.value.__cause__
    assert not response.complete


async def test_an_aborted_stream_is_reported_even_when_app_exceptions_are_not_raised() -> None:
    app = scripted(START, then=ValueError("mid-stream"))
    client = StreamingTestClient(app, raise_app_exceptions=False)
    with pytest.raises(StreamAborted) as info:
        await client.get("/")
    assert isinstance(info.value.__cause__, ValueError)


async def test_returning_without_finishing_the_body_aborts_the_stream() -> None:
    app = scripted(START, body(b"partial", more=True))
    with pytest.raises(StreamAborted, match="the app returned before sending the final") as info:
        await StreamingTestClient(app).get("/")
    assert info.value.__cause__ is None


async def test_an_unread_aborted_stream_raises_the_app_exception_when_the_block_ends() -> None:
    app = scripted(START, then=ValueError("unnoticed"))
    with pytest.raises(ValueError, match="unnoticed"):
        async with StreamingTestClient(app).stream("GET", "/") as response:
            assert response.status_code == 200


async def test_an_exception_after_a_complete_response_is_raised_by_read() -> None:
    async def endpoint(request: Request) -> PlainTextResponse:
        raise RuntimeError("handler bug")

    app = Starlette(routes=[Route("/", endpoint)])
    async with StreamingTestClient(app).stream("GET", "/") as response:
        assert response.status_code == 500
        with pytest.raises(RuntimeError, match="handler bug"):
            await response.read()
        assert response.complete
    quiet = await StreamingTestClient(app, raise_app_exceptions=False).get("/")
    assert quiet.status_code == 500
    assert quiet.text == "Internal Server Error"
    assert isinstance(quiet.app_exception, RuntimeError)


async def test_an_exception_after_a_complete_response_is_raised_when_the_block_ends() -> None:
    app = scripted(START, body(b"fine"), then=ValueError("after the end"))
    with pytest.raises(ValueError, match="after the end"):
        async with StreamingTestClient(app).stream("GET", "/") as response:
            assert response.status_code == 200


async def test_an_error_inside_the_block_propagates_unwrapped_and_wins_over_the_app_exception() -> None:
    app = scripted(START, then=ValueError("app"))
    with pytest.raises(AssertionError, match="test"):
        async with StreamingTestClient(app).stream("GET", "/"):
            raise AssertionError("test")


async def test_read_waits_for_background_tasks_and_gives_up_after_the_timeout() -> None:
    ran: list[str] = []

    async def note() -> None:
        ran.append("background")

    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok", background=BackgroundTask(note))

    response = await StreamingTestClient(Starlette(routes=[Route("/", endpoint)])).get("/")
    assert (response.text, ran) == ("ok", ["background"])

    async def lingers(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        await send(body(b"ok"))
        await anyio.sleep_forever()

    began = time.perf_counter()
    assert (await StreamingTestClient(lingers, timeout=0.2).get("/")).text == "ok"
    assert time.perf_counter() - began < 1


async def test_a_fastapi_streaming_endpoint_and_http_exceptions() -> None:
    app = FastAPI()

    @app.get("/numbers")
    async def numbers() -> StarletteStreamingResponse:
        async def produce() -> AsyncIterator[str]:
            for n in range(3):
                yield f"{n}\n"

        return StarletteStreamingResponse(produce(), media_type="text/plain")

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(404, "nope")

    client = StreamingTestClient(app)
    async with client.stream("GET", "/numbers") as response:
        assert response.status_code == 200
        assert response.framing is Framing.CHUNKED
        assert [chunk async for chunk in response.iter_bytes()] == [b"0\n", b"1\n", b"2\n"]
    missing_response = await client.get("/missing")
    assert missing_response.status_code == 404
    assert missing_response.json() == {"detail": "nope"}
    assert missing_response.framing is Framing.CONTENT_LENGTH


# -- timeouts -----------------------------------------------------------------------------------


async def never_starts(scope: Scope, receive: Receive, send: Send) -> None:
    await anyio.sleep_forever()


async def test_a_response_that_never_starts_raises_timeout_error_quickly() -> None:
    began = time.perf_counter()
    with pytest.raises(TimeoutError, match=r"waited 0.2s for http.response.start \(GET /slow\)"):
        async with StreamingTestClient(never_starts, timeout=0.2).stream("GET", "/slow"):
            pass  # pragma: no cover
    assert time.perf_counter() - began < 1


async def test_a_per_request_timeout_overrides_the_clients() -> None:
    with pytest.raises(TimeoutError, match=r"waited 0\.1s"):
        await StreamingTestClient(never_starts, timeout=None).get("/", timeout=0.1)


async def test_waiting_for_the_next_chunk_raises_timeout_error() -> None:
    async def stalls(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        await send(body(b"one", more=True))
        await anyio.sleep_forever()

    async with StreamingTestClient(stalls, timeout=0.2).stream("GET", "/") as response:
        chunks = response.iter_bytes()
        assert await anext(chunks) == b"one"
        with pytest.raises(TimeoutError, match=r"for the next http\.response\.body message"):
            await anext(chunks)


# -- trailers -----------------------------------------------------------------------------------


TRAILER_START: Message = {"type": "http.response.start", "status": 200, "headers": [], "trailers": True}


async def test_declared_trailers_are_collected_and_complete_waits_for_the_last_one() -> None:
    go_on = anyio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(TRAILER_START)
        await send(body(b"data"))
        await go_on.wait()
        await send(
            {"type": "http.response.trailers", "headers": [(b"stream-status", b"ok")], "more_trailers": True}
        )
        await send({"type": "http.response.trailers", "headers": [(b"X-Digest", b"abc")]})

    async with StreamingTestClient(app, http_version="2").stream("GET", "/") as response:
        assert response.declared_trailers
        while len(response.messages) < 2:
            await anyio.sleep(0.001)
        assert not response.complete
        assert response.trailers is None
        go_on.set()
        assert await response.read() == b"data"
        assert response.complete
    assert response.trailers is not None
    assert dict(response.trailers) == {"stream-status": "ok", "x-digest": "abc"}


async def test_a_missing_declared_trailer_aborts_the_stream() -> None:
    client = StreamingTestClient(scripted(TRAILER_START, body(b"data"), then=KeyError("x")), trailers=True)
    with pytest.raises(StreamAborted, match="the app raised KeyError before sending the declared"):
        await client.get("/")
    client.app = scripted(TRAILER_START, body(b"data"))
    with pytest.raises(StreamAborted, match="the app returned before sending the declared"):
        await client.get("/")


# -- protocol violations ------------------------------------------------------------------------


def start_with(**fields: Any) -> Message:
    return {"type": "http.response.start", "status": 200, "headers": [], **fields}


TRAILER: Message = {"type": "http.response.trailers", "headers": []}

VIOLATIONS: list[tuple[list[Any], str]] = [
    ([body()], "http.response.body sent before http.response.start"),
    ([TRAILER], "http.response.trailers sent before http.response.start"),
    ([START, START], "http.response.start sent twice"),
    ([START, body(), body()], "http.response.body sent after the response was complete"),
    ([TRAILER_START, body(), body()], r"http.response.body sent after the final http.response.body"),
    ([TRAILER_START, body(), TRAILER, TRAILER], "http.response.trailers sent after the response was"),
    ([START, body(), TRAILER], "http.response.trailers sent after the response was complete"),
    (
        [START, body(more=True), TRAILER],
        "http.response.trailers sent but http.response.start did not declare",
    ),
    ([TRAILER_START, body(more=True), TRAILER], "http.response.trailers sent before the final"),
    ([{"type": "http.response.push", "path": "/"}], "unexpected ASGI message type 'http.response.push'"),
    ([{"status": 200}], "unexpected ASGI message type None"),
    ([("http.response.start", 200)], "send.. takes a message dict, not tuple"),
    ([start_with(status="200")], "status must be an int from 100 to 599, not '200'"),
    ([start_with(status=True)], "status must be an int"),
    ([start_with(status=600)], "status must be an int"),
    ([start_with(headers={b"a": b"b"})], "headers must be a list of .bytes, bytes. pairs, not dict"),
    ([start_with(headers=None)], "headers must be a list"),
    ([start_with(headers=[(b"a",)])], r"header \(b'a',\) is not a \(name, value\) pair"),
    ([start_with(headers=[b"ab"])], "is not a .name, value. pair"),
    ([start_with(headers=[("a", "b")])], "must be a pair of bytes"),
    ([start_with(headers=[(b"a b", b"c")])], "header name b'a b' is not a valid field name"),
    ([start_with(headers=[(b"a", b"b\r\nc: d")])], "has CR, LF or NUL in its value"),
    ([start_with(trailers=1)], "http.response.start trailers must be a bool, not int"),
    (
        [start_with(headers=[(b"content-length", b"x")])],
        "invalid header: content-length must be a non-negative",
    ),
    (
        [start_with(headers=[(b"content-length", b"1"), (b"content-length", b"2")])],
        r"conflicting content-length headers \[1, 2\]",
    ),
    (
        [start_with(headers=[(b"content-length", b"3")]), body(b"ab", more=True), body(b"cd")],
        "brings the body to 4 bytes, past content-length: 3",
    ),
    (
        [start_with(headers=[(b"content-length", b"3")]), body(b"ab")],
        "the final http.response.body ends the body at 2 bytes, short of content-length: 3",
    ),
    ([START, {"type": "http.response.body", "body": "text"}], "body must be bytes, not str"),
    ([START, {"type": "http.response.body", "more_body": None}], "more_body must be a bool, not NoneType"),
    ([start_with(status=204), body(b"x")], "carries 1 bytes but a 204 response has no body"),
    ([], "the app returned without sending http.response.start"),
]


@pytest.mark.parametrize(("messages", "error"), VIOLATIONS)
async def test_protocol_violations_raise_a_clear_error_naming_the_message(
    messages: list[Message], error: str
) -> None:
    with pytest.raises(ASGIProtocolError, match=error):
        await StreamingTestClient(scripted(*messages), trailers=True).get("/")


async def test_declaring_trailers_that_were_not_offered_is_a_protocol_error() -> None:
    client = StreamingTestClient(scripted(TRAILER_START, body(), TRAILER))
    with pytest.raises(ASGIProtocolError, match=r"trailers=True but the http\.response\.trailers extension"):
        await client.get("/")


async def test_a_protocol_error_is_raised_into_the_app_from_send() -> None:
    seen: list[BaseException] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(body(b"too early"))
        except ASGIProtocolError as exc:
            seen.append(exc)
            raise

    with pytest.raises(ASGIProtocolError) as info:
        await StreamingTestClient(app).get("/")
    assert seen == [info.value]


async def test_a_protocol_error_the_app_swallowed_is_still_raised_to_the_test() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for message in (body(b"too early"), START, body(b"fine"), body(b"extra")):
            with contextlib.suppress(ASGIProtocolError):
                await send(message)

    with pytest.raises(ASGIProtocolError, match=r"sent before http\.response\.start"):
        await StreamingTestClient(app).get("/")


async def test_a_protocol_error_after_a_complete_response_is_raised_when_the_block_ends() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        await send(body(b"fine"))
        with contextlib.suppress(ASGIProtocolError):
            await send(body(b"extra"))

    with pytest.raises(ASGIProtocolError, match="after the response was complete"):
        async with StreamingTestClient(app).stream("GET", "/") as response:
            await until_complete(response)


async def test_the_first_protocol_error_is_the_one_reported() -> None:
    done = anyio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        for status in (201, 202):
            with contextlib.suppress(ASGIProtocolError):
                await send({**START, "status": status})
        done.set()

    async with StreamingTestClient(app).stream("GET", "/") as response:
        await done.wait()
        with pytest.raises(ASGIProtocolError, match="sent twice") as info:
            await response.read()
    assert [message["status"] for message in response.messages] == [200, 201, 202]
    assert response.app_exception is None
    assert str(info.value) == "http.response.start sent twice"
