"""Server-sent events as data: the event object and its wire encoding.

This module owns the ``text/event-stream`` format (WHATWG HTML, "Server-sent events"): what an
event may contain and how it is written as bytes. The rule that keeps it simple: an event is
validated and encoded *once*, when it is built, into whole-event bytes; everything after that
(the response, the broker, many subscribers in many processes) only moves those bytes. It
imports neither Starlette nor the core, so a process that only publishes needs nothing else.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any

from ._json import json_text

_FIELD_TYPES = "a str or None"

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


#: Optional whitespace around a header value (RFC 9110 §5.6.3), which clients trim.
_OWS = " \t"


def _check_id(value: object) -> str | None:
    """An event id the client can send back: no CR, LF or NUL, no space or tab at either end.

    A browser sends the id back in the ``Last-Event-ID`` header, and HTTP trims whitespace at
    the ends of a field value (RFC 9110 §5.5): an id with it could never be found again.
    """
    checked = _check_name(value, "id", "\r\n\0")
    if checked and (checked[0] in _OWS or checked[-1] in _OWS):
        raise ValueError(
            "ServerSentEvent id must not start or end with a space or tab: the client sends it back in "
            f"the Last-Event-ID header, which HTTP trims, so it could never be resumed: {checked!r:.80}"
        )
    return checked


class ServerSentEvent:
    """One server-sent event, immutable, validated and encoded when it is built.

    ``data`` that is a ``str`` is sent as it is (split into one ``data:`` line per line);
    ``None`` sends no ``data:`` line (an event without data is not dispatched by browsers,
    but its ``id`` and ``retry`` still count); anything else (dict, list, dataclass, pydantic
    model, number) is JSON-encoded as FastAPI does, compactly. NaN or an infinity in it raises
    ``ValueError``; an object JSON cannot represent raises ``TypeError``.

    ``event`` (the type, ``message`` when absent) must not contain CR or LF; ``id`` must not
    contain CR, LF or NUL, nor start or end with a space or tab, which the ``Last-Event-ID``
    header it comes back in would lose (``ValueError`` naming the field); ``retry`` is the reconnection time
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
        self._id = id
        # The common events, one line of text with or without an id, on a short path: it
        # accepts only what `_build` accepts and writes the same bytes (a test compares them).
        # A printable id holds no CR, LF, NUL or lone surrogate (all are non-printable), and
        # one without spaces cannot start or end with one. Anything else goes to `_build`.
        if (
            type(data) is str
            and event is None
            and retry is None
            and comment is None
            and "\n" not in data
            and "\r" not in data
        ):
            wire: str | None
            if id is None:
                wire = f"data: {data}\n\n"
            elif type(id) is str and id.isprintable() and " " not in id:
                wire = f"data: {data}\nid: {id}\n\n"
            else:
                wire = None
            if wire is not None:
                self._more = None
                try:
                    self._wire = wire.encode()
                except UnicodeEncodeError as exc:  # a lone surrogate in the data
                    raise _not_utf8(exc) from None
                return
        self._build(data, event, id, retry, comment)

    def _build(
        self, data: Any, event: str | None, id: str | None, retry: int | None, comment: str | None
    ) -> None:
        """Check and encode every field: the path of events that are not one line of text."""
        if data is None:
            text = None
        elif type(data) is str:
            text = data
        elif isinstance(data, str):
            text = str.__str__(data)  # the text of a str subclass (an enum member, say)
        else:
            text = json_text(data)
        if id is not None:
            id = _check_id(id)
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
        id = None if id is None else _check_id(id)
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


#: The keys of an event given as a dict of its fields (sse-starlette's form of an item).
FIELD_NAMES = ("data", "event", "id", "retry", "comment")


def event_from_fields(fields: Mapping[str, Any]) -> ServerSentEvent:
    """The event whose fields ``fields`` names: ``{"data": "hi", "id": "1"}`` is
    ``ServerSentEvent("hi", id="1")``. Every field is checked as in :class:`ServerSentEvent`;
    a key that is not one of :data:`FIELD_NAMES` raises ``TypeError`` naming it.

    >>> event_from_fields({"data": "hi", "id": "1"}).encode()
    b'data: hi\\nid: 1\\n\\n'
    """
    try:
        return ServerSentEvent(**fields)
    except TypeError:
        unknown = [key for key in fields if key not in FIELD_NAMES]
        if unknown:
            raise TypeError(
                f"an event given as a dict of fields takes only the keys {', '.join(FIELD_NAMES)}; "
                f"this one also has {', '.join(map(repr, unknown))}"
            ) from None
        raise


def encode_fields_item(item: object) -> bytes:
    """:func:`encode_item`, except that a dict is an event's fields (:func:`event_from_fields`)
    instead of JSON data.

    >>> encode_fields_item({"data": "hi", "event": "greeting"})
    b'event: greeting\\ndata: hi\\n\\n'
    """
    if isinstance(item, dict):
        return event_from_fields(item)._wire
    return encode_item(item)


def encode_items(items: Iterable[object]) -> bytes:
    """The wire bytes of many items at once (the same as joining ``encode_item`` of each)."""
    return b"".join(map(encode_item, items))
