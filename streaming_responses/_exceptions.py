"""Every exception the library raises, in one tree.

Each names what went wrong in its message, so that a log line alone is enough to act on. All of
them derive from :class:`StreamError`, so one ``except`` clause can catch the family; where a
built-in class says the same thing (a timeout, a lookup, a step out of order), it is a base too,
so code written against the built-in keeps working::

    StreamError
    ├── ContentLengthError          the body did not match the declared length
    ├── StreamTimeout               timeout, idle_timeout or send_timeout ran out (TimeoutError)
    ├── StreamShutdown              cut off by server shutdown under on_shutdown="abort"
    ├── CompressionError            the compressor of a stream failed
    ├── ResponseStateError          a step out of order (RuntimeError)
    ├── FileResponseError           a file that cannot be served (RuntimeError)
    │   └── FileChangedError        the file changed while it was served
    ├── BrokerError                 the event broker could not do what was asked
    │   ├── BrokerClosed            publish or subscribe after close() (RuntimeError)
    │   ├── BrokerUnavailable       the broker's engine (Redis) cannot be reached (ConnectionError)
    │   ├── EventsLost              a Last-Event-ID that cannot be resumed exactly (LookupError)
    │   └── SubscriberTooSlow       a subscriber that fell behind its buffer
    ├── StreamNotFound              no resumable stream has this id, or it expired (LookupError)
    ├── UnsupportedEventLoop        resumable streams need asyncio; trio is running (RuntimeError)
    ├── ASGIProtocolError           the app broke the ASGI protocol (testing client; RuntimeError)
    └── StreamAborted               the body ended before it was complete (testing client)

The rule that keeps it simple: an exception is defined here and nowhere else; modules raise
these, never a bare ``RuntimeError``.
"""

from __future__ import annotations


class StreamError(Exception):
    """Base class of every error raised by streaming_responses."""


class ContentLengthError(StreamError):
    """The body did not match the declared ``content_length``.

    Raised when a producer yields more bytes than declared (the extra bytes are never sent) or
    ends with fewer. Either way the client sees a response that ends short, never one that
    looks complete.
    """

    def __init__(self, declared: int, produced: int, *, ended: bool) -> None:
        self.declared = declared
        self.produced = produced
        if ended:
            detail = f"the body ended after {produced} bytes"
        else:
            detail = f"the body ran past it, reaching {produced} bytes"
        super().__init__(f"content_length={declared} was declared but {detail}")


class StreamTimeout(StreamError, TimeoutError):
    """The response ran longer than ``timeout``, or waited longer than ``idle_timeout`` or
    ``send_timeout``.

    ``kind`` is ``"timeout"`` (the whole response), ``"idle_timeout"`` (between two chunks) or
    ``"send_timeout"`` (one ``send()``: the client stopped reading).
    """

    def __init__(self, kind: str, seconds: float) -> None:
        self.kind = kind
        self.seconds = seconds
        what = {
            "timeout": "the response took",
            "idle_timeout": "the producer was silent for",
            "send_timeout": "the client did not read for",
        }.get(kind, "waited")
        super().__init__(f"{what} longer than {kind}={seconds:g}s")


class StreamShutdown(StreamError):
    """The server shut down (or :func:`~streaming_responses.end_all_streams` was called) and
    the response's shutdown policy was to cut it off, so it cannot look complete."""

    def __init__(self) -> None:
        super().__init__("the stream was cut off because the server is shutting down")


class CompressionError(StreamError):
    """The compressor of a stream failed; the stream ends as an error (trailers or an abort).

    The bytes already sent decode to a prefix of the body; the coded stream is never ended as
    if it were complete. ``coding`` is the content coding (``"zstd"``, ``"br"``, ``"gzip"``).
    """

    def __init__(self, coding: str, cause: BaseException) -> None:
        self.coding = coding
        super().__init__(f"compressing the stream with {coding} failed: {type(cause).__name__}: {cause}")


class ResponseStateError(StreamError, RuntimeError):
    """A step happened out of order: the response was sent twice, or written after it ended."""


class FileResponseError(StreamError, RuntimeError):
    """The file cannot be served: it does not exist, is not a regular file, or cannot be read.

    Raised from the response call before anything is sent, so the application's exception
    handlers answer (a 500 by default; a 404 for a missing file is the application's decision,
    made before it returns the response). A :class:`RuntimeError`, like Starlette's error for
    the same cases, with the same messages.

    Example::

        try:
            await FileResponse("/missing.txt")(scope, receive, send)
        except FileResponseError as exc:
            print(exc)  # File at path /missing.txt does not exist.
    """


class FileChangedError(FileResponseError):
    """The file changed while it was served: it was replaced after its ``stat``, or it ended early.

    A file that shrinks mid-response can no longer fill the declared ``Content-Length``; the
    stream ends as an error (the connection is aborted), never as a short body that looks
    complete.
    """


class BrokerError(StreamError):
    """Base class of the event broker's errors."""


class BrokerClosed(BrokerError, RuntimeError):
    """``publish()`` or ``subscribe()`` was called on a broker after ``close()``/``aclose()``
    (or ``start()`` on :class:`~streaming_responses.ResumableStreams` after ``aclose()``)."""

    def __init__(self, operation: str, what: str = "EventBroker") -> None:
        self.operation = operation
        super().__init__(f"{operation}() on a closed {what}")


class BrokerUnavailable(BrokerError, ConnectionError):
    """The broker's engine (a Redis server) did not answer: nothing was published or replayed.

    ``publish()`` raises it when Redis is unreachable or does not answer within ``timeout``
    seconds, so an event is never dropped silently; a subscription raises it when Redis stayed
    unreachable for longer than ``stall_timeout`` seconds (an event stream then ends with its
    error event, and the browser reconnects and resumes once Redis is back). The message names
    the server and the cause; the engine's own exception is the ``__cause__``.

    Example::

        try:
            await broker.publish(event)
        except BrokerUnavailable:
            return JSONResponse({"error": "try again"}, status_code=503)
    """

    def __init__(self, where: str, detail: str) -> None:
        self.where = where
        self.detail = detail
        super().__init__(f"the event broker at {where} is unavailable: {detail}")


class SubscriberTooSlow(BrokerError):
    """The subscription fell more than ``subscriber_buffer`` events behind and was dropped.

    Raised by the subscription's iterator. In an event stream, let it propagate (the client
    gets the error event, reconnects with its ``Last-Event-ID`` and is replayed what it
    missed from the history), or catch it and ``return`` to end the stream normally, which
    makes a browser reconnect the same way.

    Example::

        try:
            async for event in events:
                yield event
        except SubscriberTooSlow:
            return  # the browser reconnects and resumes from the history
    """

    def __init__(self, buffer: int) -> None:
        self.buffer = buffer
        super().__init__(
            f"the subscriber fell more than subscriber_buffer={buffer} events behind and was dropped"
        )


class EventsLost(BrokerError, LookupError):
    """A subscription cannot continue exactly: events after its position are not in the history.

    Raised when a subscription is entered (or first iterated) with a ``Last-Event-ID`` that
    cannot be replayed exactly: the events after it are older than the history keeps, the id
    was never published on these topics (another broker, another topic, a restarted
    in-process broker), it is malformed, or the Redis data was lost in a restart. Raised from
    the iterator of a live subscription when the engine lost events it had not delivered yet.
    The stream should tell the client to reload its state, then subscribe without an id.

    Example::

        try:
            async with broker.subscribe(last_event_id(request)) as events:
                async for event in events:
                    yield event
        except EventsLost:
            yield ServerSentEvent(event="reset")  # the page reloads what it shows
    """

    def __init__(self, last_event_id: str, reason: str | None = None) -> None:
        self.last_event_id = last_event_id
        self.reason = reason or "too old, or never published here"
        super().__init__(
            f"cannot resume after event id {last_event_id!r}: it is not in the broker's history "
            f"({self.reason})"
        )


class StreamNotFound(StreamError, LookupError):
    """No resumable stream has this id: it never existed, or it ended more than ``keep``
    seconds ago and expired.

    :meth:`ResumableStreams.cancel` raises it, and so does iterating
    :meth:`ResumableStreams.attach`; an attach returned as a response answers 404 instead,
    through the application's exception handlers.

    Example::

        try:
            await streams.cancel(stream_id)
        except StreamNotFound:
            raise HTTPException(404)
    """

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        super().__init__(f"no resumable stream {stream_id!r:.80}: it never existed, or it expired")


class UnsupportedEventLoop(StreamError, RuntimeError):
    """Resumable streams were used on an event loop they do not run on (trio).

    :class:`~streaming_responses.ResumableStreams` runs its jobs as asyncio tasks that outlive
    the request, and the Redis broker runs on asyncio only (uvicorn, granian, hypercorn's
    default workers); on hypercorn ``-k trio`` it refuses to be made or used, instead of
    failing later.
    """

    def __init__(self, what: str, loop: str) -> None:
        self.loop = loop
        super().__init__(
            f"{what} needs asyncio (uvicorn, granian, hypercorn's asyncio workers), but {loop} is running: "
            "its jobs are asyncio tasks that outlive the request, and the Redis broker runs on asyncio only"
        )


class ASGIProtocolError(StreamError, RuntimeError):
    """The app broke the ASGI HTTP protocol, as a strict server would report it.

    Raised by :mod:`streaming_responses.testing` into the app from ``send()`` (where uvicorn
    raises ``RuntimeError``), and raised again to the test, at the latest when the ``stream()``
    block ends, even if the app caught it. The message names the offending ASGI message.

    Example::

        with pytest.raises(ASGIProtocolError, match="http.response.body sent before"):
            await client.get("/broken")
    """


class StreamAborted(StreamError):
    """The response ended before its body was complete (raised by the testing client).

    This is what a real HTTP/1.1 client sees as a chunked body that never terminates (curl
    exits with code 18): the app raised after ``http.response.start``, returned without the
    final ``http.response.body``, or stopped before its declared trailers. When the app raised,
    its exception is the ``__cause__``.

    Example::

        async with client.stream("GET", "/fails-midway") as response:
            with pytest.raises(StreamAborted) as info:
                await response.read()
        assert isinstance(info.value.__cause__, ValueError)
    """
