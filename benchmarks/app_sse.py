"""The app the SSE benchmark rows run: the same event generator behind three response classes.

``/sse/ours?n=N`` (``streaming_responses.EventSourceResponse``), ``/sse/sse-starlette?n=N``
(``sse_starlette.EventSourceResponse``) and ``/fastapi/ours`` / ``/fastapi/native`` (FastAPI
generator path operations with ``response_class=`` ours or ``fastapi.sse.EventSourceResponse``);
``/fastapi/ours-return`` returns ours from a plain path operation. The per-item rows:
``/sse/objects/ours`` builds a ``ServerSentEvent(data=..., id=...)`` per item as users write it,
``/sse/dicts/ours`` and ``/sse/dicts/sse-starlette`` yield sse-starlette's dicts of fields, and
``/sse/ceiling`` sends the objects' bytes from a raw ASGI app. Every event has ``data`` and ``id``.
``/idle/<side>`` streams never yield (memory row;
``/idle/floor`` is a bare response that sends its headers and then only waits);
``/info`` answers the readiness probe.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import fastapi.sse
import sse_starlette
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from streaming_responses import EventSourceResponse, ServerSentEvent

PAYLOAD = "x" * 20


async def _forever() -> None:
    await asyncio.Event().wait()


async def ours(request: Request) -> Response:
    n = int(request.query_params["n"])

    async def events() -> AsyncIterator[ServerSentEvent]:
        for i in range(n):
            yield ServerSentEvent(PAYLOAD, id=str(i))

    return EventSourceResponse(events())


async def objects_ours(request: Request) -> Response:
    """The user's form: an event object built per item, with the keyword ``data=``."""
    n = int(request.query_params["n"])

    async def events() -> AsyncIterator[ServerSentEvent]:
        for i in range(n):
            yield ServerSentEvent(data="payload-" + str(i), id=str(i))

    return EventSourceResponse(events())


async def _ceiling(scope: Any, receive: Any, send: Any) -> None:
    """The raw ASGI ceiling of the per-item row: the same generator, its events' bytes joined
    into 64 KiB messages and sent, with nothing else (no disconnect watching, no pings, no
    framing decisions). No response class can send this generator's events faster."""
    n = int(parse_qs(scope["query_string"].decode())["n"][0])

    async def events() -> AsyncIterator[ServerSentEvent]:
        for i in range(n):
            yield ServerSentEvent(data="payload-" + str(i), id=str(i))

    headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    parts: list[bytes] = []
    size = 0
    async for event in events():
        wire = event.encode()
        parts.append(wire)
        size += len(wire)
        if size >= 65536:
            await send({"type": "http.response.body", "body": b"".join(parts), "more_body": True})
            parts, size = [], 0
    await send({"type": "http.response.body", "body": b"".join(parts), "more_body": False})


class RawASGI:
    """A raw ASGI app as a route endpoint (Starlette calls an object that is no function as one)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await _ceiling(scope, receive, send)


async def dicts_ours(request: Request) -> Response:
    """sse-starlette's idiom moved to ours: a dict of fields per item, with ``dicts="fields"``."""
    n = int(request.query_params["n"])

    async def events() -> AsyncIterator[dict[str, str]]:
        for i in range(n):
            yield {"data": "payload-" + str(i), "id": str(i)}

    return EventSourceResponse(events(), dicts="fields")


async def dicts_sse_starlette(request: Request) -> Response:
    """sse-starlette's idiom: a dict of fields per item."""
    n = int(request.query_params["n"])

    async def events() -> AsyncIterator[dict[str, str]]:
        for i in range(n):
            yield {"data": "payload-" + str(i), "id": str(i)}

    return sse_starlette.EventSourceResponse(events())


async def starlette_side(request: Request) -> Response:
    n = int(request.query_params["n"])

    async def events() -> AsyncIterator[sse_starlette.ServerSentEvent]:
        for i in range(n):
            yield sse_starlette.ServerSentEvent(PAYLOAD, id=str(i))

    return sse_starlette.EventSourceResponse(events())


class _HeadersThenWait(Response):
    """The least any idle event stream can hold in a Starlette app (the memory row's floor):
    headers and one comment, then a wait, with no disconnect watching, no pings and no producer."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream; charset=utf-8")]  # no content-length
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b":\n\n", "more_body": True})
        await _forever()


async def idle(request: Request) -> Response:
    side = request.path_params["side"]
    if side == "floor":
        return _HeadersThenWait()

    async def events() -> AsyncIterator[Any]:
        await _forever()
        yield PAYLOAD  # pragma: no cover

    if side == "ours":
        return EventSourceResponse(events())
    return sse_starlette.EventSourceResponse(events())


async def info(request: Request) -> Response:
    return JSONResponse({"classes": {"ours": "streaming_responses.EventSourceResponse"}})


api = FastAPI()


@api.get("/ours", response_class=EventSourceResponse)
async def fastapi_ours(n: int) -> AsyncIterator[ServerSentEvent]:
    for i in range(n):
        yield ServerSentEvent(PAYLOAD, id=str(i))


@api.get("/ours-return")
async def fastapi_ours_return(n: int) -> EventSourceResponse:
    """A FastAPI path operation returning our response (FastAPI does not wrap the generator)."""

    async def events() -> AsyncIterator[ServerSentEvent]:
        for i in range(n):
            yield ServerSentEvent(PAYLOAD, id=str(i))

    return EventSourceResponse(events())


@api.get("/native", response_class=fastapi.sse.EventSourceResponse)
async def fastapi_native(n: int) -> AsyncIterator[fastapi.sse.ServerSentEvent]:
    for i in range(n):
        yield fastapi.sse.ServerSentEvent(data=PAYLOAD, id=str(i))


@api.get("/idle", response_class=fastapi.sse.EventSourceResponse)
async def fastapi_idle() -> AsyncIterator[fastapi.sse.ServerSentEvent]:
    await _forever()
    yield fastapi.sse.ServerSentEvent(data=PAYLOAD)  # pragma: no cover


app = Starlette(
    routes=[
        Route("/info", info),
        Route("/sse/ours", ours),
        Route("/sse/sse-starlette", starlette_side),
        Route("/sse/objects/ours", objects_ours),
        Route("/sse/dicts/ours", dicts_ours),
        Route("/sse/ceiling", RawASGI()),
        Route("/sse/dicts/sse-starlette", dicts_sse_starlette),
        Route("/idle/{side}", idle),
        Mount("/fastapi", api),
    ]
)
