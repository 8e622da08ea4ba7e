"""OpenTelemetry tracing of streamed responses: one span per stream, open until the stream ends.

This module owns :class:`StreamTracing`, an ASGI middleware that leaves a stream observer in
the scope of each HTTP request. The core calls the observer when one of this library's
responses starts running, keeps its span current while the body streams (spans your producer
opens are its children), and hands it the :class:`~streaming_responses.StreamOutcome` at the
end. The rule that keeps it simple: everything the span says comes from that outcome
(:func:`outcome_attributes`), and the span ends when the stream ends, never when the endpoint
returns. It needs the OpenTelemetry API: ``pip install 'streaming-responses[otel]'``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeAlias

try:
    from opentelemetry import trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
except ImportError as exc:
    raise ImportError(
        "streaming_responses.otel needs the OpenTelemetry API: pip install 'streaming-responses[otel]'"
    ) from exc

from streaming_responses import __version__
from streaming_responses._outcome import OBSERVER_SCOPE_KEY, StreamOutcome
from streaming_responses._types import ASGIApp, Receive, Scope, Send

__all__ = ("StreamTracing", "outcome_attributes")

#: The value types a span attribute may have.
AttributeValue: TypeAlias = "str | bool | int | float"

#: The name of the tracer (its instrumentation scope).
TRACER_NAME = "streaming_responses"


def outcome_attributes(outcome: StreamOutcome) -> dict[str, AttributeValue]:
    """The span attributes that describe how a stream ended, from its outcome alone.

    ``streaming.outcome`` (``complete``, ``disconnected``, ``error``, ``timeout``,
    ``shutdown``), ``streaming.bytes_sent``, ``streaming.chunks`` (body messages handed to the
    server, after coalescing), ``streaming.time_to_first_byte`` (seconds from the response
    call to its headers; absent when none were sent), ``streaming.disconnect_reason``
    (``disconnected``: the client closed the connection, ``stopped-reading``: a send outlasted
    ``send_timeout``; absent otherwise), ``streaming.framing``, ``streaming.trailers`` and
    ``http.response.status_code``.

    Example::

        outcome = StreamOutcome(Outcome.DISCONNECTED, 200, 5, 1.5, None, False,
                                first_byte=0.25, messages=2, client_gone="disconnected")
        outcome_attributes(outcome)["streaming.disconnect_reason"]  # "disconnected"
    """
    attributes: dict[str, AttributeValue] = {
        "streaming.outcome": outcome.kind.value,
        "streaming.bytes_sent": outcome.bytes_sent,
        "streaming.chunks": outcome.messages,
        "streaming.trailers": outcome.trailers,
    }
    if outcome.status_code is not None:
        attributes["http.response.status_code"] = outcome.status_code
    if outcome.framing is not None:
        attributes["streaming.framing"] = outcome.framing.value
    if outcome.first_byte is not None:
        attributes["streaming.time_to_first_byte"] = outcome.first_byte
    if outcome.client_gone is not None:
        attributes["streaming.disconnect_reason"] = outcome.client_gone
    return attributes


class StreamTracing:
    """ASGI middleware: one OpenTelemetry span for each streamed response of the app it wraps.

    The span (kind ``INTERNAL``, named ``"<class> stream"``, a child of the request's server
    span when one is current) starts when the response starts running and ends when its body
    has ended: complete, disconnected, failed, timed out or shut down. It carries the
    attributes of :func:`outcome_attributes`, an event ``first byte`` at the moment the headers
    went out, and, for a failure, the exception (recorded once) and an ``ERROR`` status.
    Responses of other libraries pass through untraced.

    Example::

        from fastapi import FastAPI
        from streaming_responses.otel import StreamTracing

        app = FastAPI()
        app.add_middleware(StreamTracing)  # or StreamTracing(app, tracer_provider=provider)

    ``tracer_provider`` defaults to the global one (``opentelemetry.trace.set_tracer_provider``).
    """

    def __init__(self, app: ASGIApp, *, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.app = app
        self.tracer = trace.get_tracer(TRACER_NAME, __version__, tracer_provider=tracer_provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, OBSERVER_SCOPE_KEY: self.observe}
        await self.app(scope, receive, send)

    @contextmanager
    def observe(self, response_class: str, scope: Scope) -> Iterator[Callable[[StreamOutcome], None]]:
        """The stream observer: a span from the start of the response to its outcome."""
        started = time.time_ns()
        span = self.tracer.start_span(
            f"{response_class} stream",
            kind=SpanKind.INTERNAL,
            start_time=started,
            attributes={
                "streaming.response_class": response_class,
                "http.request.method": scope.get("method", "GET"),
                "url.path": scope.get("path", ""),
            },
        )
        outcomes: list[StreamOutcome] = []
        raised: BaseException | None = None
        try:
            # Current while the body streams, so the producer's own spans are its children.
            with trace.use_span(
                span, end_on_exit=False, record_exception=False, set_status_on_exception=False
            ):
                yield outcomes.append
        except BaseException as exc:
            raised = exc
            raise
        finally:
            if outcomes:
                _record_outcome(span, outcomes[0], started)
            elif raised is not None:  # the response failed before the core could report
                span.record_exception(raised)
                span.set_status(Status(StatusCode.ERROR, f"{type(raised).__name__}: {raised}"))
            span.end()


def _record_outcome(span: Span, outcome: StreamOutcome, started: int) -> None:
    span.set_attributes(outcome_attributes(outcome))
    if outcome.first_byte is not None:
        span.add_event("first byte", timestamp=started + round(outcome.first_byte * 1e9))
    error = outcome.error
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
