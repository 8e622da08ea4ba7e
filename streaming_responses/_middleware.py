"""``StreamingHTTPMiddleware``: the ``call_next`` style of middleware, without hiding failures.

This module owns a drop-in replacement for Starlette's ``BaseHTTPMiddleware`` (what FastAPI's
``@app.middleware("http")`` uses). Starlette's ``call_next`` runs the inner application in a
task and re-sends its messages through a response of its own; when the inner application raises
after its response started, that task catches the exception, and the outer response then ends
the body cleanly: the client sees a complete response (curl exits 0). Nothing the inner response
sends can change that: the exception is caught as ``Exception``, and the terminating message is
sent by the middleware. So the fix has to be the middleware.

The rule that keeps it simple: the inner application talks to a bounded in-memory channel, never
to the server; the outer response is an ordinary :class:`~._streaming.StreamingResponse` whose
producer reads that channel, so the chunk pump (``_core.py``) sends every byte to the client and
decides how a failure ends: the inner exception is re-raised after the start (an aborted
connection, or error trailers where they reach the client), never a clean end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ._options import StreamOptions
from ._producers import AsyncIterableProducer, Producer
from ._streaming import StreamingResponse
from ._types import Content, Message, Receive, Scope, Send

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
CallNext = Callable[[Request], Awaitable[Response]]
Dispatch = Callable[[Request, CallNext], Awaitable[Response]]

#: Extensions the inner application must not use: the outer response decides trailers, and it
#: sends bytes (a ``pathsend`` message cannot be relayed as body bytes).
_OUTER_EXTENSIONS = ("http.response.trailers", "http.response.pathsend")


class _RecordingReceive:
    """The ``receive`` of the dispatch's :class:`Request`: what it reads is kept for the app.

    A dispatch function that reads the body (``await request.body()``) takes those messages
    from the server; the inner application gets them again, in order, then the server's own.
    """

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.read: list[Message] = []

    async def __call__(self) -> Message:
        message = await self._receive()
        if message.get("type") == "http.request":
            self.read.append(message)
        return message

    def for_app(self) -> Receive:
        replay = self.read
        receive = self._receive

        async def app_receive() -> Message:
            if replay:
                return replay.pop(0)
            return await receive()

        return app_receive


class _Relay:
    """The inner application's messages, handed from its task to the outer response."""

    def __init__(self, app: ASGIApp, scope: Scope, receive: Receive) -> None:
        self._app = app
        self._scope = scope
        self._receive = receive
        self._sender, self._messages = anyio.create_memory_object_stream[Message](0)
        #: The exception the inner application raised, once it did.
        self.error: BaseException | None = None

    async def run(self) -> None:
        """Run the inner application; its exception is kept for whoever reads the messages."""
        with self._sender:
            try:
                await self._app(self._scope, self._receive, self._send)
            except Exception as exc:
                self.error = exc

    async def _send(self, message: Message) -> None:
        try:
            await self._sender.send(message)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            # The outer response stopped reading (its client left): nothing reaches anyone now.
            raise ClientDisconnect() from None

    def close(self) -> None:
        """Stop taking messages: a ``send`` of the inner application now raises."""
        self._messages.close()

    async def start(self) -> Message:
        """The inner response start; the inner exception if the app failed before it."""
        async for message in self._messages:
            if message["type"] == "http.response.start":
                return message
        if self.error is not None:
            raise self.error
        raise RuntimeError("the application returned without sending a response")

    async def body(self) -> AsyncIterator[bytes]:
        """The inner body, message by message; raise as the inner response ended if it failed."""
        try:
            async for message in self._messages:
                if message["type"] != "http.response.body":
                    continue  # nothing else may follow the start (trailers, pathsend are off)
                chunk = message.get("body", b"")
                if chunk:
                    yield bytes(chunk)
                if not message.get("more_body", False):
                    return
            # The inner application stopped before its last body message: it failed, or its
            # client left (our pump then reports a disconnect, never a complete body).
            if self.error is not None:
                raise self.error
            raise ClientDisconnect()
        finally:
            self._messages.close()


class _RelayedResponse(StreamingResponse):
    """The response ``call_next`` returns: the inner status, headers and body, sent by the core."""

    #: The inner response chose its own headers; nothing is added to them.
    content_type_options = None

    def __init__(self, relay: _Relay, start: Message) -> None:
        self._setup(relay.body(), start["status"], None, None, None, StreamOptions(duplex=True))
        self.raw_headers = [(bytes(name).lower(), bytes(value)) for name, value in start.get("headers", [])]
        self.content_length = self._take_content_length_header()

    def make_producer(self, content: Content) -> Producer:
        assert isinstance(content, AsyncIterator)
        return AsyncIterableProducer(content)

    @property
    def body_iterator(self) -> Any:  # what Starlette's call_next response offers
        return self.content

    @body_iterator.setter
    def body_iterator(self, value: Any) -> None:
        # A dispatch that replaces the body (to log or transform it) gets its iterable sent.
        self.content = value
        self.producer = super().make_producer(value)


class StreamingHTTPMiddleware:
    """``BaseHTTPMiddleware`` for streams: the same ``dispatch(request, call_next)``, but a
    response that fails after it started never looks complete to the client.

    Starlette's ``BaseHTTPMiddleware`` (and FastAPI's ``@app.middleware("http")``, built on it)
    ends the body cleanly when the inner application raises after its headers went out, so a
    failed stream reads as a whole one. This class keeps its interface: subclass it and
    override :meth:`dispatch`, or pass ``dispatch=``; ``call_next(request)`` returns a response
    with ``status_code``, ``headers`` (the inner response's, as they were sent) and a
    ``body_iterator``. The inner failure ends the outer response as any streamed failure does:
    an aborted connection, or ``stream-status: error`` trailers where they reach the client.

    Example::

        async def log_requests(request, call_next):
            response = await call_next(request)
            response.headers["x-served-by"] = "app"
            return response

        app.add_middleware(StreamingHTTPMiddleware, dispatch=log_requests)
        # instead of @app.middleware("http") / BaseHTTPMiddleware
    """

    def __init__(self, app: ASGIApp, dispatch: Dispatch | None = None) -> None:
        self.app = app
        self.dispatch_func: Dispatch = self.dispatch if dispatch is None else dispatch

    async def dispatch(self, request: Request, call_next: CallNext) -> Response:
        """Override in a subclass (or pass ``dispatch=``): return ``await call_next(request)``."""
        raise NotImplementedError("subclass StreamingHTTPMiddleware and override dispatch, or pass dispatch=")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        recording = _RecordingReceive(receive)
        request = Request(scope, recording)
        relays: list[_Relay] = []
        try:
            await self._serve(request, recording, relays, scope, receive, send)
        except BaseException as exc:
            # The task group wraps what the response raised; the server (and the handlers
            # around this middleware) must see the exception itself, as without it.
            single = _unwrap(exc)
            if single is exc:
                raise
            raise single from None

    async def _serve(
        self,
        request: Request,
        recording: _RecordingReceive,
        relays: list[_Relay],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        async with anyio.create_task_group() as group:

            async def call_next(request: Request) -> Response:
                extensions = {
                    key: value
                    for key, value in (request.scope.get("extensions") or {}).items()
                    if key not in _OUTER_EXTENSIONS
                }
                inner_scope = {**request.scope, "extensions": extensions}
                relay = _Relay(self.app, inner_scope, recording.for_app())
                relays.append(relay)
                group.start_soon(relay.run)
                return _RelayedResponse(relay, await relay.start())

            try:
                response = await self.dispatch_func(request, call_next)
                await response(scope, receive, send)
            finally:
                # An inner response the dispatch did not send (it returned another one) must
                # not wait forever for a reader; its sends now fail and it ends.
                for relay in relays:
                    relay.close()


def _unwrap(error: BaseException) -> BaseException:
    """The one exception inside (nested) exception groups of one member each, else ``error``."""
    while True:
        members = getattr(error, "exceptions", None)
        if not isinstance(members, tuple) or len(members) != 1:
            return error
        error = members[0]
