"""StreamingResponse as users meet it: in Starlette and FastAPI apps, and its constructor."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import fastapi
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import StreamingResponse as StarletteStreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from streaming_responses import Outcome, StreamingResponse, StreamOutcome
from streaming_responses._types import Write
from tests.asgi import Recorder, http_scope


def app_with(endpoint: Any) -> Starlette:
    return Starlette(routes=[Route("/", endpoint, methods=["GET", "POST", "HEAD"])])


def test_it_is_a_drop_in_subclass_of_starlettes_class() -> None:
    response = StreamingResponse(iter([b"x"]), 201, {"x-a": "1"}, "text/csv", None)
    assert isinstance(response, StarletteStreamingResponse)
    assert response.status_code == 201
    assert response.headers["x-a"] == "1"
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.media_type == "text/csv"


def test_an_http_exception_before_the_first_yield_answers_with_its_status() -> None:
    async def endpoint(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            raise HTTPException(404, "no such report")
            yield b""  # pragma: no cover

        return StreamingResponse(body())

    with TestClient(app_with(endpoint)) as client:
        response = client.get("/")
    assert response.status_code == 404
    assert response.text == "no such report"


def test_any_other_exception_before_the_first_yield_answers_500() -> None:
    def endpoint(request: Request) -> StreamingResponse:
        def body() -> Iterator[bytes]:
            raise RuntimeError("boom")
            yield b""  # pragma: no cover

        return StreamingResponse(body())

    with TestClient(app_with(endpoint), raise_server_exceptions=False) as client:
        response = client.get("/")
    assert response.status_code == 500


FASTAPI_VERSION = tuple(int(part) for part in fastapi.__version__.split(".")[:2])


@pytest.mark.skipif(FASTAPI_VERSION < (0, 134), reason="generator endpoints arrived in FastAPI 0.134")
def test_fastapi_hands_a_generator_endpoint_to_the_response_class() -> None:
    app = FastAPI()

    @app.get("/numbers", response_class=StreamingResponse)
    async def numbers() -> AsyncIterator[str]:
        for n in range(3):
            yield f"{n}\n"

    with TestClient(app) as client:
        response = client.get("/numbers")
        schema = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.text == "0\n1\n2\n"
    assert schema.status_code == 200
    assert "/numbers" in schema.json()["paths"]


def test_fastapi_endpoints_may_return_the_response_directly() -> None:
    app = FastAPI()

    @app.get("/")
    def index() -> StreamingResponse:
        return StreamingResponse(iter(["a", "b"]), media_type="text/plain", content_length=2)

    with TestClient(app) as client:
        response = client.get("/")
    assert response.text == "ab"
    assert response.headers["content-length"] == "2"


def test_trailers_reach_starlettes_test_client_on_http2() -> None:
    async def endpoint(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"ok"
            await anyio.sleep(0.01)
            yield b"!"

        return StreamingResponse(body())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["http_version"] = "2"
        scope.setdefault("extensions", {})["http.response.trailers"] = {}
        await app_with(endpoint)(scope, receive, send)

    with TestClient(app) as client:
        response = client.get("/", headers={"te": "trailers"})
    assert response.text == "ok!"
    assert response.headers["trailer"] == "stream-status, stream-error"


@pytest.mark.anyio
async def test_background_tasks_run_after_a_complete_stream_but_not_after_an_error() -> None:
    ran: list[str] = []

    async def body() -> AsyncIterator[bytes]:
        yield b"x"
        await anyio.sleep(0.01)
        raise RuntimeError("late")

    await StreamingResponse([b"ok"], background=BackgroundTask(ran.append, "complete"))(
        http_scope(), Recorder().receive, Recorder().send
    )
    recorder = Recorder()
    with pytest.raises(RuntimeError):
        await StreamingResponse(body(), background=BackgroundTask(ran.append, "error"))(
            http_scope(), recorder.receive, recorder.send
        )
    assert ran == ["complete"]


@pytest.mark.anyio
async def test_a_websocket_scope_is_refused_with_a_clear_error() -> None:
    recorder = Recorder()
    with pytest.raises(TypeError, match="serves HTTP only, not a 'websocket' scope"):
        await StreamingResponse([b"x"])({"type": "websocket"}, recorder.receive, recorder.send)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"bytes", "not a single bytes; wrap it in a list"),
        ("text", "not a single str"),
        (42, "not int"),
    ],
)
def test_content_that_is_not_a_stream_is_refused_naming_its_type(content: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        StreamingResponse(content)


def test_bad_lengths_and_timeouts_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="content_length must be a non-negative integer, got -1"):
        StreamingResponse([], content_length=-1)
    with pytest.raises(ValueError, match="the Content-Length header must be a non-negative integer"):
        StreamingResponse([], headers={"content-length": "lots"})
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        StreamingResponse([], timeout=0)
    with pytest.raises(TypeError, match="idle_timeout must be a number of seconds"):
        StreamingResponse([], idle_timeout="5")  # type: ignore[arg-type]


def test_a_generator_function_passed_uncalled_is_refused_with_a_hint() -> None:
    async def rows() -> AsyncIterator[bytes]:
        yield b"x"  # pragma: no cover

    def lines() -> Iterator[bytes]:
        yield b"x"  # pragma: no cover

    with pytest.raises(TypeError, match=r"generator function 'rows'.*StreamingResponse\(rows\(\)\)"):
        StreamingResponse(rows)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generator function 'lines'"):
        StreamingResponse(lines)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_content_length_header_set_after_construction_is_declared_once() -> None:
    response = StreamingResponse([b"abc"])
    response.headers["content-length"] = "3"
    recorder = Recorder()
    await response(http_scope(), recorder.receive, recorder.send)
    assert [k for k, _ in recorder.start["headers"]].count(b"content-length") == 1
    assert recorder.headers[b"content-length"] == b"3"
    assert recorder.body == b"abc"


def test_the_keyword_content_length_wins_over_a_header() -> None:
    response = StreamingResponse([b"abc"], headers={"content-length": "9"}, content_length=3)
    assert response.content_length == 3
    assert "content-length" not in response.headers


def test_repr_names_the_class_status_and_content() -> None:
    assert repr(StreamingResponse([b"a"], 202)) == "<StreamingResponse status_code=202 content=[b'a']>"


def test_a_writer_endpoint_works_in_a_starlette_app() -> None:
    outcomes: list[StreamOutcome] = []

    async def endpoint(request: Request) -> StreamingResponse:
        async def produce(write: Write) -> None:
            for word in ("push", " ", "style"):
                await write(word)

        return StreamingResponse(produce, media_type="text/plain", on_outcome=outcomes.append)

    with TestClient(app_with(endpoint)) as client:
        response = client.get("/")
    assert response.text == "push style"
    assert [o.outcome for o in outcomes] == [Outcome.COMPLETE]


def test_a_subclass_changes_settings_through_class_attributes() -> None:
    class Small(StreamingResponse):
        message_bytes = 8
        media_type = "text/plain"

    response = Small(iter([b"x"]))
    assert response.pump_settings().message_bytes == 8
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


# -- X-Content-Type-Options ----------------------------------------------------------------------


def _every_class(tmp_path: Any) -> list[Any]:
    from streaming_responses import (
        CSVResponse,
        EventSourceResponse,
        FileResponse,
        JSONLinesResponse,
        StreamingTemplates,
    )

    (tmp_path / "page.html").write_text("<p>{{ n }}</p>")
    (tmp_path / "data.txt").write_text("hello")
    templates = StreamingTemplates(directory=str(tmp_path))
    request = Request(http_scope())
    return [
        StreamingResponse(iter([b"x"]), media_type="text/plain"),
        EventSourceResponse(iter(["x"])),
        FileResponse(tmp_path / "data.txt"),
        CSVResponse(iter([(1, 2)])),
        JSONLinesResponse(iter([{"a": 1}])),
        templates.stream(request, "page.html", {"n": 1}),
    ]


def test_every_class_sends_nosniff_by_default(tmp_path: Any) -> None:
    for response in _every_class(tmp_path):
        assert (b"x-content-type-options", b"nosniff") in response.raw_headers, type(response).__name__


def test_a_content_type_options_header_given_by_the_user_wins() -> None:
    response = StreamingResponse(iter([b"x"]), headers={"X-Content-Type-Options": "other"})
    assert [v for k, v in response.raw_headers if k == b"x-content-type-options"] == [b"other"]


@pytest.mark.anyio
async def test_a_subclass_can_turn_nosniff_off_with_its_class_attribute() -> None:
    class Sniffable(StreamingResponse):
        content_type_options = None

    recorder = Recorder()
    await Sniffable(iter([b"x"]))(http_scope(), recorder.receive, recorder.send)
    assert b"x-content-type-options" not in recorder.headers
