"""StreamingHTTPMiddleware: the call_next style without hiding a failed stream, and the warning
that Starlette's BaseHTTPMiddleware gets."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import anyio
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from streaming_responses import EventSourceResponse, StreamingHTTPMiddleware, StreamingResponse, _deployment
from tests.asgi import Recorder, http_scope

pytestmark = pytest.mark.anyio


async def fails_after_start(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b"first\n"
        await anyio.sleep(0.01)
        raise RuntimeError("the database went away")

    return StreamingResponse(body(), media_type="text/plain")


async def complete(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b"one\n"
        await anyio.sleep(0.01)
        yield b"two\n"

    return StreamingResponse(body(), media_type="text/plain")


async def missing(request: Request) -> Response:
    async def events() -> AsyncIterator[str]:
        raise HTTPException(404, "unknown model")
        yield ""  # pragma: no cover

    return EventSourceResponse(events())


async def echo(request: Request) -> Response:
    return JSONResponse({"body": (await request.body()).decode()})


async def tag(request: Request, call_next: object) -> Response:
    response: Response = await call_next(request)  # type: ignore[operator]
    response.headers["x-tag"] = "seen"
    return response


def make_app(middleware: list[Middleware]) -> Starlette:
    routes = [
        Route("/fails", fails_after_start),
        Route("/complete", complete),
        Route("/missing", missing),
        Route("/echo", echo, methods=["POST"]),
    ]
    return Starlette(routes=routes, middleware=middleware)


async def call(app: Starlette, path: str, method: str = "GET", body: bytes = b"") -> tuple[Recorder, object]:
    recorder = Recorder(body_messages=[{"type": "http.request", "body": body}])
    scope = http_scope(method)
    scope["path"] = path
    scope["raw_path"] = path.encode()
    error: object = None
    try:
        await app(scope, recorder.receive, recorder.send)
    except Exception as exc:
        error = exc
    return recorder, error


OURS = [Middleware(StreamingHTTPMiddleware, dispatch=tag)]
STACKED = [
    Middleware(StreamingHTTPMiddleware, dispatch=tag),
    Middleware(GZipMiddleware, minimum_size=1),
    Middleware(CORSMiddleware, allow_origins=["*"]),
]


@pytest.mark.parametrize("middleware", [OURS, STACKED], ids=["alone", "with-gzip-and-cors"])
async def test_a_stream_failing_after_its_start_is_never_ended_cleanly(middleware: list[Middleware]) -> None:
    recorder, error = await call(make_app(middleware), "/fails")
    assert recorder.start["status"] == 200
    assert (b"x-tag", b"seen") in recorder.start["headers"]
    assert isinstance(error, RuntimeError)
    assert not recorder.ended  # the server aborts: the client never sees a clean end


async def test_starlettes_base_http_middleware_ends_the_same_failure_cleanly() -> None:
    # What the replacement exists for: with BaseHTTPMiddleware the failed body looks complete.
    recorder, error = await call(make_app([Middleware(BaseHTTPMiddleware, dispatch=tag)]), "/fails")
    assert recorder.ended
    assert isinstance(error, RuntimeError)


async def test_a_complete_stream_passes_through_whole_with_the_dispatch_headers() -> None:
    recorder, error = await call(make_app(OURS), "/complete")
    assert error is None
    assert recorder.body == b"one\ntwo\n"
    assert recorder.ended
    assert recorder.headers[b"x-tag"] == b"seen"
    assert recorder.headers[b"content-type"] == b"text/plain; charset=utf-8"


async def test_an_error_before_the_start_reaches_the_exception_handlers_with_its_status() -> None:
    recorder, error = await call(make_app(OURS), "/missing")
    assert error is None
    assert recorder.start["status"] == 404


async def test_a_body_read_in_dispatch_still_reaches_the_endpoint() -> None:
    async def reads_first(request: Request, call_next: object) -> Response:
        assert await request.body() == b"payload"
        response: Response = await call_next(request)  # type: ignore[operator]
        return response

    app = make_app([Middleware(StreamingHTTPMiddleware, dispatch=reads_first)])
    recorder, error = await call(app, "/echo", "POST", b"payload")
    assert error is None
    assert recorder.body == b'{"body":"payload"}'


async def test_a_dispatch_that_answers_itself_leaves_no_inner_task_waiting() -> None:
    async def replaces(request: Request, call_next: object) -> Response:
        await call_next(request)  # type: ignore[operator]
        return PlainTextResponse("replaced")

    with anyio.fail_after(10):
        recorder, error = await call(
            make_app([Middleware(StreamingHTTPMiddleware, dispatch=replaces)]), "/complete"
        )
    assert error is None
    assert recorder.body == b"replaced"


async def test_being_wrapped_by_base_http_middleware_is_warned_about_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_deployment, "_GIVEN", set())
    app = make_app([Middleware(BaseHTTPMiddleware, dispatch=tag), Middleware(GZipMiddleware, minimum_size=1)])
    with caplog.at_level(logging.WARNING, logger="streaming_responses"):
        await call(app, "/complete")
        await call(app, "/complete")
    warnings = [r for r in caplog.records if "BaseHTTPMiddleware" in r.getMessage()]
    assert len(warnings) == 1
    assert "StreamingHTTPMiddleware" in warnings[0].getMessage()


async def test_our_middleware_is_not_mistaken_for_base_http_middleware(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_deployment, "_GIVEN", set())
    with caplog.at_level(logging.WARNING, logger="streaming_responses"):
        await call(make_app(STACKED), "/complete")
    assert not [r for r in caplog.records if "BaseHTTPMiddleware" in r.getMessage()]


async def test_a_failure_relayed_through_the_middleware_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="streaming_responses"):
        await call(make_app(OURS), "/fails")
    records = [r for r in caplog.records if r.name == "streaming_responses" and r.levelno == logging.ERROR]
    assert len(records) == 1
    assert "the database went away" in records[0].getMessage()
