"""``EventSourceResponse``: server-sent events through the chunk pump, and resume helpers.

This module owns what an event stream hands the core: its producers (items encoded on their
way into the queue), keep-alive comments, the error event and the last event on shutdown, and
reading ``Last-Event-ID``. The events themselves and their wire encoding live in
``_events.py``. The response is a thin adapter: it never calls ``send`` (the core does).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar, Literal

from starlette.background import BackgroundTask
from starlette.requests import HTTPConnection

from ._broker_fanout import Subscription
from ._compression import CompressOption
from ._core import OutcomeCallback, PumpSettings
from ._events import ServerSentEvent, encode_fields_item, encode_item
from ._exceptions import EventsLost
from ._loops import current_loop
from ._options import StreamOptions, parse_timeout
from ._producers import AsyncIterableProducer, ChunkQueue, Producer, ResumeAfterItems, make_producer
from ._records import declare_asyncio
from ._shutdown import ShutdownPolicy
from ._streaming import StreamingResponse
from ._types import Content, Scope, Write

logger = logging.getLogger("streaming_responses")

# Connection-specific header fields (RFC 9110 §7.6.1) are forbidden in HTTP/2 and HTTP/3
# (RFC 9113 §8.2.2); an event stream that may be served over either never sends them.
_CONNECTION_FIELDS = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)


# -- producers ------------------------------------------------------------------------------


#: What turns one item of an event stream into bytes: ``encode_item``, or ``encode_fields_item``
#: when dicts are events' fields (``dicts="fields"``).
Encoder = Callable[[Any], bytes]
#: The encoder for each value of ``dicts=``.
ENCODERS: dict[str, Encoder] = {"data": encode_item, "fields": encode_fields_item}


async def _fill_with_events(iterator: AsyncIterator[Any], queue: ChunkQueue, encode: Encoder) -> None:
    """:func:`~._producers.fill_queue` with a short lane for ready-built events.

    The same loop (see its docstring for why the local ``produced`` is safe), except that an
    item that is a :class:`ServerSentEvent` gives its bytes without a call: a stream of event
    objects spends most of its time building them, and the call to ``encode`` was a tenth of
    what is left per event.
    """
    append = queue.items.append
    bound = queue.bound
    produced = queue.produced
    limit = queue.taken + bound
    async for item in iterator:
        chunk = item._wire if type(item) is ServerSentEvent else encode(item)
        append(chunk)
        produced += len(chunk)
        if queue.consumer_waiting:
            queue.wake_consumer()
        if produced >= limit:
            limit = queue.taken + bound
            if produced >= limit:
                queue.produced = produced
                await queue.wait_for_space()
                limit = queue.taken + bound
    queue.produced = produced


class _EncodingAsyncProducer(AsyncIterableProducer):
    """An async iterable of items, each encoded on its way into the queue."""

    __slots__ = ("_encode",)

    def __init__(self, iterable: AsyncIterable[Any], encode: Encoder) -> None:
        super().__init__(iterable)
        self._encode = encode

    def run(self, queue: ChunkQueue) -> Awaitable[None]:
        iterator = self._iterator = aiter(self._iterable)
        # At the first bare yield (FastAPI's anyio.sleep(0) after each event of a generator
        # endpoint), spare this task's anyio calls sniffio's detection of the event loop
        # library each time. Only then: declaring it costs each stream a context entry.
        declare = declare_asyncio if current_loop().name == "asyncio" else None
        filling = _fill_with_events(iterator, queue, self._encode)
        return ResumeAfterItems(filling, queue, on_bare_yield=declare)


class _EncodingIterator(Iterator[bytes]):
    """A sync iterator of items, encoded as the core's worker thread pulls them in batches."""

    __slots__ = ("_encode", "_iterator", "_source")

    def __init__(self, source: Iterable[Any], encode: Encoder) -> None:
        self._source = source
        self._encode = encode
        self._iterator: Iterator[Any] | None = None

    def __iter__(self) -> _EncodingIterator:
        return self

    def __next__(self) -> bytes:
        iterator = self._iterator
        if iterator is None:
            iterator = self._iterator = iter(self._source)
        return self._encode(next(iterator))

    def close(self) -> None:
        target: object = self._iterator if self._iterator is not None else self._source
        close = getattr(target, "close", None)
        if close is not None:
            close()


#: What a subscription handed to the response sends when its ``Last-Event-ID`` cannot be
#: resumed exactly, before it follows live events.
RESET_EVENT = ServerSentEvent("reset", event="reset")


class _SubscriptionProducer(Producer):
    """A broker subscription sent as it is: its replayed events, then live events straight
    from the fan-out into the core's queue.

    Through a generator (``async for event in events: yield event``) each delivery wakes two
    tasks, the generator's and the sender's; here the fan-out queues an event's bytes itself
    (:meth:`Subscription.hand_live_events_to`), so it wakes only the sender, and events that
    arrive while the sender is busy go out together in its next message. The drop rule is the
    subscription's: more than ``subscriber_buffer`` events not yet taken by the sender. A
    ``Last-Event-ID`` that cannot be resumed exactly (:class:`EventsLost`) sends
    :data:`RESET_EVENT`, then live events.
    """

    def __init__(self, subscription: Subscription) -> None:
        self._subscription = subscription

    async def run(self, queue: ChunkQueue) -> None:
        subscription = self._subscription
        try:
            await subscription.join()
        except EventsLost:
            # The reset pattern (docs/scaling.md): the page reloads what it shows, then the
            # stream follows live events. An EventSource that reconnected with an id nobody
            # can resume would otherwise fail again at every reconnection.
            await queue.push(RESET_EVENT.encode())
            subscription = self._subscription = subscription.live_only()
            await subscription.join()
        for event in subscription.replayed():
            await queue.push(event.encode())
        # The sink counts what the sender has not taken: start it on an empty queue.
        await queue.wait_until_taken()
        subscription.hand_live_events_to(_sink(queue, subscription))
        await subscription.until_ended()

    async def close(self) -> None:
        self._subscription.close()


def _sink(queue: ChunkQueue, subscription: Subscription) -> Callable[[bytes], bool]:
    """Queue an event's bytes for the sender, from the publishing thread (fan-out lock held)."""
    items = queue.items
    bound = subscription.subscriber_buffer

    def sink(chunk: bytes) -> bool:
        if len(items) >= bound:
            return False
        items.append(chunk)
        queue.produced += len(chunk)  # the one writer now: deliveries run under the fan-out lock
        if queue.consumer_waiting:
            if subscription.on_loop():
                queue.wake_consumer()
            else:
                subscription.call_on_loop(queue.wake_consumer)
        return True

    return sink


def _event_producer(content: Any, encode: Encoder = encode_item) -> Producer:
    """The producer of an event stream: its items encoded, whatever the kind of ``content``."""
    if isinstance(content, Subscription):
        return _SubscriptionProducer(content)
    if isinstance(content, AsyncIterable):
        return _EncodingAsyncProducer(content, encode)
    if isinstance(content, (list, tuple)):
        # Every item exists already: encode them now, so a bad one fails in the endpoint.
        return make_producer([b"".join(map(encode, content))] if content else [])
    if isinstance(content, Iterable) and not isinstance(content, (str, bytes, bytearray, memoryview)):
        return make_producer(_EncodingIterator(content, encode))
    # What is left is a writer callable (StreamingResponse.__init__ refused anything else).
    writer = content

    async def encoding_writer(write: Write) -> None:
        async def send_event(item: Any) -> None:
            await write(encode(item))

        await writer(send_event)

    return make_producer(encoding_writer)


# -- resume -----------------------------------------------------------------------------------


def last_event_id(request: HTTPConnection | Scope) -> str | None:
    """The ``Last-Event-ID`` a reconnecting ``EventSource`` sent, or ``None``.

    Takes a Starlette/FastAPI ``Request`` (or ``WebSocket``) or an ASGI scope. Browsers send
    the header with the ``id`` of the last event they received, UTF-8 encoded; it is decoded
    as UTF-8 here (Starlette's ``request.headers`` would decode it as Latin-1). A value that
    is empty, not UTF-8, or contains NUL, CR or LF (no id we send can) gives ``None``.

    Example::

        @app.get("/feed", response_class=EventSourceResponse)
        async def feed(request: Request):
            async with broker.subscribe(last_event_id(request)) as events:
                async for event in events:
                    yield event
    """
    scope = request.scope if isinstance(request, HTTPConnection) else request
    for name, value in scope.get("headers", ()):
        if name.lower() != b"last-event-id":
            continue
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
        text = text.strip(" \t")  # RFC 9110 §5.5: optional whitespace around a field value
        if not text or "\0" in text or "\r" in text or "\n" in text:
            return None
        return text
    return None


# -- the response ------------------------------------------------------------------------------

#: The default in-band error event: a generic text, never the exception's.
DEFAULT_ERROR_EVENT = ServerSentEvent("stream failed", event="error")

ErrorEvent = ServerSentEvent | Callable[[BaseException], object] | None


class _FixedChunk:
    """The error chunk of a fixed error event: its bytes, whatever the exception."""

    __slots__ = ("_chunk",)

    def __init__(self, chunk: bytes) -> None:
        self._chunk = chunk

    def __call__(self, error: BaseException) -> bytes:
        return self._chunk


#: Shared by every stream that keeps the default error event (one object less per stream).
_DEFAULT_ERROR_CHUNK = _FixedChunk(DEFAULT_ERROR_EVENT.encode())
#: The keep-alive comment of the default ``ping_comment``, encoded once.
_DEFAULT_KEEPALIVE = ServerSentEvent(comment="ping").encode()


def _error_chunk_maker(error_event: ErrorEvent) -> Callable[[BaseException], bytes | None] | None:
    if error_event is None:
        return None
    if error_event is DEFAULT_ERROR_EVENT:
        return _DEFAULT_ERROR_CHUNK
    if isinstance(error_event, ServerSentEvent):
        return _FixedChunk(error_event.encode())
    if callable(error_event):
        make = error_event

        def error_chunk(error: BaseException) -> bytes | None:
            item = make(error)
            return None if item is None else encode_item(item)

        return error_chunk
    raise TypeError(
        "error_event must be a ServerSentEvent, a callable taking the exception, or None, "
        f"not {type(error_event).__name__}"
    )


class EventSourceResponse(StreamingResponse):
    """A ``text/event-stream`` response: server-sent events, driven by the chunk pump.

    ``content`` is a sync or async iterable (or a list) of items, or an async *writer*
    callable that receives ``send_event`` and awaits it once per item. An item is a
    :class:`ServerSentEvent`, a ``str`` (a data-only event), a ``fastapi.sse.ServerSentEvent``,
    pre-encoded ``bytes`` (whole events), or any other object (a data-only event with its
    JSON; a dict too, unless ``dicts="fields"``). Use it as a return value or as
    ``response_class=`` of a FastAPI generator endpoint.

    The headers go out at once with an opening ``:`` comment, so ``EventSource.onopen`` fires
    before the first event. Keyword arguments:

    * ``ping``: seconds without anything sent after which a ``: {ping_comment}`` comment goes
      out (15 by default; ``None``: never). Counted from the last send, not on a fixed clock.
    * ``send_timeout``: seconds one send may take; a client that stops reading for that long
      is dropped and the generator closed.
    * ``error_event``: what a mid-stream error (or timeout) sends before the connection is
      aborted (or trailers say so): a :class:`ServerSentEvent` (default: ``event: error``
      with the generic data ``stream failed``), a callable given the exception and returning
      an item (or ``None``: nothing), or ``None``.
    * ``shutdown_event``: an optional last event sent when the server shuts down (or
      :func:`~streaming_responses.end_all_streams` is called); the body then ends normally
      and the browser reconnects, sending ``Last-Event-ID``.
    * ``on_shutdown``: ``"end"`` by default (see above); ``"abort"`` or ``"wait"`` as for
      :class:`~streaming_responses.StreamingResponse`.
    * ``compress``: on by default (``True``): the stream is compressed with the encoding the
      client prefers among zstd, br and gzip, every event (and ping) flushed as it is sent;
      ``False`` turns it off, a sequence or mapping chooses encodings and levels, as for
      :class:`~streaming_responses.StreamingResponse`.
    * ``dicts``: what a dict item is. ``"data"`` (the default): the JSON data of a data-only
      event, as for any other object. ``"fields"``: the event's fields, sse-starlette's form
      (``{"data": "hi", "id": "1"}``; the keys ``data``, ``event``, ``id``, ``retry`` and
      ``comment``, any other key is a ``TypeError``). ``None`` takes the class attribute
      ``dicts``, which a subclass can set for FastAPI's ``response_class=``.
    * ``timeout``, ``idle_timeout``, ``duplex``, ``on_outcome``: as for
      :class:`~streaming_responses.StreamingResponse`. ``idle_timeout`` counts the
      producer's silence; pings do not reset it.

    Example::

        async def ticks():
            for n in range(10):
                yield ServerSentEvent({"n": n}, event="tick", id=str(n))
                await anyio.sleep(1)

        @app.get("/ticks")
        async def endpoint():
            return EventSourceResponse(ticks(), ping=5)

        @app.get("/feed", response_class=EventSourceResponse)  # FastAPI generator endpoint
        async def feed():
            yield {"hello": "world"}
    """

    media_type = "text/event-stream"
    #: The stream starts before its first event (so ``onopen`` fires at once).
    start_immediately: ClassVar[bool] = True
    #: Sent right after the headers: an empty comment, which clients ignore. Some servers
    #: (granian) hold the headers back until the first body bytes; this releases them.
    opening_chunk: ClassVar[bytes | None] = b":\n\n"
    #: What a dict item is when ``dicts=`` is not given: ``"data"`` or ``"fields"``.
    dicts: Literal["data", "fields"] = "data"

    def __init__(
        self,
        content: Content,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = "text/event-stream",
        background: BackgroundTask | None = None,
        *,
        ping: float | None = 15.0,
        ping_comment: str = "ping",
        send_timeout: float | None = None,
        error_event: ErrorEvent = DEFAULT_ERROR_EVENT,
        shutdown_event: ServerSentEvent | None = None,
        on_shutdown: ShutdownPolicy | str = ShutdownPolicy.END,
        dicts: Literal["data", "fields"] | None = None,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        duplex: bool = False,
        on_outcome: OutcomeCallback | None = None,
        compress: CompressOption = True,
    ) -> None:
        if dicts is not None:
            self.dicts = dicts
        if not isinstance(self.dicts, str) or self.dicts not in ENCODERS:
            raise ValueError(f"dicts must be 'data' or 'fields', not {self.dicts!r}")
        if headers is not None:
            for name in headers:
                if name.lower().encode("latin-1") in _CONNECTION_FIELDS:
                    raise ValueError(
                        f"an event stream must not set the {name!r} header: HTTP/2 and HTTP/3 forbid "
                        "connection-specific fields (RFC 9113 §8.2.2); the server manages the connection"
                    )
        self._setup(
            content, status_code, headers, media_type, background, StreamOptions.from_arguments(locals())
        )
        self.ping = parse_timeout(ping, "ping")
        if not isinstance(ping_comment, str):
            raise TypeError(f"ping_comment must be a str, not {type(ping_comment).__name__}")
        self.ping_comment = ping_comment
        self.error_event = error_event
        self._error_chunk = _error_chunk_maker(error_event)
        if shutdown_event is not None and not isinstance(shutdown_event, ServerSentEvent):
            raise TypeError(
                f"shutdown_event must be a ServerSentEvent or None, not {type(shutdown_event).__name__}"
            )
        self.shutdown_event = shutdown_event
        self._keepalive_chunk = (
            _DEFAULT_KEEPALIVE if ping_comment == "ping" else ServerSentEvent(comment=ping_comment).encode()
        )
        present = {name for name, _ in self.raw_headers}
        # Caches must not store a live stream; X-Accel-Buffering: no tells nginx not to buffer it.
        if b"cache-control" not in present:
            self.raw_headers.append((b"cache-control", b"no-cache"))
        if b"x-accel-buffering" not in present:
            self.raw_headers.append((b"x-accel-buffering", b"no"))

    def make_producer(self, content: Content) -> Producer:
        """An event stream's producer: its items encoded on their way into the core's queue."""
        return _event_producer(content, ENCODERS[self.dicts])

    @property
    def send_timeout(self) -> float | None:
        """Seconds one send may take before the client is taken as gone (``send_timeout=``)."""
        return self.options.send_timeout

    def pump_settings(self) -> PumpSettings:
        """The core settings of an event stream: immediate start, pings, error and last events."""
        headers = self.raw_headers
        if any(name.lower() in _CONNECTION_FIELDS for name, _ in headers):
            # A Connection header added after construction (FastAPI copies the headers of its
            # Response parameter onto ours) is dropped rather than sent over HTTP/2.
            headers = [(name, value) for name, value in headers if name.lower() not in _CONNECTION_FIELDS]
        return self._settings(
            raw_headers=headers,
            start_immediately=self.start_immediately,
            opening_chunk=self.opening_chunk,
            keepalive=self.ping,
            keepalive_chunk=self._keepalive_chunk,
            error_chunk=self._error_chunk,
            shutdown_chunk=None if self.shutdown_event is None else self.shutdown_event.encode(),
        )
