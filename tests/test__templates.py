from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import fastapi
import jinja2
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from streaming_responses import Framing, Outcome, StreamingTemplateResponse, StreamingTemplates, StreamOutcome
from streaming_responses._templates import (
    TemplateProducer,
    async_value,
    error_comment_chunk,
    sync_environment,
    sync_template,
)
from streaming_responses.testing import StreamAborted, StreamingTestClient, TestResponse

pytestmark = pytest.mark.anyio

TEMPLATES = Path(__file__).parent / "templates"
Endpoint = Callable[[Request], Awaitable[Response]]


def templates(**options: Any) -> StreamingTemplates:
    return StreamingTemplates(directory=TEMPLATES, **options)


def async_env() -> jinja2.Environment:
    """An async environment with this library's globals and filters (``flush``, ``await``)."""
    return StreamingTemplates(env=jinja2.Environment(enable_async=True)).env


def app_with(endpoint: Endpoint, **options: Any) -> Starlette:
    async def other(request: Request) -> Response:
        return PlainTextResponse("other")

    routes = [
        Route("/", endpoint),
        Route("/items/{item_id:int}", other, name="item"),
        Route("/static/{path:path}", other, name="static"),
    ]
    return Starlette(routes=routes, **options)


def page(
    context: Mapping[str, Any], name: str = "page.html", **options: Any
) -> tuple[Starlette, StreamingTemplates]:
    engine = templates(**options)

    async def endpoint(request: Request) -> Response:
        return engine.stream(request, name, context)

    return app_with(endpoint), engine


class Gate:
    """An async generator of rows that waits for the test before each row, and records its end."""

    def __init__(self, rows: list[str]) -> None:
        self.rows = rows
        self.opened = anyio.Event()
        self.finished = anyio.Event()
        self.started = False

    async def __call__(self) -> AsyncIterator[str]:
        self.started = True
        try:
            await self.opened.wait()
            for row in self.rows:
                yield row
        finally:
            self.finished.set()


# -- the head goes out before the body's data exists ----------------------------------------


async def test_the_head_is_sent_before_a_slow_async_iterable_yields_anything() -> None:
    gate = Gate(["one", "two"])
    app, _ = page({"title": "Rows", "rows": gate()})
    async with StreamingTestClient(app).stream("GET", "/") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        chunks = response.iter_bytes()
        head = await anext(chunks)
        assert b"</head>" in head
        assert b"<li>" not in head
        assert not gate.finished.is_set()
        gate.opened.set()
        rest = b"".join([chunk async for chunk in chunks])
    assert rest.count(b"<li>") == 2
    assert rest.endswith(b"</html>")
    assert response.framing is Framing.CHUNKED


async def test_the_head_is_its_own_message_even_when_the_body_renders_without_waiting() -> None:
    rows = [f"row {n}" for n in range(5_000)]
    app, _ = page({"title": "Many", "rows": rows})
    async with StreamingTestClient(app).stream("GET", "/") as response:
        chunks = response.iter_bytes()
        head = await anext(chunks)
        body = head + b"".join([chunk async for chunk in chunks])
    assert b"</head>" in head
    assert b"row 0" not in head
    assert body.count(b"<li>") == 5_000


async def test_a_body_that_renders_without_waiting_goes_out_in_whole_chunks_not_per_fragment() -> None:
    rows = [f"row {n}" for n in range(20_000)]
    app, _ = page({"title": "Many", "rows": rows})
    async with StreamingTestClient(app).stream("GET", "/") as response:
        chunks = [chunk async for chunk in response.iter_bytes()]
    body = b"".join(chunks)
    assert body.count(b"<li>") == 20_000
    # About 320 KiB in 64 KiB chunks (each list item is several fragments).
    assert len(chunks) <= len(body) // (64 * 1024) + 3
    assert max(map(len, chunks)) <= 2 * 64 * 1024


async def test_rows_go_out_as_the_async_iterable_yields_them() -> None:
    sent = anyio.Event()
    received: list[bytes] = []

    async def rows() -> AsyncIterator[str]:
        yield "first"
        await sent.wait()
        yield "second"

    app, _ = page({"title": "T", "rows": rows()})
    async with StreamingTestClient(app).stream("GET", "/") as response:
        chunks = response.iter_bytes()
        while b"first" not in b"".join(received):
            received.append(await anext(chunks))
        assert b"second" not in b"".join(received)
        sent.set()
        received.extend([chunk async for chunk in chunks])
    assert b"second" in b"".join(received)


async def test_a_small_page_without_a_flush_point_is_sent_whole_with_its_length() -> None:
    app, _ = page({"text": "a < b"}, name="plain.txt")
    response = await StreamingTestClient(app).get("/")
    assert response.framing is Framing.CONTENT_LENGTH
    assert response.text == "a < b"


async def test_text_without_a_flush_point_is_sent_once_it_reaches_the_byte_threshold() -> None:
    class Small(StreamingTemplateResponse):
        message_bytes = 1024

    env = jinja2.Environment(enable_async=True)
    template = env.from_string("{% for row in rows %}{{ row }}{% endfor %}")
    gate = Gate(["x" * 600] * 4)
    gate.opened.set()
    waiting = anyio.Event()

    async def rows() -> AsyncIterator[str]:
        async for row in gate():
            yield row
        await waiting.wait()
        yield "end"

    async def endpoint(request: Request) -> Response:
        return Small(template, {"rows": rows()})

    async with StreamingTestClient(app_with(endpoint)).stream("GET", "/") as response:
        chunks = response.iter_bytes()
        first = await anext(chunks)
        assert len(first) >= 1024
        assert not first.endswith(b"end")
        waiting.set()
        rest = b"".join([chunk async for chunk in chunks])
    assert (first + rest).endswith(b"end")
    assert len(first + rest) == 2403


async def test_flush_in_the_template_sends_what_is_rendered_so_far() -> None:
    gate = Gate(["a", "b"])
    app, _ = page({"greeting": "hello", "rows": gate()}, name="partial.html")
    async with StreamingTestClient(app).stream("GET", "/") as response:
        chunks = response.iter_bytes()
        first = await anext(chunks)
        assert first == b"<p>hello</p>"
        gate.opened.set()
        rest = b"".join([chunk async for chunk in chunks])
    assert rest == b"\n<p>a</p>\n<p>b</p>\n"


async def test_flush_does_nothing_outside_a_streamed_render() -> None:
    engine = templates()
    template = engine.get_template("partial.html")
    text = await template.render_async(greeting="hi", rows=["x"])
    assert text == "<p>hi</p>\n<p>x</p>\n"


async def test_an_end_of_head_in_capitals_is_a_flush_point_and_can_be_turned_off() -> None:
    env = jinja2.Environment(enable_async=True)
    source = "<HTML><HEAD></HEAD >{% for row in rows %}{{ row }}{% endfor %}"
    gate = Gate(["a"])

    class NoHead(TemplateProducer):
        flush_at_head = False

    async def endpoint(request: Request) -> Response:
        return StreamingTemplateResponse(env.from_string(source), {"rows": gate()})

    async with StreamingTestClient(app_with(endpoint)).stream("GET", "/") as response:
        assert await anext(response.iter_bytes()) == b"<HTML><HEAD></HEAD >"
        gate.opened.set()
        assert await response.read() == b"<HTML><HEAD></HEAD >a"

    async def no_head(request: Request) -> Response:
        response = StreamingTemplateResponse(env.from_string(source), {"rows": ["a"]})
        response.producer = NoHead(response.template.generate_async(response.context), response.context, 64)
        return response

    whole = await StreamingTestClient(app_with(no_head)).get("/")
    assert whole.framing is Framing.CONTENT_LENGTH


# -- what the template sees ----------------------------------------------------------------


async def test_html_templates_are_autoescaped_and_text_templates_are_not() -> None:
    app, _ = page({"title": "<script>", "rows": ["a & b"]})
    html = await StreamingTestClient(app).get("/")
    assert "<title>&lt;script&gt;</title>" in html.text
    assert "<li>a &amp; b</li>" in html.text
    text_app, _ = page({"text": "<b>"}, name="plain.txt")
    assert (await StreamingTestClient(text_app).get("/")).text == "<b>"


async def test_url_for_builds_urls_of_the_apps_named_routes() -> None:
    env = jinja2.Environment(enable_async=True)
    env.loader = jinja2.DictLoader({"link.html": "{{ url_for('item', item_id=7) }}"})
    engine = StreamingTemplates(env=env)

    async def endpoint(request: Request) -> Response:
        return engine.stream(request, "link.html")

    response = await StreamingTestClient(app_with(endpoint)).get("/")
    assert response.text == "http://testserver/items/7"


async def test_the_context_gets_the_request_and_what_context_processors_return() -> None:
    def site(request: Request) -> dict[str, Any]:
        return {"site": f"site of {request.url.path}"}

    engine = templates(context_processors=[site])
    given = {"user": _user("Ada")}

    async def endpoint(request: Request) -> Response:
        response = engine.stream(request, "user.html", given)
        assert response.context["request"] is request
        assert response.template.name == "user.html"
        return response

    response = await StreamingTestClient(app_with(endpoint)).get("/")
    assert "<title>Ada</title>" in response.text
    assert "&lt;i&gt;bio&lt;/i&gt; site of /" in response.text
    assert set(given) == {"user"}


async def _user(name: str) -> dict[str, str]:
    await anyio.lowlevel.checkpoint()
    return {"name": name, "bio": "<i>bio</i>"}


async def test_the_await_filter_passes_values_that_are_not_awaitable_through() -> None:
    app, _ = page({"user": {"name": "Grace", "bio": ""}, "site": "s"}, name="user.html")
    assert "<title>Grace</title>" in (await StreamingTestClient(app).get("/")).text


async def test_a_users_own_flush_global_and_await_filter_are_kept() -> None:
    env = jinja2.Environment(enable_async=True)
    env.globals["flush"] = "mine"
    env.filters["await"] = str.upper
    StreamingTemplates(env=env)
    assert env.globals["flush"] == "mine"
    assert env.filters["await"] is str.upper
    assert "url_for" in env.globals


# -- errors ----------------------------------------------------------------------------------


async def test_a_missing_template_raises_in_the_endpoint_and_is_a_500() -> None:
    engine = templates()

    async def endpoint(request: Request) -> Response:
        return engine.stream(request, "missing.html")

    client = StreamingTestClient(app_with(endpoint), raise_app_exceptions=False)
    response = await client.get("/")
    assert response.status_code == 500
    assert isinstance(response.app_exception, jinja2.TemplateNotFound)


async def test_an_error_in_the_head_is_a_500_through_the_exception_handlers() -> None:
    async def broken() -> dict[str, str]:
        raise ValueError("no user")

    app, _ = page({"user": broken(), "site": "s"}, name="user.html")
    response = await StreamingTestClient(app, raise_app_exceptions=False).get("/")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert isinstance(response.app_exception, ValueError)


async def test_an_http_exception_before_the_first_flush_keeps_its_status() -> None:
    async def missing() -> dict[str, str]:
        raise HTTPException(404, "no such user")

    app, _ = page({"user": missing(), "site": "s"}, name="user.html")
    response = await StreamingTestClient(app).get("/")
    assert response.status_code == 404
    assert response.text == "no such user"


async def test_an_error_before_the_first_flush_reaches_the_apps_own_handler() -> None:
    class Gone(Exception):
        pass

    async def gone() -> dict[str, str]:
        raise Gone

    async def handler(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("gone", status_code=410)

    engine = templates()

    async def endpoint(request: Request) -> Response:
        return engine.stream(request, "user.html", {"user": gone(), "site": "s"})

    app = app_with(endpoint, exception_handlers={Gone: handler})
    response = await StreamingTestClient(app).get("/")
    assert (response.status_code, response.text) == (410, "gone")


async def read_until_aborted(response: TestResponse) -> tuple[bytes, StreamAborted]:
    """The body bytes received before the stream was aborted, and the abort."""
    received: list[bytes] = []
    chunks = response.iter_bytes()
    while True:
        try:
            received.append(await anext(chunks))
        except StreamAborted as aborted:
            return b"".join(received), aborted


async def failing_rows() -> AsyncIterator[str]:
    yield "fine"
    await anyio.sleep(0.01)
    raise RuntimeError("the database went away")


async def test_an_error_after_the_head_was_flushed_aborts_the_stream_on_http_1_1() -> None:
    app, _ = page({"title": "T", "rows": failing_rows()})
    async with StreamingTestClient(app).stream("GET", "/") as response:
        assert response.status_code == 200
        body, aborted = await read_until_aborted(response)
    assert isinstance(aborted.__cause__, RuntimeError)
    assert b"</head>" in body
    assert b"<li>fine</li>" in body
    assert b"<!--" not in body


async def test_an_error_after_the_first_flush_is_reported_in_trailers_where_they_reach_the_client() -> None:
    app, _ = page({"title": "T", "rows": failing_rows()})
    response = await StreamingTestClient(app, http_version="2").get("/", headers={"te": "trailers"})
    assert response.trailers is not None
    assert response.trailers["stream-status"] == "error"
    assert response.trailers["stream-error"] == "RuntimeError"
    assert response.text.endswith("<li>fine</li>\n")


async def test_what_rendered_right_before_an_error_goes_out_before_the_abort() -> None:
    async def rows() -> AsyncIterator[str]:
        yield "fine"
        raise RuntimeError("no wait before this")

    app, _ = page({"title": "T", "rows": rows()})
    async with StreamingTestClient(app).stream("GET", "/") as response:
        body, aborted = await read_until_aborted(response)
    assert isinstance(aborted.__cause__, RuntimeError)
    assert body.endswith(b"<li>fine</li>\n")


async def test_an_error_after_flush_in_a_partial_aborts_the_stream() -> None:
    app, _ = page({"greeting": "hi", "rows": failing_rows()}, name="partial.html")
    async with StreamingTestClient(app).stream("GET", "/") as response:
        assert response.status_code == 200
        with pytest.raises(StreamAborted):
            await response.read()


async def test_the_error_comment_is_written_before_the_abort_when_asked_for() -> None:
    app, _ = page({"title": "T", "rows": failing_rows()}, error_comment=True)
    async with StreamingTestClient(app).stream("GET", "/") as response:
        body, _ = await read_until_aborted(response)
    comment = b"\n<!-- streaming_responses: rendering failed, this page is incomplete -->\n"
    assert body.endswith(b"<li>fine</li>\n" + comment)
    assert b"database" not in body


async def test_a_custom_error_comment_goes_before_the_error_trailers() -> None:
    app, _ = page({"title": "T", "rows": failing_rows()}, error_comment="page cut short")
    response = await StreamingTestClient(app, http_version="2").get("/", headers={"te": "trailers"})
    assert response.text.endswith("\n<!-- page cut short -->\n")
    assert response.trailers is not None
    assert response.trailers["stream-status"] == "error"


async def test_the_error_comment_is_not_sent_for_an_error_before_the_first_flush() -> None:
    async def broken() -> dict[str, str]:
        raise ValueError("no user")

    app, _ = page({"user": broken(), "site": "s"}, name="user.html", error_comment=True)
    response = await StreamingTestClient(app, raise_app_exceptions=False).get("/")
    assert response.status_code == 500
    assert b"<!--" not in response.body


def test_the_error_comment_is_a_valid_html_comment_or_refused() -> None:
    assert error_comment_chunk(False) is None
    assert error_comment_chunk(True) == (
        b"\n<!-- streaming_responses: rendering failed, this page is incomplete -->\n"
    )
    assert error_comment_chunk("caf\u00e9 failed") == "\n<!-- caf\u00e9 failed -->\n".encode()
    for bad in ("a --> b", "<!-- nested", "x --!> y"):
        with pytest.raises(ValueError, match="must not contain"):
            error_comment_chunk(bad)
    with pytest.raises(TypeError, match="bool or a str, not bytes"):
        error_comment_chunk(b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must not contain"):
        templates(error_comment="-->")


# -- disconnects and ends ---------------------------------------------------------------------


async def test_a_disconnect_closes_the_async_iterables_of_the_context() -> None:
    awaited = Gate(["never"])
    parked_closed = anyio.Event()
    never_started = Gate(["x"])

    async def parked() -> AsyncIterator[str]:
        try:
            yield "a"
            yield "b"
        finally:
            parked_closed.set()

    async def slow_suffix() -> str:
        await anyio.sleep(30)
        return ""  # pragma: no cover

    env = async_env()
    source = (
        "<head></head>{% for p in parked %}{{ p }}{% for w in awaited %}{{ w }}{% endfor %}{% endfor %}"
        "{{ late|await }}{% for x in unused %}{{ x }}{% endfor %}"
    )
    late = slow_suffix()
    context = {"parked": parked(), "awaited": awaited(), "late": late, "unused": never_started()}

    async def endpoint(request: Request) -> Response:
        return StreamingTemplateResponse(env.from_string(source), context)

    async with StreamingTestClient(app_with(endpoint)).stream("GET", "/") as response:
        chunks = response.iter_bytes()
        received = b""
        while b"a" not in received:
            received += await anext(chunks)
        await response.disconnect()
    assert awaited.finished.is_set()
    assert parked_closed.is_set()
    assert not never_started.started
    # The coroutine the template never reached was closed: no "never awaited" warning.
    assert inspect.getcoroutinestate(late) == inspect.CORO_CLOSED


async def test_a_head_request_runs_no_template_and_closes_the_context() -> None:
    gate = Gate(["a"])
    rows = gate()
    app, _ = page({"title": "T", "rows": rows})
    response = await StreamingTestClient(app).head("/")
    assert response.status_code == 200
    assert response.body == b""
    assert not gate.started
    with pytest.raises(StopAsyncIteration):
        await anext(rows)


async def test_closing_the_context_raises_the_first_problem_after_closing_everything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed = anyio.Event()

    async def bad() -> AsyncIterator[str]:
        try:
            yield "a"
        finally:
            raise OSError("cursor already closed")

    async def good() -> AsyncIterator[str]:
        try:
            yield "b"
        finally:
            closed.set()

    template = async_env().from_string("<head></head>{{ flag|await }}")
    first, second = bad(), good()
    await anext(first)
    await anext(second)
    producer = TemplateProducer(template.generate_async({}), {"bad": first, "good": second}, 1024)
    with pytest.raises(OSError, match="cursor already closed"):
        await producer.close()
    assert closed.is_set()

    gate = anyio.Event()

    async def waits() -> str:
        await gate.wait()
        return ""  # pragma: no cover

    third = bad()
    await anext(third)

    async def endpoint(request: Request) -> Response:
        return StreamingTemplateResponse(template, {"flag": waits(), "bad": third})

    caplog.set_level(logging.WARNING, "streaming_responses")
    async with StreamingTestClient(app_with(endpoint)).stream("GET", "/") as response:
        await anext(response.iter_bytes())
        await response.disconnect()
    assert "cursor already closed" in caplog.text


# -- the response and its settings ------------------------------------------------------------


async def test_status_headers_background_and_outcome_are_those_given() -> None:
    outcomes: list[StreamOutcome] = []
    ran: list[str] = []

    async def task() -> None:
        ran.append("background")

    from starlette.background import BackgroundTask

    engine = templates()

    async def endpoint(request: Request) -> Response:
        return engine.stream(
            request,
            "plain.txt",
            {"text": "t"},
            status_code=201,
            headers={"x-page": "1"},
            media_type="text/plain",
            background=BackgroundTask(task),
            timeout=10,
            idle_timeout=5,
            on_outcome=outcomes.append,
            on_shutdown="abort",
        )

    response = await StreamingTestClient(app_with(endpoint)).get("/")
    assert response.status_code == 201
    assert response.headers["x-page"] == "1"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert ran == ["background"]
    assert [outcome.kind for outcome in outcomes] == [Outcome.COMPLETE]


def test_bad_arguments_are_refused_with_a_clear_error() -> None:
    with pytest.raises(TypeError, match="either directory= or env="):
        StreamingTemplates()
    with pytest.raises(TypeError, match="either directory= or env="):
        StreamingTemplates(TEMPLATES, env=jinja2.Environment(enable_async=True))
    with pytest.raises(TypeError, match=r"env must be a jinja2\.Environment, not dict"):
        StreamingTemplates(env={})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="enable_async=True"):
        StreamingTemplates(env=jinja2.Environment())
    with pytest.raises(ValueError, match="enable_async=True"):
        StreamingTemplateResponse(jinja2.Environment().from_string("x"), {})
    with pytest.raises(TypeError, match=r"jinja2\.Template, not str"):
        StreamingTemplateResponse("page.html", {})  # type: ignore[arg-type]
    template = jinja2.Environment(enable_async=True).from_string("x")
    with pytest.raises(TypeError, match="context must be a mapping, not list"):
        StreamingTemplateResponse(template, [])  # type: ignore[arg-type]
    engine = templates()
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    with pytest.raises(TypeError, match="context must be a mapping or None, not list"):
        engine.stream(request, "plain.txt", [])  # type: ignore[arg-type]


def test_the_response_shows_its_template() -> None:
    template = templates().get_template("plain.txt")
    response = StreamingTemplateResponse(template, {"text": "x"})
    assert repr(response) == "<StreamingTemplateResponse status_code=200 template='plain.txt'>"
    assert response.context == {"text": "x"}


# -- FastAPI ----------------------------------------------------------------------------------


async def test_a_fastapi_path_operation_returns_a_streamed_page() -> None:
    app = fastapi.FastAPI()
    engine = templates()
    gate = Gate(["x", "y"])

    @app.get("/", response_class=StreamingTemplateResponse)
    async def index(request: Request) -> StreamingTemplateResponse:
        return engine.stream(request, "page.html", {"title": "FastAPI", "rows": gate()})

    @app.get("/static/{path:path}", name="static")
    async def static(path: str) -> str:
        return path  # pragma: no cover

    async with StreamingTestClient(app).stream("GET", "/") as response:
        chunks = response.iter_bytes()
        head = await anext(chunks)
        assert b"<title>FastAPI</title>" in head
        assert b'href="http://testserver/static/site.css"' in head
        gate.opened.set()
        rest = b"".join([chunk async for chunk in chunks])
    assert b"<li>x</li>" in rest
    schema = await StreamingTestClient(app).get("/openapi.json")
    assert schema.status_code == 200


# -- the thread path: a sync render in a worker thread ---------------------------------------


class Blocking:
    """A sync generator of rows that blocks in its thread until the test opens it, and records
    which thread ran it and whether its ``finally`` ran."""

    def __init__(self, rows: list[str], *, endless: bool = False) -> None:
        self.rows = rows
        self.endless = endless
        self.opened = threading.Event()
        self.finished = threading.Event()
        self.threads: set[int] = set()

    def __call__(self) -> Iterator[str]:
        self.threads.add(threading.get_ident())
        try:
            self.opened.wait(30)
            yield from self.rows
            while self.endless:
                yield "more"
        finally:
            self.finished.set()


async def test_a_context_without_async_values_renders_in_a_worker_thread() -> None:
    rows = Blocking(["a", "b"])
    rows.opened.set()
    engine = templates()
    made: list[StreamingTemplateResponse] = []

    async def endpoint(request: Request) -> Response:
        made.append(engine.stream(request, "page.html", {"title": "T", "rows": rows()}))
        return made[-1]

    response = await StreamingTestClient(app_with(endpoint)).get("/")
    assert made[0].render_path == "thread"
    assert response.text.count("<li>") == 2
    assert threading.get_ident() not in rows.threads


@pytest.mark.parametrize(
    ("context", "path"),
    [
        ({"rows": [1, 2], "title": "x"}, "thread"),
        ({"rows": iter([1])}, "thread"),
        ({"rows": Gate(["a"])()}, "async"),
        ({"user": _user("Ada")}, "async"),
        ({"load": _user}, "async"),
        ({"load": functools.partial(_user, "Ada")}, "async"),
    ],
)
async def test_auto_takes_the_async_path_only_for_a_context_with_an_async_value(
    context: dict[str, Any], path: str
) -> None:
    template = templates().get_template("page.html")
    response = StreamingTemplateResponse(template, context)
    assert response.render_path == path
    await response.producer.close()  # closes what the context holds (no "never awaited" warning)


class AsyncCallable:
    async def __call__(self) -> str:
        return "x"  # pragma: no cover


def test_async_value_names_the_first_async_value_of_the_context() -> None:
    async def agen() -> AsyncIterator[int]:
        yield 1  # pragma: no cover

    coroutine = _user("x")
    table: list[tuple[dict[str, Any], str | None]] = [
        ({}, None),
        ({"a": 1, "b": [1], "c": iter([]), "d": len, "e": str, "f": AsyncCallable}, None),
        ({"a": 1, "b": coroutine}, "b"),
        ({"g": agen}, "g"),
        ({"g": agen()}, "g"),
        ({"c": AsyncCallable()}, "c"),
        ({"m": AsyncCallable().__call__}, "m"),
    ]
    for context, key in table:
        assert async_value(context) == key, context
    coroutine.close()


async def test_render_forces_either_path_and_refuses_what_a_path_cannot_render() -> None:
    engine = templates()
    template = engine.get_template("page.html")
    assert StreamingTemplateResponse(template, {"rows": []}, render="async").render_path == "async"
    assert StreamingTemplateResponse(template, {"rows": []}, render="thread").render_path == "thread"
    gate = Gate(["a"])
    with pytest.raises(TypeError, match="render='thread' cannot render the context value 'rows'"):
        StreamingTemplateResponse(template, {"rows": gate()}, render="thread")
    assert not gate.started
    with pytest.raises(ValueError, match="render must be 'auto', 'thread' or 'async', not 'sync'"):
        StreamingTemplateResponse(template, {}, render="sync")  # type: ignore[arg-type]
    from_string = engine.env.from_string("{{ x }}")
    with pytest.raises(ValueError, match="loaded by name"):
        StreamingTemplateResponse(from_string, {"x": 1}, render="thread")
    assert StreamingTemplateResponse(from_string, {"x": 1}).render_path == "async"


async def test_both_paths_send_the_same_page() -> None:
    engine = templates()
    context = {"title": "<T>", "rows": [f"row {n} & more" for n in range(3_000)]}
    bodies = []
    for path in ("thread", "async"):

        async def endpoint(request: Request, path: Any = path) -> Response:
            return engine.stream(request, "page.html", context, render=path)

        bodies.append((await StreamingTestClient(app_with(endpoint)).get("/")).body)
    assert bodies[0] == bodies[1]
    assert bodies[0].count(b"<li>") == 3_000


async def test_the_sync_twin_is_one_per_environment_and_shares_its_globals() -> None:
    engine = templates()
    twin = sync_environment(engine.env)
    assert sync_environment(engine.env) is twin
    assert not twin.is_async
    assert engine.env.is_async
    engine.env.globals["added_later"] = "seen"
    assert twin.globals["added_later"] == "seen"
    sync = sync_template(engine.get_template("plain.txt"))
    assert sync is not None
    assert sync is sync_template(engine.get_template("plain.txt"))  # compiled once, cached
    assert not sync.environment.is_async
    overlay = engine.env.overlay()  # copies the attribute holding the twin: must get its own
    assert sync_environment(overlay) is not twin
    own = engine.env.get_template("plain.txt", globals={"text": "from the template's globals"})
    own_sync = sync_template(own)
    assert own_sync is not None
    assert own_sync.render() == "from the template's globals"


async def test_on_the_thread_path_the_head_goes_out_before_the_rows_exist() -> None:
    rows = Blocking(["one", "two"])
    app, _ = page({"title": "Rows", "rows": rows()})
    async with StreamingTestClient(app).stream("GET", "/") as response:
        chunks = response.iter_bytes()
        head = await anext(chunks)
        assert b"</head>" in head
        assert b"<li>" not in head
        rows.opened.set()
        rest = b"".join([chunk async for chunk in chunks])
    assert rest.count(b"<li>") == 2
    assert rest.endswith(b"</html>")


async def test_on_the_thread_path_flush_sends_what_is_rendered_so_far() -> None:
    rows = Blocking(["a", "b"])
    app, _ = page({"greeting": "hello", "rows": rows()}, name="partial.html")
    async with StreamingTestClient(app).stream("GET", "/") as response:
        chunks = response.iter_bytes()
        assert await anext(chunks) == b"<p>hello</p>"
        rows.opened.set()
        rest = b"".join([chunk async for chunk in chunks])
    assert rest == b"\n<p>a</p>\n<p>b</p>\n"


async def test_on_the_thread_path_flush_in_the_body_sends_before_the_rest_renders() -> None:
    env = async_env()
    env.loader = jinja2.DictLoader(
        {"t.html": "<head></head>{% for r in rows %}{{ r }}{{ flush() }}{% endfor %}"}
    )
    rows = Blocking(["a", "b"])

    def gated() -> Iterator[str]:
        yield "first"
        yield from rows()

    async def endpoint(request: Request) -> Response:
        return StreamingTemplateResponse(env.get_template("t.html"), {"rows": gated()})

    async with StreamingTestClient(app_with(endpoint)).stream("GET", "/") as response:
        chunks = response.iter_bytes()
        received = b""
        while b"first" not in received:
            received += await anext(chunks)
        assert received == b"<head></head>first"
        rows.opened.set()
        received += b"".join([chunk async for chunk in chunks])
    assert received == b"<head></head>firstab"


async def test_on_the_thread_path_an_error_before_the_first_flush_is_an_error_response() -> None:
    def missing() -> dict[str, str]:
        raise HTTPException(404, "no such user")

    app, engine = page({"user": {"name": "x"}, "site": "s", "load": missing}, name="user.html")
    engine.env.loader = jinja2.DictLoader({"user.html": "<title>{{ load().name }}</title></head>rest"})
    response = await StreamingTestClient(app).get("/")
    assert response.status_code == 404
    assert response.text == "no such user"


async def test_on_the_thread_path_an_error_after_the_head_sends_what_rendered_then_aborts() -> None:
    def rows() -> Iterator[str]:
        yield "fine"
        raise RuntimeError("database went away")

    app, _ = page({"title": "T", "rows": rows()})
    async with StreamingTestClient(app).stream("GET", "/") as response:
        body, aborted = await read_until_aborted(response)
    assert isinstance(aborted.__cause__, RuntimeError)
    assert body.endswith(b"<li>fine</li>\n")


async def test_on_the_thread_path_a_disconnect_stops_the_render_thread_and_runs_its_finally() -> None:
    rows = Blocking(["a"], endless=True)
    rows.opened.set()
    outcomes: list[StreamOutcome] = []
    engine = templates()

    async def endpoint(request: Request) -> Response:
        return engine.stream(request, "page.html", {"title": "T", "rows": rows()}, on_outcome=outcomes.append)

    async with StreamingTestClient(app_with(endpoint)).stream("GET", "/") as response:
        chunks = response.iter_bytes()
        received = b""
        while b"more" not in received:
            received += await anext(chunks)
        await response.disconnect()
    # The endless generator's `finally` ran in the render thread, which then stopped.
    assert await anyio.to_thread.run_sync(rows.finished.wait, 10)
    assert [outcome.kind for outcome in outcomes] == [Outcome.DISCONNECTED]


async def test_on_the_thread_path_a_head_request_renders_nothing_and_closes_the_context() -> None:
    rows = Blocking(["a"])
    generator = rows()
    app, _ = page({"title": "T", "rows": generator})
    response = await StreamingTestClient(app).head("/")
    assert response.status_code == 200
    assert response.body == b""
    assert not rows.threads  # never started
    with pytest.raises(StopIteration):
        next(generator)


async def test_on_the_thread_path_context_variables_are_visible_to_the_render() -> None:
    user: contextvars.ContextVar[str] = contextvars.ContextVar("user")
    env = async_env()
    env.loader = jinja2.DictLoader({"t.txt": "{{ who() }}"})

    async def endpoint(request: Request) -> Response:
        user.set("ada")
        return StreamingTemplateResponse(env.get_template("t.txt"), {"who": user.get})

    response = await StreamingTestClient(app_with(endpoint)).get("/")
    assert response.text == "ada"


async def test_the_await_filter_on_the_thread_path_says_to_use_the_async_path() -> None:
    env = async_env()
    env.loader = jinja2.DictLoader({"t.txt": "{{ user.profile|await }}"})

    class Later:
        def __await__(self) -> Generator[Any, None, str]:
            return iter(())  # type: ignore[return-value]  # pragma: no cover

    async def endpoint(request: Request) -> Response:
        # The awaitable is nested in a plain dict: the auto check sees only the dict.
        return StreamingTemplateResponse(env.get_template("t.txt"), {"user": {"profile": Later()}})

    with pytest.raises(TypeError, match="the await filter needs the async render path: pass render='async'"):
        await StreamingTestClient(app_with(endpoint)).get("/")


async def test_on_the_thread_path_a_slow_step_hands_over_what_was_rendered_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every step counts as slow: the hand-over after a step that waited is what is tested here,
    # not the clock's threshold.
    monkeypatch.setattr("streaming_responses._templates.SLOW_STEP", 0.0)
    later = threading.Event()

    def rows() -> Iterator[str]:
        yield "first"
        yield from (f"fast {n}" for n in range(600))  # more than one step's worth of fragments
        # Released only once the client saw "first": if that was held back behind this wait,
        # the wait runs out and the page fails instead of hanging.
        if not later.wait(10):
            raise AssertionError("the rows before the wait were held back behind it")
        yield "last"

    app, _ = page({"title": "T", "rows": rows()})
    async with StreamingTestClient(app).stream("GET", "/") as response:
        chunks = response.iter_bytes()
        received = b""
        while b"first" not in received:  # before the wait ends: not held back behind it
            received += await anext(chunks)
        later.set()
        received += b"".join([chunk async for chunk in chunks])
    assert received.count(b"<li>") == 602
