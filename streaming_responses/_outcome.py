"""How a streamed response ended, as plain data for logs and metrics.

The core builds exactly one :class:`StreamOutcome` per response and hands it to the
``on_outcome`` callback; nothing else in the library reports endings, so a metrics exporter
needs this one hook only. A tracer needs one more thing, a place to start: the
:data:`StreamObserver` a middleware leaves in the ASGI scope wraps the whole run of each
streamed response of that request and is given its outcome (``streaming_responses.otel``).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from ._framing import Framing
from ._types import Scope


class Outcome(enum.Enum):
    """The five ways a streamed response can end (:attr:`StreamOutcome.kind`)."""

    #: Every byte was handed to the server and the body was terminated properly.
    COMPLETE = "complete"
    #: The client went away first; the producer was closed.
    DISCONNECTED = "disconnected"
    #: The producer (or the core's checks) raised; the client was told (trailers) or cut off.
    ERROR = "error"
    #: ``timeout``, ``idle_timeout`` or ``send_timeout`` ran out; handled like an error.
    TIMEOUT = "timeout"
    #: Server shutdown (or ``end_all_streams()``) ended the stream, as its policy says.
    SHUTDOWN = "shutdown"


@dataclass(frozen=True)
class StreamOutcome:
    """The record of one response, passed to ``on_outcome``.

    Example::

        def record(outcome: StreamOutcome) -> None:
            metrics.histogram("stream.seconds", outcome.duration, tags=[outcome.kind.value])

        StreamingResponse(rows(), on_outcome=record)
    """

    #: How the response ended.
    kind: Outcome
    #: The status code sent, or ``None`` when the stream failed before its headers were sent.
    status_code: int | None
    #: Body bytes handed to the server (what the client can have received at most), counted
    #: before any content coding: the bytes the producer made.
    bytes_sent: int
    #: Seconds from the start of the response call to its end.
    duration: float
    #: The framing chosen, or ``None`` when no headers were sent.
    framing: Framing | None
    #: Whether the stream ended with trailer fields.
    trailers: bool
    #: The exception behind ``ERROR`` and ``TIMEOUT`` outcomes, else ``None``.
    error: BaseException | None = None
    #: Seconds from the start of the response call to the response start (``None``: not sent).
    first_byte: float | None = None
    #: Body messages handed to the server.
    messages: int = 0
    #: Why the client was taken as gone: ``"disconnected"`` (it closed the connection) or
    #: ``"stopped-reading"`` (a send took longer than ``send_timeout``); ``None`` otherwise.
    client_gone: str | None = None
    #: The content coding the body was sent with (``"zstd"``, ``"br"``, ``"gzip"``), or ``None``.
    content_encoding: str | None = None
    #: Body bytes handed to the server after the content coding (the bytes on the wire, without
    #: HTTP framing); the same as ``bytes_sent`` for a body sent as it is.
    encoded_bytes: int | None = None

    @property
    def started(self) -> bool:
        """Whether the response headers were sent."""
        return self.status_code is not None

    @property
    def outcome(self) -> Outcome:
        """The same as :attr:`kind` (the name this field had first)."""
        return self.kind


#: The callback type of ``on_outcome``: a plain or async function of one StreamOutcome.
OutcomeCallback = Callable[[StreamOutcome], "Awaitable[object] | object"]

#: The ASGI scope key under which a middleware leaves a :data:`StreamObserver` for the streamed
#: responses of that request.
OBSERVER_SCOPE_KEY = "streaming_responses.observer"

#: Called by the core with the response class's name and the scope when a streamed response
#: starts running; the context manager it returns stays open until the response has ended, and
#: what it yields is called once with the :class:`StreamOutcome` (before the context exits,
#: also when the response call then raises).
StreamObserver = Callable[[str, Scope], AbstractContextManager[Callable[[StreamOutcome], None]]]
