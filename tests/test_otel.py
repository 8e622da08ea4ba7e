"""OpenTelemetry: one span per streamed response, open until the stream ends (SDK in-memory exporter)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.lowlevel
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from streaming_responses import Framing, JSONLinesResponse, Outcome, StreamingResponse, StreamOutcome
from streaming_responses.otel import StreamTracing, outcome_attributes
from streaming_responses.testing import StreamAborted, StreamingTestClient

pytestmark = pytest.mark.anyio


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def number(span: ReadableSpan, key: str) -> float:
    value = (span.attributes or {})[key]
    assert isinstance(value, (int, float))
    return value


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    [span] = exporter.get_finished_spans()
    return span


async def ticks(request: Request) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        n = 0
        while True:
            yield f"tick {n}\n"
            n += 1
            await anyio.sleep(0.01)

    return StreamingResponse(body(), media_type="text/plain")


async def test_the_span_stays_open_after_the_endpoint_returned_and_ends_when_the_client_leaves(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    app = StreamTracing(Starlette(routes=[Route("/ticks", ticks)]), tracer_provider=provider)
    async with StreamingTestClient(app).stream("GET", "/ticks") as response:
        chunks = response.iter_bytes()
        received = [await chunks.__anext__() for _ in range(3)]
        # The endpoint returned long ago and three chunks arrived: the stream is still going.
        assert exporter.get_finished_spans() == ()
        await response.disconnect()
    span = only_span(exporter)
    assert span.name == "StreamingResponse stream"
    attributes = dict(span.attributes or {})
    assert attributes["streaming.outcome"] == "disconnected"
    assert attributes["streaming.disconnect_reason"] == "disconnected"
    assert attributes["streaming.response_class"] == "StreamingResponse"
    assert attributes["http.response.status_code"] == 200
    assert attributes["http.request.method"] == "GET"
    assert attributes["url.path"] == "/ticks"
    assert attributes["streaming.framing"] == "chunked"
    assert number(span, "streaming.bytes_sent") >= len(b"".join(received))
    assert number(span, "streaming.chunks") >= 3
    assert span.status.status_code is StatusCode.UNSET
    [first_byte] = span.events
    assert first_byte.name == "first byte"
    assert span.start_time is not None
    assert span.end_time is not None
    assert span.start_time <= first_byte.timestamp <= span.end_time
    assert 0 <= number(span, "streaming.time_to_first_byte") <= (span.end_time - span.start_time) / 1e9


async def test_a_complete_stream_records_its_bytes_chunks_and_first_byte_and_nests_the_producers_spans(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    tracer = provider.get_tracer("test")
    outcomes: list[StreamOutcome] = []

    async def report(request: Request) -> StreamingResponse:
        async def rows() -> AsyncIterator[str]:
            for n in range(3):
                with tracer.start_as_current_span(f"query {n}"):
                    await anyio.lowlevel.checkpoint()
                yield f"row {n}\n"

        return StreamingResponse(rows(), media_type="text/csv", on_outcome=outcomes.append)

    app = StreamTracing(Starlette(routes=[Route("/report", report)]), tracer_provider=provider)
    with tracer.start_as_current_span("request") as request_span:
        response = await StreamingTestClient(app).get("/report")
    assert response.text == "row 0\nrow 1\nrow 2\n"
    spans = {span.name: span for span in exporter.get_finished_spans()}
    stream = spans["StreamingResponse stream"]
    [outcome] = outcomes
    assert stream.attributes is not None
    assert stream.attributes["streaming.outcome"] == "complete"
    assert stream.attributes["streaming.bytes_sent"] == len(response.body) == outcome.bytes_sent
    body_messages = [message for message in response.messages if message["type"] == "http.response.body"]
    assert stream.attributes["streaming.chunks"] == outcome.messages == len(body_messages)
    assert stream.attributes["streaming.time_to_first_byte"] == outcome.first_byte
    assert "streaming.disconnect_reason" not in stream.attributes
    assert stream.parent is not None
    assert stream.parent.span_id == request_span.get_span_context().span_id
    for n in range(3):
        query = spans[f"query {n}"]
        assert query.parent is not None
        assert query.parent.span_id == stream.context.span_id


async def test_a_failure_after_the_start_records_the_exception_once_and_an_error_status(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    first_chunk_read = anyio.Event()

    async def broken(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[str]:
            yield "row 1\n"
            await first_chunk_read.wait()
            raise RuntimeError("the database went away")

        return StreamingResponse(body())

    app = StreamTracing(Starlette(routes=[Route("/broken", broken)]), tracer_provider=provider)
    async with StreamingTestClient(app, raise_app_exceptions=False).stream("GET", "/broken") as response:
        assert await response.iter_bytes().__anext__() == b"row 1\n"
        first_chunk_read.set()
        with pytest.raises(StreamAborted):
            await response.read()
    span = only_span(exporter)
    assert span.attributes is not None
    assert span.attributes["streaming.outcome"] == "error"
    assert span.attributes["streaming.bytes_sent"] == 6
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "RuntimeError: the database went away"
    exceptions = [event for event in span.events if event.name == "exception"]
    assert len(exceptions) == 1
    assert exceptions[0].attributes is not None
    assert exceptions[0].attributes["exception.type"] == "RuntimeError"


async def test_a_fastapi_generator_endpoint_is_traced_through_add_middleware(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    app = FastAPI()
    app.add_middleware(StreamTracing, tracer_provider=provider)

    @app.get("/items.jsonl", response_class=JSONLinesResponse)
    async def items() -> AsyncIterator[dict[str, int]]:
        for n in range(3):
            yield {"n": n}

    response = await StreamingTestClient(app).get("/items.jsonl")
    assert response.text == '{"n":0}\n{"n":1}\n{"n":2}\n'
    span = only_span(exporter)
    assert span.name == "JSONLinesResponse stream"
    assert span.attributes is not None
    assert span.attributes["streaming.outcome"] == "complete"
    assert span.attributes["streaming.bytes_sent"] == len(response.body)


async def test_responses_of_other_classes_and_other_scopes_pass_through_untraced(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    async def plain(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = StreamTracing(Starlette(routes=[Route("/plain", plain)]), tracer_provider=provider)
    assert (await StreamingTestClient(app).get("/plain")).json() == {"ok": True}
    seen: list[str] = []

    async def lifespan_app(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(str(scope["type"]))
        assert "streaming_responses.observer" not in scope

    await StreamTracing(lifespan_app, tracer_provider=provider)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]
    assert exporter.get_finished_spans() == ()


def test_outcome_attributes_say_how_a_stream_ended_from_the_outcome_alone() -> None:
    cases = [
        (
            StreamOutcome(
                Outcome.COMPLETE, 200, 10, 0.5, Framing.CONTENT_LENGTH, False, first_byte=0.1, messages=1
            ),
            {
                "streaming.outcome": "complete",
                "streaming.bytes_sent": 10,
                "streaming.chunks": 1,
                "streaming.trailers": False,
                "http.response.status_code": 200,
                "streaming.framing": "content-length",
                "streaming.time_to_first_byte": 0.1,
            },
        ),
        (
            StreamOutcome(
                Outcome.TIMEOUT,
                200,
                7,
                9.0,
                Framing.CHUNKED,
                False,
                first_byte=0.2,
                messages=3,
                client_gone="stopped-reading",
            ),
            {
                "streaming.outcome": "timeout",
                "streaming.bytes_sent": 7,
                "streaming.chunks": 3,
                "streaming.trailers": False,
                "http.response.status_code": 200,
                "streaming.framing": "chunked",
                "streaming.time_to_first_byte": 0.2,
                "streaming.disconnect_reason": "stopped-reading",
            },
        ),
        (
            StreamOutcome(Outcome.ERROR, None, 0, 0.01, None, False, error=LookupError("x")),
            {
                "streaming.outcome": "error",
                "streaming.bytes_sent": 0,
                "streaming.chunks": 0,
                "streaming.trailers": False,
            },
        ),
    ]
    for outcome, expected in cases:
        assert outcome_attributes(outcome) == expected


def test_without_the_opentelemetry_api_the_import_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "streaming_responses.otel")
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"pip install 'streaming-responses\[otel\]'"):
        importlib.import_module("streaming_responses.otel")
