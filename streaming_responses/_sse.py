"""Server-sent events: the event object, its wire encoding, and ``EventSourceResponse``.

This module owns the ``text/event-stream`` format (WHATWG HTML, "Server-sent events"): what an
event may contain, how it is written as bytes, and the settings an event stream hands the
core (keep-alive comments, the error event, the last event on shutdown). The rule that keeps
it simple: an event is validated and encoded *once*, when it is built, into whole-event bytes;
everything after that (the response, the broker, many subscribers) only moves those bytes.
The response itself is a thin adapter: it never calls ``send`` (the core, ``_core.py``, does).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import functools
import json
import logging
import sys
import uuid
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping
from pathlib import PurePath
from typing import Any, ClassVar

from starlette.background import BackgroundTask
from starlette.requests import HTTPConnection

from ._core import OutcomeCallback, PumpSettings
from ._framing import parse_timeout
from ._producers import AsyncIterableProducer, Producer, make_producer
from ._shutdown import ShutdownPolicy
from ._streaming import StreamingResponse
from ._types import Content, Scope, Write

logger = logging.getLogger("streaming_responses")

_FIELD_TYPES = "a str or None"
# Connection-specific header fields (RFC 9110 §7.6.1) are forbidden in HTTP/2 and HTTP/3
# (RFC 9113 §8.2.2); an event stream that may be served over either never sends them.
_CONNECTION_FIELDS = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)


# -- JSON ---------------------------------------------------------------------------------


def _json_default(value: object) -> object:
    """What ``json.dumps`` cannot encode by itself, as FastAPI's ``jsonable_encoder`` would."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, (uuid.UUID, decimal.Decimal, PurePath)):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # a pydantic model, where pydantic_core itself is unavailable
        return dump(mode="json", by_alias=True)
    raise TypeError(f"event data of type {type(value).__name__} is not JSON serializable")


def _stdlib_json(value: object) -> str:
    """JSON text of ``value`` with the standard library; NaN and infinities are refused."""
    try:
        return json.dumps(
            value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_json_default
        )
    except ValueError as exc:
        if "Out of range float" in str(exc):
            raise ValueError("event data contains NaN or an infinity, which JSON cannot represent") from None
        raise


@functools.cache
def _json_encoder() -> Callable[[object], str]:
    """The JSON encoder for event data: pydantic_core's when it is installed, else the stdlib's.

    pydantic_core's ``to_json`` encodes dicts, lists, dataclasses, pydantic models, dates,
    UUIDs and enums in Rust; measured here it is about 50 times faster than
    ``jsonable_encoder`` followed by ``json.dumps`` (FastAPI's path), with the same results
    up to whitespace. Cached so the import is looked up once, not per event.
    """
    try:
        from pydantic_core import PydanticSerializationError, to_json
    except ImportError:  # pragma: no cover - pydantic is installed in the test environment
        return _stdlib_json

    def encode(value: object) -> str:
        try:
            text = to_json(value)
        except PydanticSerializationError as exc:
            raise TypeError(
                f"event data of type {type(value).__name__} is not JSON serializable: {exc}"
            ) from None
        # to_json has no mode that refuses NaN; "constants" writes NaN/Infinity, which is not
        # JSON. Only when such a token appears at all, compare with the "null" rendering: if
        # they differ, a float really was not finite.
        if (b"NaN" in text or b"Infinity" in text) and text != to_json(value, inf_nan_mode="null"):
            raise ValueError("event data contains NaN or an infinity, which JSON cannot represent")
        return text.decode("utf-8")

    return encode


def json_text(value: object) -> str:
    """The compact JSON text of ``value`` (UTF-8, no spaces), as event data is encoded.

    >>> json_text({"a": [1, 2]})
    '{"a":[1,2]}'
    """
    return _json_encoder()(value)


# -- the wire format ----------------------------------------------------------------------


def _lines(prefix: str, text: str) -> str:
    """``prefix`` + each line of ``text``; CRLF, CR and LF all end a line (WHATWG 9.2.5)."""
    if "\n" not in text and "\r" not in text:
        return prefix + text + "\n"
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return prefix + ("\n" + prefix).join(lines) + "\n"


def _encode_fields(
    text: str | None, event: str | None, id: str | None, retry: int | None, comment: str | None
) -> bytes:
    """The bytes of one whole event: its fields, then the blank line that dispatches it."""
    if (
        event is None
        and retry is None
        and comment is None
        and text is not None
        and "\n" not in text
        and "\r" not in text
    ):
        # The common case (one line of data, maybe an id) in one concatenation.
        if id is None:
            return f"data: {text}\n\n".encode()
        return f"data: {text}\nid: {id}\n\n".encode()
    parts = []
    if comment is not None:
        parts.append(_lines(": ", comment))
    if event is not None:
        parts.append("event: " + event + "\n")
    if text is not None:
        parts.append(_lines("data: ", text))
    if id is not None:
        parts.append("id: " + id + "\n")
    if retry is not None:
        parts.append(f"retry: {retry}\n")
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def _check_name(value: object, name: str, forbidden: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"ServerSentEvent {name} must be {_FIELD_TYPES}, not {type(value).__name__}")
    for char in forbidden:
        if char in value:
            raise ValueError(
                f"ServerSentEvent {name} must not contain {char!r} (it would end the field early or "
                f"be ignored by the client): {value!r:.80}"
            )
    return str.__str__(value)


class ServerSentEvent:
    """One server-sent event, immutable, validated and encoded when it is built.

    ``data`` that is a ``str`` is sent as it is (split into one ``data:`` line per line);
    ``None`` sends no ``data:`` line (an event without data is not dispatched by browsers,
    but its ``id`` and ``retry`` still count); anything else (dict, list, dataclass, pydantic
    model, number) is JSON-encoded as FastAPI does, compactly. NaN or an infinity in it raises
    ``ValueError``; an object JSON cannot represent raises ``TypeError``.

    ``event`` (the type, ``message`` when absent) must not contain CR or LF; ``id`` must not
    contain CR, LF or NUL (``ValueError`` naming the field); ``retry`` is the reconnection time
    in milliseconds, a non-negative ``int``. ``comment`` is sent as ``:`` lines, which clients
    ignore; an event with only a comment is a keep-alive.

    Example::

        ServerSentEvent({"price": 12.5}, event="tick", id="42")
        # event: tick
        # data: {"price":12.5}
        # id: 42
        #
        ServerSentEvent("two\\nlines")  # data: two / data: lines
    """

    # Private slots behind read-only properties: assignment raises AttributeError, and
    # __init__ stores plain slots (an overridden __setattr__ would triple its cost). The
    # fields most events leave out live in `_more`, None when they are all absent and the
    # data is the text sent, so the common event costs four stores.
    __slots__ = ("_data", "_id", "_more", "_wire")
    _data: Any
    _id: str | None
    #: (data text, event, retry, comment), or None: no event, retry or comment, text = data.
    _more: tuple[str | None, str | None, int | None, str | None] | None
    _wire: bytes

    def __init__(
        self,
        data: Any = None,
        *,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
        comment: str | None = None,
    ) -> None:
        self._data = data
        if type(data) is str and event is None and retry is None and comment is None:
            # The common cases, one line of text with or without an id: build the wire text,
            # then check it has exactly its own line ends (no CR, LF or NUL came with a field).
            if id is None:
                wire = f"data: {data}\n\n"
                simple = wire.count("\n") == 2 and "\r" not in wire
            elif type(id) is str:
                wire = f"data: {data}\nid: {id}\n\n"
                simple = wire.count("\n") == 3 and "\r" not in wire and "\0" not in id
            else:
                simple = False
            if simple:
                self._id = id
                self._more = None
                try:
                    self._wire = wire.encode()
                except UnicodeEncodeError as exc:
                    raise _not_utf8(exc) from None
                return
        if data is None:
            text = None
        elif type(data) is str:
            text = data
        elif isinstance(data, str):
            text = str.__str__(data)  # the text of a str subclass (an enum member, say)
        else:
            text = json_text(data)
        if id is not None and (type(id) is not str or "\n" in id or "\r" in id or "\0" in id):
            id = _check_name(id, "id", "\r\n\0")
        if event is not None:
            event = _check_name(event, "event", "\r\n")
        if retry is not None:
            retry = _check_retry(retry)
        if comment is not None:
            comment = _check_name(comment, "comment", "")
        self._id = id
        self._more = (text, event, retry, comment)
        try:
            self._wire = _encode_fields(text, event, id, retry, comment)
        except UnicodeEncodeError as exc:
            raise _not_utf8(exc) from None

    @property
    def data(self) -> Any:
        """The data as given: a str, or the object whose JSON is sent (``None``: no data)."""
        return self._data

    @property
    def event(self) -> str | None:
        """The event type (``None``: the client dispatches it as ``message``)."""
        more = self._more
        return None if more is None else more[1]

    @property
    def id(self) -> str | None:
        """The event ID, which the client sends back as ``Last-Event-ID`` when it reconnects."""
        return self._id

    @property
    def retry(self) -> int | None:
        """The reconnection time, in milliseconds, that this event sets in the client."""
        more = self._more
        return None if more is None else more[2]

    @property
    def comment(self) -> str | None:
        """The comment sent as ``:`` lines (ignored by clients)."""
        more = self._more
        return None if more is None else more[3]

    @property
    def data_text(self) -> str | None:
        """The data as it is sent: the str itself, or the JSON text of any other object."""
        more = self._more
        return self._data if more is None else more[0]

    def with_id(self, id: str | None) -> ServerSentEvent:
        """A copy of this event with another ``id``; the data is not encoded again.

        Example::

            ServerSentEvent("hi").with_id("7")  # == ServerSentEvent("hi", id="7")
        """
        id = _check_name(id, "id", "\r\n\0")
        copy = object.__new__(ServerSentEvent)
        copy._data = self._data
        copy._id = id
        copy._more = self._more
        copy._wire = _encode_fields(self.data_text, self.event, id, self.retry, self.comment)
        return copy

    def encode(self) -> bytes:
        """The UTF-8 bytes of this event on the wire, ending with the blank line.

        Example::

            assert ServerSentEvent("hi", id="1").encode() == b"data: hi\\nid: 1\\n\\n"
        """
        return self._wire

    def _fields(self) -> tuple[Any, ...]:
        return (self._data, self.event, self._id, self.retry, self.comment)

    def __eq__(self, other: object) -> bool:
        if type(other) is not ServerSentEvent:
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        names = ("data", "event", "id", "retry", "comment")
        fields = zip(names, self._fields(), strict=True)
        shown = [f"{name}={value!r}" for name, value in fields if value is not None]
        return f"ServerSentEvent({', '.join(shown)})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickling (multiprocessing, caches) rebuilds the event through its validation.
        return (_rebuild, self._fields())


def _not_utf8(exc: UnicodeEncodeError) -> ValueError:
    return ValueError(f"ServerSentEvent text must be valid Unicode (UTF-8 encodable): {exc}")


def _check_retry(retry: object) -> int:
    if isinstance(retry, bool) or not isinstance(retry, int):
        raise TypeError(f"ServerSentEvent retry must be an int or None, not {type(retry).__name__}")
    if retry < 0:
        raise ValueError(f"ServerSentEvent retry must be a non-negative number of milliseconds, got {retry}")
    return int(retry)


def _rebuild(
    data: Any, event: str | None, id: str | None, retry: int | None, comment: str | None
) -> ServerSentEvent:
    return ServerSentEvent(data, event=event, id=id, retry=retry, comment=comment)


def _fastapi_event_class() -> type | None:
    # An instance of fastapi.sse.ServerSentEvent can only exist once that module was imported,
    # so looking in sys.modules is enough and never imports FastAPI for users without it.
    module = sys.modules.get("fastapi.sse")
    event_class = getattr(module, "ServerSentEvent", None)
    return event_class if isinstance(event_class, type) else None


def from_fastapi(item: Any) -> ServerSentEvent:
    """Our event for a ``fastapi.sse.ServerSentEvent``, with FastAPI's meaning of its fields.

    FastAPI JSON-encodes ``data`` even when it is a str (``"hello"`` goes out quoted) and
    sends ``raw_data`` as it is; both are kept here, so a FastAPI endpoint moved to
    ``EventSourceResponse`` sends the same events.
    """
    raw = item.raw_data
    if raw is not None:
        text = raw
    elif item.data is not None:
        text = json_text(item.data)
    else:
        text = None
    return ServerSentEvent(text, event=item.event, id=item.id, retry=item.retry, comment=item.comment)


def as_event(item: object) -> ServerSentEvent:
    """Any stream item as a :class:`ServerSentEvent` (bytes are refused: they have no fields)."""
    if type(item) is ServerSentEvent:
        return item
    if isinstance(item, (bytes, bytearray, memoryview)):
        raise TypeError("pre-encoded bytes cannot be turned into a ServerSentEvent; pass the event itself")
    fastapi_event = _fastapi_event_class()
    if fastapi_event is not None and isinstance(item, fastapi_event):
        return from_fastapi(item)
    return ServerSentEvent(item)


def encode_event(event: ServerSentEvent) -> bytes:
    """The wire bytes of one :class:`ServerSentEvent` (UTF-8, ending with a blank line).

    >>> encode_event(ServerSentEvent("a\\nb", event="note"))
    b'event: note\\ndata: a\\ndata: b\\n\\n'
    """
    if not isinstance(event, ServerSentEvent):
        raise TypeError(f"encode_event() takes a ServerSentEvent, not {type(event).__name__}")
    return event._wire


def encode_item(item: object) -> bytes:
    """The wire bytes of one item of an event stream.

    * a :class:`ServerSentEvent`: its encoding;
    * a ``str``: a data-only event with that text;
    * ``bytes`` (or ``bytearray``/``memoryview``): sent as they are. They must be whole events
      in the wire format (ending with a blank line), for example ones encoded in advance;
    * a ``fastapi.sse.ServerSentEvent``: encoded with FastAPI's meaning of its fields;
    * anything else: a data-only event whose data is the item's JSON.

    >>> encode_item({"n": 1})
    b'data: {"n":1}\\n\\n'
    """
    kind = type(item)
    if kind is ServerSentEvent:
        return item._wire  # type: ignore[attr-defined,no-any-return]
    if kind is str:
        text: str = item  # type: ignore[assignment]
        if "\n" not in text and "\r" not in text:
            try:
                return f"data: {text}\n\n".encode()
            except UnicodeEncodeError:
                pass  # the event's own check raises the clear error below
    if kind is bytes:
        return item  # type: ignore[return-value]
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, ServerSentEvent):  # pragma: no cover - the class is final in practice
        return item._wire
    return as_event(item)._wire


def encode_items(items: Iterable[object]) -> bytes:
    """The wire bytes of many items at once (the same as joining ``encode_item`` of each)."""
    return b"".join(map(encode_item, items))


# -- producers ------------------------------------------------------------------------------


class _EncodingAsyncProducer(AsyncIterableProducer):
    """An async iterable of items, each encoded by the core's hot loop on its way into the queue."""

    encode = staticmethod(encode_item)


class _EncodingIterator(Iterator[bytes]):
    """A sync iterator of items, encoded as the core's worker thread pulls them in batches."""

    __slots__ = ("_iterator", "_source")

    def __init__(self, source: Iterable[Any]) -> None:
        self._source = source
        self._iterator: Iterator[Any] | None = None

    def __iter__(self) -> _EncodingIterator:
        return self

    def __next__(self) -> bytes:
        iterator = self._iterator
        if iterator is None:
            iterator = self._iterator = iter(self._source)
        return encode_item(next(iterator))

    def close(self) -> None:
        target: object = self._iterator if self._iterator is not None else self._source
        close = getattr(target, "close", None)
        if close is not None:
            close()


def _event_producer(content: Any) -> Producer:
    """The producer of an event stream: its items encoded, whatever the kind of ``content``."""
    if isinstance(content, AsyncIterable):
        return _EncodingAsyncProducer(content)
    if isinstance(content, (list, tuple)):
        # Every item exists already: encode them now, so a bad one fails in the endpoint.
        return make_producer([encode_items(content)] if content else [])
    if isinstance(content, Iterable) and not isinstance(content, (str, bytes, bytearray, memoryview)):
        return make_producer(_EncodingIterator(content))
    # What is left is a writer callable (StreamingResponse.__init__ refused anything else).
    writer = content

    async def encoding_writer(write: Write) -> None:
        async def send_event(item: Any) -> None:
            await write(encode_item(item))

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


def _error_chunk_maker(error_event: ErrorEvent) -> Callable[[BaseException], bytes | None] | None:
    if error_event is None:
        return None
    if isinstance(error_event, ServerSentEvent):
        chunk = error_event.encode()
        return lambda error: chunk
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
    JSON). Use it as a return value or as ``response_class=`` of a FastAPI generator endpoint.

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
        timeout: float | None = None,
        idle_timeout: float | None = None,
        duplex: bool = False,
        on_outcome: OutcomeCallback | None = None,
    ) -> None:
        if headers is not None:
            for name in headers:
                if name.lower().encode("latin-1") in _CONNECTION_FIELDS:
                    raise ValueError(
                        f"an event stream must not set the {name!r} header: HTTP/2 and HTTP/3 forbid "
                        "connection-specific fields (RFC 9113 §8.2.2); the server manages the connection"
                    )
        super().__init__(
            content,
            status_code,
            headers,
            media_type,
            background,
            timeout=timeout,
            idle_timeout=idle_timeout,
            duplex=duplex,
            on_outcome=on_outcome,
            on_shutdown=on_shutdown,
        )
        self.producer = _event_producer(content)
        self.ping = parse_timeout(ping, "ping")
        if not isinstance(ping_comment, str):
            raise TypeError(f"ping_comment must be a str, not {type(ping_comment).__name__}")
        self.ping_comment = ping_comment
        self.send_timeout = parse_timeout(send_timeout, "send_timeout")
        self.error_event = error_event
        self._error_chunk = _error_chunk_maker(error_event)
        if shutdown_event is not None and not isinstance(shutdown_event, ServerSentEvent):
            raise TypeError(
                f"shutdown_event must be a ServerSentEvent or None, not {type(shutdown_event).__name__}"
            )
        self.shutdown_event = shutdown_event
        self._keepalive_chunk = ServerSentEvent(comment=ping_comment).encode()
        present = {name for name, _ in self.raw_headers}
        # Caches must not store a live stream; X-Accel-Buffering: no tells nginx not to buffer it.
        if b"cache-control" not in present:
            self.raw_headers.append((b"cache-control", b"no-cache"))
        if b"x-accel-buffering" not in present:
            self.raw_headers.append((b"x-accel-buffering", b"no"))

    def pump_settings(self) -> PumpSettings:
        """The core settings of an event stream: immediate start, pings, error and last events."""
        settings = super().pump_settings()
        headers = settings.raw_headers
        if any(name.lower() in _CONNECTION_FIELDS for name, _ in headers):
            # A Connection header added after construction (FastAPI copies the headers of its
            # Response parameter onto ours) is dropped rather than sent over HTTP/2.
            headers = [(name, value) for name, value in headers if name.lower() not in _CONNECTION_FIELDS]
        return dataclasses.replace(
            settings,
            raw_headers=headers,
            start_immediately=self.start_immediately,
            opening_chunk=self.opening_chunk,
            keepalive=self.ping,
            keepalive_chunk=self._keepalive_chunk,
            send_timeout=self.send_timeout,
            error_chunk=self._error_chunk,
            shutdown_chunk=None if self.shutdown_event is None else self.shutdown_event.encode(),
        )
