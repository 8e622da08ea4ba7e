"""``StreamingResponse``: Starlette's class, driven by the chunk pump, and the base of every adapter.

This module owns the public constructor and the shape every response class follows; it sends
nothing itself. An adapter:

* keeps an explicit keyword signature (FastAPI reads it for OpenAPI) and hands its arguments to
  :meth:`StreamingResponse._setup` with the shared options taken from them in one call,
  ``StreamOptions.from_arguments(locals())``;
* overrides :meth:`StreamingResponse.make_producer` to turn its content into a producer
  (items into bytes), and :meth:`StreamingResponse.pump_settings` to add core settings;
* or, when the body depends on the request (a file's ranges), overrides
  :meth:`StreamingResponse.prepare`, which returns the plan of one call explicitly.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse as StarletteStreamingResponse

from ._compression import CompressOption
from ._core import ChunkPump, OutcomeCallback, PumpSettings
from ._options import StreamOptions, parse_content_length
from ._outcome import Outcome, StreamOutcome
from ._producers import Producer, make_producer
from ._shutdown import ShutdownPolicy
from ._types import Content, RawHeaders, Receive, Scope, Send

#: The header most responses send, built once.
_NOSNIFF = (b"x-content-type-options", b"nosniff")

#: The ``Content-Type`` headers of the library's own classes, built once and shared.
_SHARED_CONTENT_TYPES = {
    value: (b"content-type", value)
    for value in (
        b"text/event-stream; charset=utf-8",
        b"text/plain; charset=utf-8",
        b"text/csv; charset=utf-8",
        b"application/jsonl",
        b"application/x-ndjson",
        b"text/html; charset=utf-8",
    )
}


def _share_content_type(headers: RawHeaders) -> None:
    """Replace a common ``Content-Type`` header by its shared copy (a stream holds its headers
    for as long as it is open)."""
    for index, (name, value) in enumerate(headers):
        if name == b"content-type":
            shared = _SHARED_CONTENT_TYPES.get(value)
            if shared is not None:
                headers[index] = shared
            return


#: Outcomes after which the background task runs: the response was not a failure.
_RUN_BACKGROUND = frozenset({Outcome.COMPLETE, Outcome.DISCONNECTED, Outcome.SHUTDOWN})


@dataclass(frozen=True)
class CallPlan:
    """What one call of a response sends: the core's settings and the producer of the body."""

    settings: PumpSettings
    producer: Producer


class StreamingResponse(StarletteStreamingResponse):
    """A streaming response that is correct under disconnects and errors, and fast.

    A drop-in for :class:`starlette.responses.StreamingResponse` (same positional arguments),
    taking a sync iterable, an async iterable, or a *writer*: an async callable that receives
    ``write`` and awaits it for each chunk. Chunks may be ``bytes``, ``str`` (encoded with
    :attr:`charset`) or ``memoryview``.

    Example::

        async def numbers():
            for n in range(1_000):
                yield f"{n}\\n"

        @app.get("/numbers")
        async def numbers_endpoint():
            return StreamingResponse(numbers(), media_type="text/plain", idle_timeout=10)

        async def produce(write):  # the push style
            await write(b"hello ")
            await write(b"world")

        StreamingResponse(produce)

    Keyword arguments:

    * ``content_length``: the exact body size; sent as ``Content-Length`` and enforced.
    * ``timeout`` / ``idle_timeout``: seconds for the whole response / between two chunks;
      running out ends the stream as an error (:class:`~streaming_responses.StreamTimeout`).
    * ``duplex``: set it when the producer itself reads ``request.stream()``; the core then
      leaves ``receive()`` to the producer instead of listening for the disconnect.
    * ``on_outcome``: a plain or async callable given one
      :class:`~streaming_responses.StreamOutcome` when the response ends, for metrics.
    * ``on_shutdown``: what a server shutdown (SIGTERM/SIGINT, or
      :func:`~streaming_responses.end_all_streams`) does to the response: ``"wait"`` (the
      default: the server waits for it, as for any response), ``"end"`` (finish the body now;
      only for streams whose clients treat any end as normal, like event feeds) or ``"abort"``
      (cut it off, so a client cannot mistake it for a complete body).
    * ``compress``: compress the stream, each message flushed so that nothing is delayed:
      ``False`` (the default here: a drop-in does not change behaviour), ``True`` (negotiate
      zstd, br or gzip from ``Accept-Encoding``; a tie goes to them in that order), a sequence
      of the encodings allowed in preference order (``("br", "gzip")``), or a mapping that also
      sets their levels (``{"zstd": 6, "gzip": None}``). See the compression guide.
    """

    #: Upper bound, in bytes, of the chunks joined into one ASGI message (and of what is
    #: buffered ahead of a slow client). A single larger chunk is sent whole, never split.
    message_bytes: ClassVar[int] = 64 * 1024
    #: Whether headers go out before the first chunk exists (server-sent events set it).
    start_immediately: ClassVar[bool] = False
    #: The ``X-Content-Type-Options`` value sent unless the headers set one (``None``: none).
    #: Browsers sniff the type of a ``text/plain`` body and show nothing of it until about
    #: 512 bytes arrived (WHATWG MIME Sniffing §7); ``nosniff`` lets each line show as it comes.
    content_type_options: ClassVar[bytes | None] = b"nosniff"

    content: Content

    def __init__(
        self,
        content: Content,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
        *,
        content_length: int | None = None,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        duplex: bool = False,
        on_outcome: OutcomeCallback | None = None,
        on_shutdown: ShutdownPolicy | str = ShutdownPolicy.WAIT,
        compress: CompressOption = False,
    ) -> None:
        self._setup(
            content, status_code, headers, media_type, background, StreamOptions.from_arguments(locals())
        )

    def _setup(
        self,
        content: Content,
        status_code: int,
        headers: Mapping[str, str] | None,
        media_type: str | None,
        background: BackgroundTask | None,
        options: StreamOptions,
    ) -> None:
        """What every constructor does: keep the arguments, then build the producer."""
        self._setup_response(status_code, headers, media_type, background, options)
        self.content = content
        self.producer: Producer = self.make_producer(content)

    def _setup_response(
        self,
        status_code: int,
        headers: Mapping[str, str] | None,
        media_type: str | None,
        background: BackgroundTask | None,
        options: StreamOptions,
    ) -> None:
        """Keep the status, headers, media type, background task and shared options."""
        self.status_code = status_code
        self.media_type = self.media_type if media_type is None else media_type
        self.background = background
        self.init_headers(headers)
        _share_content_type(self.raw_headers)
        nosniff = self.content_type_options
        if nosniff is not None and all(name != b"x-content-type-options" for name, _ in self.raw_headers):
            header = _NOSNIFF if nosniff == b"nosniff" else (b"x-content-type-options", nosniff)
            self.raw_headers.append(header)
        declared = self._take_content_length_header()
        if options.content_length is not None:
            declared = options.content_length
        self.options = options
        self.content_length = declared
        self.outcome: StreamOutcome | None = None

    def make_producer(self, content: Content) -> Producer:
        """The producer of ``content``: the hook an adapter overrides to turn items into bytes."""
        return make_producer(content)

    @property
    def timeout(self) -> float | None:
        """Seconds the whole response may take (``timeout=``)."""
        return self.options.timeout

    @property
    def idle_timeout(self) -> float | None:
        """Seconds the producer may be silent between two chunks (``idle_timeout=``)."""
        return self.options.idle_timeout

    @property
    def on_shutdown(self) -> ShutdownPolicy:
        """What server shutdown does to this response (``on_shutdown=``)."""
        return self.options.on_shutdown

    def _take_content_length_header(self) -> int | None:
        # A Content-Length header given by hand is a declared length like content_length=;
        # it is removed here and sent by the core, so the response never carries two.
        declared: int | None = None
        headers = self.raw_headers
        if all(name != b"content-length" for name, _ in headers):
            return None  # the list is kept as it is: most responses have no such header
        kept = []
        for name, value in headers:
            if name == b"content-length":
                declared = parse_content_length(value, source="the Content-Length header")
            else:
                kept.append((name, value))
        self.raw_headers = kept
        return declared

    def pump_settings(self) -> PumpSettings:
        """The settings handed to the core for this response."""
        return self._settings()

    def _settings(self, **changes: Any) -> PumpSettings:
        """This response's :class:`PumpSettings`, with an adapter's ``changes`` (built once)."""
        options = self.options
        fields: dict[str, Any] = {
            "status_code": self.status_code,
            "raw_headers": self.raw_headers,
            "charset": self.charset,
            "declared_length": self.content_length,
            "timeout": options.timeout,
            "idle_timeout": options.idle_timeout,
            "duplex": options.duplex,
            "message_bytes": self.message_bytes,
            "start_immediately": self.start_immediately,
            "send_timeout": options.send_timeout,
            "shutdown": options.on_shutdown,
            "compress": options.compress,
        }
        fields.update(changes)
        return PumpSettings(**fields)

    async def prepare(self, scope: Scope) -> CallPlan:
        """The plan of one call: the hook for responses whose body depends on the request."""
        return CallPlan(self.pump_settings(), self.producer)

    def __call__(  # type: ignore[override]  # a coroutine, not an async def (see below)
        self, scope: Scope, receive: Receive, send: Send
    ) -> Coroutine[Any, Any, object]:
        if scope["type"] != "http":
            raise TypeError(f"{type(self).__name__} serves HTTP only, not a {scope['type']!r} scope")
        # A header set after construction (response.headers["content-length"] = ...) counts too.
        late = self._take_content_length_header()
        if late is not None:
            self.content_length = late
        if self.background is None and type(self).prepare is StreamingResponse.prepare:
            # The usual case hands the server the pump's own coroutine: an open stream (an idle
            # event stream, for hours) then keeps no frame of this method. Its result, the
            # outcome, is ignored by servers as any result of an ASGI application is.
            return self._pump(self.pump_settings(), self.producer).run(scope, receive, send)
        return self._serve(scope, receive, send)

    def _pump(self, settings: PumpSettings, producer: Producer) -> ChunkPump:
        return ChunkPump(settings, producer, self.options.on_outcome, name=type(self).__name__, holder=self)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A call with a body that depends on the request (:meth:`prepare`) or a background task."""
        plan = await self.prepare(scope)
        pump = self._pump(plan.settings, plan.producer)
        outcome = await pump.run(scope, receive, send)
        if self.background is not None and outcome.error is None and outcome.kind in _RUN_BACKGROUND:
            await self.background()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} status_code={self.status_code} content={self.content!r}>"
