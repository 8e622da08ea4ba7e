"""One log record per failed stream, and the filter that drops the server's copy of it."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from streaming_responses import (
    CSVResponse,
    DuplicateStreamErrorFilter,
    Outcome,
    StreamingResponse,
    StreamOutcome,
)
from streaming_responses._logs import log_failed_stream
from streaming_responses._types import ASGIApp, Receive, Scope, Send
from streaming_responses.testing import StreamAborted, StreamingTestClient

pytestmark = pytest.mark.anyio


async def fails_after_a_chunk(request: Request) -> AsyncIterator[str]:
    yield "row 1\n"
    # Fail only once the client has the first chunk, so the headers are out for sure.
    await request.state.first_chunk_read.wait()
    raise RuntimeError("the database went away")


async def broken(request: Request) -> StreamingResponse:
    return StreamingResponse(fails_after_a_chunk(request), media_type="text/plain")


async def stalls(request: Request) -> CSVResponse:
    async def rows() -> AsyncIterator[list[str]]:
        yield ["a", "b"]
        await anyio.sleep(60)
        yield ["never", "sent"]  # pragma: no cover

    return CSVResponse(rows(), idle_timeout=0.05)


async def completes(request: Request) -> StreamingResponse:
    return StreamingResponse(["all ", "good\n"], media_type="text/plain")


app = Starlette(routes=[Route("/broken", broken), Route("/stalls.csv", stalls), Route("/fine", completes)])


class FirstChunkRead:
    """ASGI middleware giving each request an event the test sets once it read the first chunk."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.event = anyio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {})["first_chunk_read"] = self.event
        await self.app(scope, receive, send)


async def fetch_failing(path: str, target: ASGIApp = app) -> None:
    wrapped = FirstChunkRead(target)
    client = StreamingTestClient(wrapped, raise_app_exceptions=False)
    async with client.stream("GET", path) as response:
        chunks = response.iter_bytes()
        assert await chunks.__anext__()
        wrapped.event.set()
        with pytest.raises(StreamAborted):
            await response.read()


def library_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name.startswith("streaming_responses")]


async def test_a_stream_that_fails_after_its_start_writes_one_error_record_with_its_facts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="streaming_responses"):
        await fetch_failing("/broken")
    [record] = library_records(caplog)
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith("GET /broken: StreamingResponse failed (error) after 6 bytes in ")
    assert record.getMessage().endswith(" s: RuntimeError: the database went away")
    assert record.__dict__["stream_class"] == "StreamingResponse"
    assert record.__dict__["stream_outcome"] == "error"
    assert record.__dict__["stream_bytes"] == 6
    assert record.__dict__["stream_duration"] > 0
    assert (record.__dict__["stream_method"], record.__dict__["stream_path"]) == ("GET", "/broken")
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


async def test_the_traceback_is_written_once_and_every_line_belongs_to_the_one_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="streaming_responses"):
        await fetch_failing("/broken")
    text = caplog.text
    assert text.count("Traceback (most recent call last)") == 1
    assert text.count("RuntimeError: the database went away") == 2  # the message and the traceback's end
    assert text.startswith("ERROR    streaming_responses")


async def test_a_timeout_after_the_start_is_logged_with_its_outcome_and_class(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="streaming_responses"):
        await fetch_failing("/stalls.csv")
    [record] = library_records(caplog)
    assert record.__dict__["stream_class"] == "CSVResponse"
    assert record.__dict__["stream_outcome"] == "timeout"
    assert "CSVResponse failed (timeout) after 5 bytes" in record.getMessage()
    assert "StreamTimeout" in record.getMessage()


async def test_a_complete_stream_and_a_failure_before_the_start_write_no_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def before(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[str]:
            raise LookupError("no such report")
            yield "never"  # pragma: no cover

        return StreamingResponse(body())

    client = StreamingTestClient(Starlette(routes=[Route("/before", before), Route("/fine", completes)]))
    with caplog.at_level(logging.DEBUG, logger="streaming_responses"):
        assert (await client.get("/fine")).text == "all good\n"
        with pytest.raises(LookupError):
            await client.get("/before")
    assert library_records(caplog) == []


def error_record(error: BaseException, name: str = "uvicorn.error") -> logging.LogRecord:
    try:
        raise error
    except BaseException:
        exc_info = sys.exc_info()
    message = "Exception in ASGI application\n"
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, (), exc_info)


async def test_the_filter_drops_the_servers_record_of_an_exception_the_library_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[BaseException] = []

    def keep(outcome: StreamOutcome) -> None:
        assert outcome.error is not None
        seen.append(outcome.error)

    async def endpoint(request: Request) -> StreamingResponse:
        return StreamingResponse(fails_after_a_chunk(request), on_outcome=keep)

    with caplog.at_level(logging.DEBUG, logger="streaming_responses"):
        await fetch_failing("/", Starlette(routes=[Route("/", endpoint)]))
    [logged] = seen
    duplicate_filter = DuplicateStreamErrorFilter()
    assert not duplicate_filter.filter(error_record(logged))
    assert duplicate_filter.filter(error_record(RuntimeError("another failure")))
    started = logging.LogRecord("uvicorn.error", logging.INFO, "", 1, "Application started", (), None)
    assert duplicate_filter.filter(started)


async def test_the_filter_looks_inside_the_exception_group_of_a_middlewares_task_group() -> None:
    outcome = StreamOutcome(Outcome.ERROR, 200, 6, 0.5, None, False, error=RuntimeError("logged"))
    log_failed_stream(outcome, "StreamingResponse", "GET", "/")
    assert outcome.error is not None
    duplicate_filter = DuplicateStreamErrorFilter()
    assert not duplicate_filter.filter(error_record(await raised_by_a_task_group(outcome.error)))
    mixed = await raised_by_a_task_group(outcome.error, ValueError("not logged"))
    assert duplicate_filter.filter(error_record(mixed))


async def raised_by_a_task_group(*errors: BaseException) -> BaseException:
    """What a task group raises when its tasks raise ``errors`` (an exception group)."""

    async def fail(error: BaseException) -> None:
        await anyio.lowlevel.checkpoint()
        raise error

    try:
        async with anyio.create_task_group() as task_group:
            for error in errors:
                task_group.start_soon(fail, error)
    except BaseException as group:
        return group
    raise AssertionError("the task group did not raise")
