"""An in-process streaming test client for any ASGI application.

This module owns the client side of one HTTP exchange: it builds the request scope, feeds the
request body to the app's ``receive()``, checks every message the app passes to ``send()`` the
way a strict server would, and hands the response body to the test one chunk at a time, as the
app sent it. Unlike ``httpx.ASGITransport`` it never buffers a whole body, so endless streams,
mid-stream disconnects, framing and trailers can all be tested without a real server.

The rules that keep it simple: what a message *means* is decided in one pure object
(``_ResponseParser``, no awaits), and every wait goes through one method (``_Exchange._wait``).
The test's waits are bounded by a timeout and the app's end when the test disconnects, so a
broken app makes a test fail instead of hang.
"""

from __future__ import annotations

import contextlib
import enum
import json as jsonlib
import re
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, TypeAlias
from urllib.parse import quote, unquote, urlsplit

import anyio
import anyio.lowlevel
from starlette.datastructures import Headers

from streaming_responses._exceptions import ASGIProtocolError, ResponseStateError, StreamAborted
from streaming_responses._framing import Framing, body_allowed
from streaming_responses._options import parse_content_length, parse_timeout
from streaming_responses._types import ASGIApp, Message, RawHeaders, Scope

__all__ = ("ASGIProtocolError", "StreamAborted", "StreamingTestClient", "TestResponse")

#: What ``headers=`` accepts: a mapping, or pairs (to repeat a field), as str or bytes.
HeaderTypes: TypeAlias = "Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]"
#: What ``content=`` accepts: the whole body, or an iterable giving it a chunk at a time.
RequestContent: TypeAlias = "bytes | bytearray | memoryview | str | Iterable[bytes] | AsyncIterable[bytes]"

_HTTP_VERSIONS = ("1.0", "1.1", "2", "3")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_TRAILERS_EXTENSION = "http.response.trailers"
# RFC 9110 §5.1: a field name is a token; §5.5: CR, LF and NUL are never allowed in a value.
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN_IN_VALUE = re.compile(rb"[\x00\r\n]")
_CHARSET = re.compile(r"charset=[\"']?([\w.:-]+)", re.IGNORECASE)
# Characters left as they are when a test passes a path or query with spaces or non-ASCII text.
_SAFE_PATH = "/%!$&'()*+,;=:@-._~"
_SAFE_QUERY = _SAFE_PATH + "?"
_END = object()


class _Phase(enum.Enum):
    """Where the response is; every message is checked against it (ASGI HTTP spec, "Response")."""

    START = "awaiting http.response.start"
    BODY = "streaming the body"
    TRAILERS = "awaiting the declared http.response.trailers"
    COMPLETE = "complete"


def _check_headers(value: object, where: str) -> RawHeaders:
    """The header list of an ASGI message, or ``ASGIProtocolError`` if it is not (bytes, bytes) pairs."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ASGIProtocolError(
            f"{where} headers must be a list of (bytes, bytes) pairs, not {type(value).__name__}"
        )
    checked: RawHeaders = []
    for item in value:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ASGIProtocolError(f"{where} header {item!r:.80} is not a (name, value) pair")
        name, field_value = item
        if not isinstance(name, bytes) or not isinstance(field_value, bytes):
            raise ASGIProtocolError(f"{where} header {item!r:.80} must be a pair of bytes")
        if not _FIELD_NAME.fullmatch(name):
            raise ASGIProtocolError(f"{where} header name {name!r:.80} is not a valid field name")
        if _FORBIDDEN_IN_VALUE.search(field_value):
            raise ASGIProtocolError(f"{where} header {name!r} has CR, LF or NUL in its value")
        checked.append((name, field_value))
    return checked


def _check_flag(message: Mapping[str, Any], key: str, where: str) -> bool:
    value = message.get(key, False)
    if not isinstance(value, bool):
        raise ASGIProtocolError(f"{where} {key} must be a bool, not {type(value).__name__}")
    return value


class _ResponseParser:
    """Reads the messages an app sends, in order, and refuses any a strict server would refuse.

    Pure: ``feed`` takes one message, updates the response it describes and returns the body
    bytes the client would receive. It never awaits, so it is the single place that decides.
    """

    def __init__(self, method: str, trailers_offered: bool) -> None:
        self.method = method
        self.trailers_offered = trailers_offered
        self.phase = _Phase.START
        self.status_code = 0
        self.raw_headers: RawHeaders = []
        self.headers = Headers()
        self.framing = Framing.CHUNKED
        self.declared_trailers = False
        self.content_length: int | None = None
        self.body_size = 0
        self.trailers: RawHeaders | None = None

    def feed(self, message: Mapping[str, Any]) -> bytes:
        kind = message.get("type")
        if self.phase is _Phase.COMPLETE:
            raise ASGIProtocolError(f"{kind} sent after the response was complete")
        if kind == "http.response.start":
            self._start(message)
            return b""
        if kind == "http.response.body":
            return self._body(message)
        if kind == "http.response.trailers":
            self._trailers(message)
            return b""
        raise ASGIProtocolError(
            f"unexpected ASGI message type {kind!r} for an HTTP response; expected "
            f"http.response.start, http.response.body or (when offered) http.response.trailers"
        )

    def _start(self, message: Mapping[str, Any]) -> None:
        where = "http.response.start"
        if self.phase is not _Phase.START:
            raise ASGIProtocolError(f"{where} sent twice")
        status = message.get("status")
        if type(status) is not int or not 100 <= status <= 599:
            raise ASGIProtocolError(f"{where} status must be an int from 100 to 599, not {status!r}")
        headers = _check_headers(message.get("headers", []), where)
        trailers = _check_flag(message, "trailers", where)
        if trailers and not self.trailers_offered:
            # ASGI spec, "HTTP Trailers" extension: an app may only declare trailers when the
            # server put the extension in the scope; elsewhere the response would end unfinished.
            raise ASGIProtocolError(
                f"{where} declared trailers=True but the {_TRAILERS_EXTENSION} extension "
                f"was not offered in the scope"
            )
        lengths: set[int] = set()
        for name, value in headers:
            if name.lower() == b"content-length":
                try:
                    lengths.add(parse_content_length(value, source="content-length"))
                except ValueError as exc:
                    raise ASGIProtocolError(f"{where} has an invalid header: {exc}") from None
        if len(lengths) > 1:
            # RFC 9110 §8.6: differing Content-Length values make the message invalid.
            raise ASGIProtocolError(f"{where} has conflicting content-length headers {sorted(lengths)}")
        self.status_code = status
        self.raw_headers = headers
        self.headers = Headers(raw=[(name.lower(), value) for name, value in headers])
        self.declared_trailers = trailers
        self.content_length = lengths.pop() if lengths else None
        if not body_allowed(self.method, status):
            self.framing = Framing.NO_BODY
        elif self.content_length is not None:
            self.framing = Framing.CONTENT_LENGTH
        self.phase = _Phase.BODY

    def _body(self, message: Mapping[str, Any]) -> bytes:
        where = "http.response.body"
        if self.phase is _Phase.START:
            raise ASGIProtocolError(f"{where} sent before http.response.start")
        if self.phase is _Phase.TRAILERS:
            raise ASGIProtocolError(f"{where} sent after the final {where} (more_body=False)")
        body = message.get("body", b"")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise ASGIProtocolError(f"{where} body must be bytes, not {type(body).__name__}")
        more_body = _check_flag(message, "more_body", where)
        data = bytes(body)
        if self.framing is Framing.NO_BODY:
            if data and self.method != "HEAD":
                # RFC 9110 §6.4.1: 1xx, 204 and 304 responses end with their header section.
                raise ASGIProtocolError(
                    f"{where} carries {len(data)} bytes but a {self.status_code} response has no body"
                )
            # RFC 9110 §9.3.2: a server drops the body of a HEAD response; so does this client.
            data = b""
        self.body_size += len(data)
        if self.content_length is not None and self.framing is Framing.CONTENT_LENGTH:
            if self.body_size > self.content_length:
                raise ASGIProtocolError(
                    f"{where} brings the body to {self.body_size} bytes, "
                    f"past content-length: {self.content_length}"
                )
            if not more_body and self.body_size < self.content_length:
                raise ASGIProtocolError(
                    f"the final {where} ends the body at {self.body_size} bytes, "
                    f"short of content-length: {self.content_length}"
                )
        if not more_body:
            self.phase = _Phase.TRAILERS if self.declared_trailers else _Phase.COMPLETE
        return data

    def _trailers(self, message: Mapping[str, Any]) -> None:
        where = "http.response.trailers"
        if self.phase is _Phase.START:
            raise ASGIProtocolError(f"{where} sent before http.response.start")
        if not self.declared_trailers:
            raise ASGIProtocolError(f"{where} sent but http.response.start did not declare trailers=True")
        if self.phase is _Phase.BODY:
            raise ASGIProtocolError(f"{where} sent before the final http.response.body (more_body=False)")
        headers = _check_headers(message.get("headers", []), where)
        more_trailers = _check_flag(message, "more_trailers", where)
        self.trailers = [*(self.trailers or []), *headers]
        if not more_trailers:
            self.phase = _Phase.COMPLETE


def _chunk_bytes(chunk: object) -> bytes:
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return bytes(chunk)
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    raise TypeError(f"request content chunks must be bytes or str, not {type(chunk).__name__}")


class _RequestBody:
    """The ``http.request`` messages of one request, handed out one per ``receive()``."""

    def __init__(self, content: RequestContent | None) -> None:
        self.exhausted = False
        self.data = b""
        self.iterator: Iterator[Any] | AsyncIterator[Any] | None = None
        if content is None:
            pass
        elif isinstance(content, (bytes, bytearray, memoryview, str)):
            self.data = _chunk_bytes(content)
        elif isinstance(content, AsyncIterable):
            self.iterator = aiter(content)
        elif isinstance(content, Iterable) and not isinstance(content, Mapping):
            self.iterator = iter(content)
        else:
            raise TypeError(
                f"content must be bytes, str or an iterable of bytes, not {type(content).__name__}"
                " (use json= to send a JSON body)"
            )

    async def next_message(self) -> Message:
        chunk: object = _END
        if isinstance(self.iterator, AsyncIterator):
            chunk = await anext(self.iterator, _END)
        elif self.iterator is not None:
            chunk = next(self.iterator, _END)
        if chunk is _END:
            # One message per chunk with more_body=True, then an empty final one, so a duplex
            # test never has to produce chunk n+1 before the app has seen chunk n.
            self.exhausted = True
            return {"type": "http.request", "body": self.data, "more_body": False}
        return {"type": "http.request", "body": _chunk_bytes(chunk), "more_body": True}

    async def aclose(self) -> None:
        aclose = getattr(self.iterator, "aclose", None)
        if aclose is not None:
            await aclose()


class _Exchange:
    """One request and its response: the app's ``receive``/``send`` and the test's waits."""

    def __init__(
        self,
        app: ASGIApp,
        scope: Scope,
        body: _RequestBody,
        *,
        timeout: float | None,
        raise_app_exceptions: bool,
        max_buffered_chunks: int,
    ) -> None:
        self.app = app
        self.scope = scope
        self.body = body
        self.timeout = timeout
        self.raise_app_exceptions = raise_app_exceptions
        self.max_buffered_chunks = max_buffered_chunks
        self.parser = _ResponseParser(scope["method"], _TRAILERS_EXTENSION in scope["extensions"])
        self.messages: list[Message] = []
        self.chunks: deque[bytes] = deque()  # sent by the app, not yet read by the test
        self.received: list[bytes] = []  # read by the test
        self.disconnected = False
        self.app_done = False
        self.gave_up_waiting = False
        self.cancelling = False
        self.app_exception: Exception | None = None
        self.protocol_error: ASGIProtocolError | None = None
        self._surfaced: list[BaseException] = []
        self._changed = anyio.Event()
        self._body_scope: anyio.CancelScope | None = None

    # -- shared ---------------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _wait(self, ready: Callable[[], bool], timeout: float | None, what: str) -> None:
        """Wait until ``ready()``; raise ``TimeoutError`` saying what was awaited after ``timeout``."""
        with anyio.move_on_after(timeout) as scope:
            while not ready():
                await self._changed.wait()
        if scope.cancelled_caught and not ready():
            request = f"{self.scope['method']} {self.scope['path']}"
            raise TimeoutError(f"waited {timeout:g}s for {what} ({request}); the app is still running")

    @property
    def response_finished(self) -> bool:
        return self.parser.phase is _Phase.COMPLETE or self.protocol_error is not None

    def _surface(self, error: BaseException) -> BaseException:
        self._surfaced.append(error)
        return error

    def _is_surfaced(self, error: BaseException) -> bool:
        return any(error is seen for seen in self._surfaced)

    def disconnect(self) -> None:
        if not self.disconnected:
            self.disconnected = True
            if self._body_scope is not None:
                self._body_scope.cancel()
            self._notify()

    # -- the app's side -------------------------------------------------------------------------

    async def run_app(self) -> None:
        try:
            await self.app(self.scope, self.receive, self.send)
        except Exception as exc:
            self.app_exception = exc
        finally:
            self.app_done = True
            self._notify()

    async def _checkpoint(self) -> None:
        # Yield on every receive()/send(), so an app looping on them cannot starve the test. Like
        # a server, do not make them cancellation points while the app is welcome: Starlette's
        # Request.is_disconnected() calls receive() in a cancelled scope and expects a ready
        # http.disconnect back. Once the client cancels the app, every call is one.
        if self.cancelling:
            await anyio.lowlevel.checkpoint()
        else:
            await anyio.lowlevel.cancel_shielded_checkpoint()

    async def receive(self) -> Message:
        await self._checkpoint()
        if not self.disconnected and not self.body.exhausted:
            with anyio.CancelScope() as scope:
                self._body_scope = scope
                message = await self.body.next_message()
            self._body_scope = None
            if not scope.cancelled_caught:
                return message
        # Like uvicorn: once the body is read, receive() blocks until the client goes away or
        # the response is complete, and from then on returns http.disconnect at once.
        await self._wait(lambda: self.disconnected or self.response_finished, None, "")
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        await self._checkpoint()
        if self.disconnected and self.parser.phase is not _Phase.COMPLETE:
            # ASGI spec 2.3: writes to a closed connection are dropped, as uvicorn does. After a
            # complete response every message is an error, and is reported as one.
            return
        try:
            if not isinstance(message, Mapping):
                raise ASGIProtocolError(f"send() takes a message dict, not {type(message).__name__}")
            self.messages.append(dict(message))
            data = self.parser.feed(message)
        except ASGIProtocolError as exc:
            if self.protocol_error is None:
                self.protocol_error = exc
            self._notify()
            raise
        if data:
            self.chunks.append(data)
        self._notify()
        if data:
            # Backpressure like a socket buffer: the app runs ahead of the test only so far.
            await self._wait(self._has_room, None, "")

    def _has_room(self) -> bool:
        return self.disconnected or len(self.chunks) <= self.max_buffered_chunks

    # -- the test's side ------------------------------------------------------------------------

    async def wait_for_start(self) -> None:
        def ready() -> bool:
            return self.parser.phase is not _Phase.START or self.app_done or self.protocol_error is not None

        await self._wait(ready, self.timeout, "http.response.start")
        if self.parser.phase is not _Phase.START:
            return
        if self.protocol_error is not None:
            raise self._surface(self.protocol_error)
        if self.app_exception is not None:
            if self.raise_app_exceptions:
                raise self._surface(self.app_exception)
            # What uvicorn sends when the app fails before starting the response.
            self.parser.feed(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")],
                }
            )
            data = self.parser.feed({"type": "http.response.body", "body": b"Internal Server Error"})
            if data:
                self.chunks.append(data)
            return
        self.protocol_error = ASGIProtocolError("the app returned without sending http.response.start")
        raise self._surface(self.protocol_error)

    def _body_ended(self) -> bool:
        return bool(self.chunks) or self.response_finished or self.disconnected or self.app_done

    async def next_chunk(self) -> bytes | None:
        """The next body chunk, ``None`` at the end of a complete body, or the reason it broke."""
        await self._wait(self._body_ended, self.timeout, "the next http.response.body message")
        if self.chunks:
            data = self.chunks.popleft()
            self.received.append(data)
            self._notify()
            return data
        if self.protocol_error is not None:
            raise self._surface(self.protocol_error)
        if self.parser.phase is _Phase.COMPLETE:
            return None
        missing = (
            "the declared http.response.trailers"
            if self.parser.phase is _Phase.TRAILERS
            else "the final http.response.body (more_body=False)"
        )
        if self.disconnected:
            raise StreamAborted(f"the test disconnected before {missing}")
        cause = self.app_exception
        if cause is None:
            raise StreamAborted(f"the app returned before sending {missing}")
        self._surface(cause)
        raise StreamAborted(f"the app raised {type(cause).__name__} before sending {missing}") from cause

    async def wait_for_app(self, what: str) -> None:
        """Wait for the app to return; after a ``TimeoutError`` the ``stream()`` exit waits no more."""
        try:
            await self._wait(lambda: self.app_done, self.timeout, what)
        except TimeoutError:
            self.gave_up_waiting = True
            raise

    async def settle(self) -> None:
        """After a complete body: let the app return (background tasks run), then report errors."""
        with contextlib.suppress(TimeoutError):
            await self.wait_for_app("the app to return after a complete response")
        self.raise_unsurfaced()

    def raise_unsurfaced(self) -> None:
        if self.protocol_error is not None and not self._is_surfaced(self.protocol_error):
            raise self._surface(self.protocol_error)
        error = self.app_exception
        if error is not None and self.raise_app_exceptions and not self._is_surfaced(error):
            raise self._surface(error)

    async def close(self, app_scope: anyio.CancelScope) -> None:
        """Disconnect, give the app ``timeout`` seconds to return, then cancel it."""
        self.disconnect()
        if not self.gave_up_waiting:
            with anyio.move_on_after(self.timeout):
                await self._wait(lambda: self.app_done, None, "")
        self.cancelling = True
        app_scope.cancel()


class _BodyIterator:
    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange

    def __aiter__(self) -> _BodyIterator:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._exchange.next_chunk()
        if chunk is None:
            raise StopAsyncIteration
        return chunk


class TestResponse:
    """The response of one request, readable while the app is still sending it.

    ``stream()`` hands it over as soon as ``http.response.start`` arrives; the body is then read
    with ``iter_bytes()`` (one item per ASGI body message) or ``read()``. Everything the app sent
    stays inspectable after the ``stream()`` block ends.

    Example::

        async with client.stream("GET", "/numbers") as response:
            assert response.status_code == 200
            assert response.framing is Framing.CHUNKED
            assert [chunk async for chunk in response.iter_bytes()] == [b"1", b"2", b"3"]
            assert response.complete
    """

    __test__ = False  # the name starts with "Test"; keep pytest from collecting it

    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange
        self._body: bytes | None = None

    def __repr__(self) -> str:
        return f"<TestResponse [{self.status_code}] {self.framing.value}>"

    @property
    def status_code(self) -> int:
        """The ``status`` of ``http.response.start``."""
        return self._exchange.parser.status_code

    @property
    def headers(self) -> Headers:
        """The response headers, looked up case-insensitively: ``response.headers["content-type"]``."""
        return self._exchange.parser.headers

    @property
    def raw_headers(self) -> RawHeaders:
        """The headers exactly as the app sent them, a list of ``(name, value)`` bytes pairs."""
        return self._exchange.parser.raw_headers

    @property
    def framing(self) -> Framing:
        """How the body is delimited on the wire.

        ``NO_BODY`` for HEAD, 1xx, 204 and 304; else ``CONTENT_LENGTH`` when the app sent a
        ``content-length`` header; else ``CHUNKED``.
        """
        return self._exchange.parser.framing

    @property
    def declared_trailers(self) -> bool:
        """Whether ``http.response.start`` said ``trailers: True``."""
        return self._exchange.parser.declared_trailers

    @property
    def trailers(self) -> Headers | None:
        """The fields of every ``http.response.trailers`` message so far, or ``None`` if none came.

        Example::

            await response.read()
            assert response.trailers["stream-status"] == "complete"
        """
        trailers = self._exchange.parser.trailers
        return None if trailers is None else Headers(raw=[(k.lower(), v) for k, v in trailers])

    @property
    def messages(self) -> list[Message]:
        """Every ASGI message the app sent (a copy of each), in order; it grows as the app sends.

        Messages sent after a disconnect are dropped, as a server drops writes to a closed
        connection. Body bytes of a HEAD response appear here though the client never sees them.
        """
        return self._exchange.messages

    @property
    def complete(self) -> bool:
        """True once the final body message arrived (and the declared trailers, if any)."""
        return self._exchange.parser.phase is _Phase.COMPLETE

    @property
    def app_exception(self) -> Exception | None:
        """The exception the app raised, if it has raised one (it may still be running)."""
        return self._exchange.app_exception

    @property
    def disconnected(self) -> bool:
        """True once ``disconnect()`` was called or the ``stream()`` block ended."""
        return self._exchange.disconnected

    @property
    def scope(self) -> Scope:
        """The ASGI scope the app was called with."""
        return self._exchange.scope

    def iter_bytes(self) -> AsyncIterator[bytes]:
        """Yield the body one non-empty ``http.response.body`` message at a time, as the app sent it.

        Each wait for the next message is bounded by the client's ``timeout``
        (``TimeoutError``). Raises ``StreamAborted`` if the body ends unfinished and
        ``ASGIProtocolError`` if the app breaks the protocol. Iterating again continues where
        the last iteration stopped.

        Example::

            async with client.stream("GET", "/events") as response:
                async for chunk in response.iter_bytes():
                    print(chunk)
        """
        return _BodyIterator(self._exchange)

    async def read(self) -> bytes:
        """Read the rest of the body and return all of it; then wait for the app to return.

        Waiting for the app (at most ``timeout``) lets background tasks finish and surfaces an
        exception raised after a complete response (Starlette's ``ServerErrorMiddleware`` sends
        a 500 and then re-raises): it is raised here when ``raise_app_exceptions`` is true.

        Example::

            async with client.stream("GET", "/") as response:
                assert await response.read() == b"Hello"
        """
        async for _ in self.iter_bytes():
            pass
        self._body = b"".join(self._exchange.received)
        await self._exchange.settle()
        return self._body

    @property
    def body(self) -> bytes:
        """The whole body; available after ``read()`` (``client.request()`` reads it for you)."""
        if self._body is None:
            raise ResponseStateError("the body has not been read yet: call `await response.read()` first")
        return self._body

    @property
    def text(self) -> str:
        """The body decoded with the charset of ``content-type`` (UTF-8 if there is none)."""
        match = _CHARSET.search(self.headers.get("content-type", ""))
        return self.body.decode(match.group(1) if match else "utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return jsonlib.loads(self.body)

    async def disconnect(self) -> None:
        """Close the connection: the app's pending or next ``receive()`` returns ``http.disconnect``.

        Then wait for the app to return, at most ``timeout`` seconds (``TimeoutError`` if it
        keeps running: it ignored the disconnect). Later ``send()`` calls are dropped.

        Example::

            async with client.stream("GET", "/endless") as response:
                chunks = response.iter_bytes()
                first = [await anext(chunks) for _ in range(3)]
                await response.disconnect()
        """
        self._exchange.disconnect()
        await self._exchange.wait_for_app("the app to return after http.disconnect")


def _encode_header(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


class StreamingTestClient:
    """An in-process HTTP client for any ASGI app that streams the response as the app sends it.

    The app runs in a task next to the test. Status, headers, framing, each body chunk,
    trailers and the app's own messages are all visible, and the test can disconnect
    mid-stream. Every wait is bounded by ``timeout`` seconds (``None``: no bound), so a stuck
    app raises ``TimeoutError`` instead of hanging the test.

    ``trailers`` offers the ASGI ``http.response.trailers`` extension in the scope; by default
    it is offered for HTTP/2 and HTTP/3 only. ``raise_app_exceptions=False`` turns an exception
    raised before the response started into the 500 response a server would send.

    Example::

        client = StreamingTestClient(app)
        response = await client.get("/")
        assert response.status_code == 200

        async with client.stream("GET", "/events") as response:
            async for chunk in response.iter_bytes():
                ...
    """

    #: Unread body chunks held for the test before the app's ``send()`` waits, like a socket buffer.
    max_buffered_chunks = 16

    def __init__(
        self,
        app: ASGIApp,
        *,
        base_url: str = "http://testserver",
        http_version: str = "1.1",
        trailers: bool | None = None,
        raise_app_exceptions: bool = True,
        timeout: float | None = 5.0,
        client: tuple[str, int] = ("127.0.0.1", 123),
    ) -> None:
        if http_version not in _HTTP_VERSIONS:
            raise ValueError(f"http_version must be one of {', '.join(_HTTP_VERSIONS)}; got {http_version!r}")
        base = urlsplit(base_url)
        if base.scheme not in _DEFAULT_PORTS or not base.hostname:
            raise ValueError(f"base_url must be an absolute http:// or https:// URL, got {base_url!r}")
        self.app = app
        self.base_url = base_url
        self.http_version = http_version
        self.trailers = http_version in ("2", "3") if trailers is None else trailers
        self.raise_app_exceptions = raise_app_exceptions
        self.timeout = parse_timeout(timeout, "timeout")
        self.client = client

    def _build_scope(self, method: str, url: str, headers: HeaderTypes | None, extra: RawHeaders) -> Scope:
        """The ASGI HTTP scope for one request; ``extra`` headers yield to those the test gave."""
        target = urlsplit(url)
        base = target if target.scheme else urlsplit(self.base_url)
        if base.scheme not in _DEFAULT_PORTS or not base.hostname:
            raise ValueError(f"the URL must be a path or an absolute http(s) URL, got {url!r}")
        path = target.path if target.scheme else base.path.rstrip("/") + "/" + target.path.lstrip("/")
        raw_path = quote(path or "/", safe=_SAFE_PATH)
        host = base.netloc.rpartition("@")[2]
        items = headers.items() if isinstance(headers, Mapping) else headers or ()
        raw: RawHeaders = [(_encode_header(k).lower(), _encode_header(v)) for k, v in items]
        given = {name for name, _ in raw}
        added: RawHeaders = [] if b"host" in given else [(b"host", host.encode("idna"))]
        added_later = [(name, value) for name, value in extra if name not in given]
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": self.http_version,
            "method": method.upper(),
            "scheme": base.scheme,
            "path": unquote(raw_path),
            "raw_path": raw_path.encode("ascii"),
            "query_string": quote(target.query, safe=_SAFE_QUERY).encode("ascii"),
            "root_path": "",
            "headers": [*added, *raw, *added_later],
            "client": self.client,
            "server": (base.hostname, base.port or _DEFAULT_PORTS[base.scheme]),
            "extensions": {_TRAILERS_EXTENSION: {}} if self.trailers else {},
            "state": {},
        }

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        content: RequestContent | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> AsyncIterator[TestResponse]:
        """Send a request; enter once ``http.response.start`` arrives; read the body inside.

        ``content`` is the whole body (bytes, or str encoded as UTF-8: one ``http.request``
        message with a ``content-length`` header) or an iterable, sync or async, of chunks
        (one message each, then an empty final one; an async iterator is ``aclose()``-d when
        the block ends). ``json`` sends a JSON body instead. ``timeout`` overrides the
        client's for this request. Besides the given headers the request carries ``host``,
        and ``content-length``, ``content-type`` (for ``json``) or ``transfer-encoding``
        (iterables over HTTP/1.1) unless the test gave them.

        Raises ``TimeoutError`` if the response does not start within ``timeout``, and the app's
        own exception if it raises before starting. On leaving the block, a still-running app
        is disconnected, given ``timeout`` seconds to return, then cancelled; an app exception
        or protocol error not reported yet is raised then.

        Example::

            async with client.stream("POST", "/upload", content=chunks()) as response:
                assert response.status_code == 200
                async for chunk in response.iter_bytes():
                    ...
        """
        extra: RawHeaders = []
        if json is not None:
            if content is not None:
                raise TypeError("pass either content= or json=, not both")
            content = jsonlib.dumps(json, separators=(",", ":")).encode("utf-8")
            extra.append((b"content-type", b"application/json"))
        body = _RequestBody(content)
        if body.iterator is None and content is not None:
            extra.append((b"content-length", str(len(body.data)).encode("ascii")))
        elif body.iterator is not None and self.http_version == "1.1":
            extra.append((b"transfer-encoding", b"chunked"))
        scope = self._build_scope(method, url, headers, extra)
        exchange = _Exchange(
            self.app,
            scope,
            body,
            timeout=self.timeout if timeout is None else parse_timeout(timeout, "timeout"),
            raise_app_exceptions=self.raise_app_exceptions,
            max_buffered_chunks=self.max_buffered_chunks,
        )
        # Errors are held until the task group has closed, so they reach the test as they are
        # rather than wrapped in an ExceptionGroup.
        error: Exception | None = None
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(exchange.run_app, name=f"ASGI app for {method} {url}")
            try:
                await exchange.wait_for_start()
            except Exception as exc:
                error = exc
            else:
                try:
                    yield TestResponse(exchange)
                except Exception as exc:
                    error = exc
            await exchange.close(task_group.cancel_scope)
        await body.aclose()
        if error is not None:
            raise error
        exchange.raise_unsurfaced()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        content: RequestContent | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> TestResponse:
        """Send a request and read the whole response; see ``stream()`` for the arguments.

        Example::

            response = await client.request("GET", "/")
            assert response.text == "Hello"
        """
        async with self.stream(
            method, url, headers=headers, content=content, json=json, timeout=timeout
        ) as response:
            await response.read()
        return response

    async def get(
        self, url: str, *, headers: HeaderTypes | None = None, timeout: float | None = None
    ) -> TestResponse:
        """``request("GET", url)``: ``response = await client.get("/items")``."""
        return await self.request("GET", url, headers=headers, timeout=timeout)

    async def head(
        self, url: str, *, headers: HeaderTypes | None = None, timeout: float | None = None
    ) -> TestResponse:
        """``request("HEAD", url)``: ``response = await client.head("/items")``."""
        return await self.request("HEAD", url, headers=headers, timeout=timeout)

    async def options(
        self, url: str, *, headers: HeaderTypes | None = None, timeout: float | None = None
    ) -> TestResponse:
        """``request("OPTIONS", url)``: ``response = await client.options("/items")``."""
        return await self.request("OPTIONS", url, headers=headers, timeout=timeout)

    async def delete(
        self, url: str, *, headers: HeaderTypes | None = None, timeout: float | None = None
    ) -> TestResponse:
        """``request("DELETE", url)``: ``response = await client.delete("/items/1")``."""
        return await self.request("DELETE", url, headers=headers, timeout=timeout)

    async def post(
        self,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        content: RequestContent | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> TestResponse:
        """``request("POST", ...)``: ``response = await client.post("/items", json={"a": 1})``."""
        return await self.request("POST", url, headers=headers, content=content, json=json, timeout=timeout)

    async def put(
        self,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        content: RequestContent | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> TestResponse:
        """``request("PUT", ...)``: ``response = await client.put("/items/1", content=b"...")``."""
        return await self.request("PUT", url, headers=headers, content=content, json=json, timeout=timeout)

    async def patch(
        self,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        content: RequestContent | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> TestResponse:
        """``request("PATCH", ...)``: ``response = await client.patch("/items/1", json={})``."""
        return await self.request("PATCH", url, headers=headers, content=content, json=json, timeout=timeout)
