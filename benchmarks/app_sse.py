"""The app the SSE benchmark rows measure: one FastAPI app, three event-stream implementations.

Every side streams the same events from the same generator (:func:`numbers`): event ``i`` has
the data ``i`` and the id ``i``, for ``i`` in ``0 .. n-1``. Each side wraps it the way its own
users would: ours in :class:`streaming_responses.ServerSentEvent`, sse-starlette's in its
``ServerSentEvent``, FastAPI's as a generator path operation with
``response_class=fastapi.sse.EventSourceResponse`` yielding ``fastapi.sse.ServerSentEvent``.
All three write the data ``i`` as the text ``i`` (FastAPI JSON-encodes it, which gives the same
text), so a WHATWG parser reads the same events from every body.

The ``/idle/...`` endpoints open a stream that never sends an event, for the memory row.

Example::

    uvicorn benchmarks.app_sse:app --http httptools
    curl -N 'http://127.0.0.1:8000/events/ours?n=3'
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import sse_starlette
from fastapi import FastAPI
from fastapi.sse import EventSourceResponse as FastAPIEventSourceResponse
from fastapi.sse import ServerSentEvent as FastAPIServerSentEvent

from streaming_responses import EventSourceResponse, ServerSentEvent

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


async def numbers(n: int) -> AsyncIterator[int]:
    """The one source every side streams: ``0 .. n-1``."""
    for i in range(n):
        yield i


async def _ours(n: int) -> AsyncIterator[ServerSentEvent]:
    async for i in numbers(n):
        yield ServerSentEvent(i, id=str(i))


async def _theirs(n: int) -> AsyncIterator[sse_starlette.ServerSentEvent]:
    async for i in numbers(n):
        yield sse_starlette.ServerSentEvent(data=i, id=str(i))


@app.get("/info")
async def info() -> dict[str, Any]:
    """What each side is, for the report."""
    return {
        "classes": {
            "ours": f"{EventSourceResponse.__module__}.{EventSourceResponse.__qualname__}",
            "sse-starlette": "sse_starlette.EventSourceResponse",
            "fastapi": "fastapi.sse.EventSourceResponse",
        }
    }


@app.get("/events/ours")
async def events_ours(n: int) -> EventSourceResponse:
    return EventSourceResponse(_ours(n))


@app.get("/events/sse-starlette")
async def events_sse_starlette(n: int) -> sse_starlette.EventSourceResponse:
    return sse_starlette.EventSourceResponse(_theirs(n))


@app.get("/events/fastapi", response_class=FastAPIEventSourceResponse)
async def events_fastapi(n: int) -> AsyncIterator[FastAPIServerSentEvent]:
    async for i in numbers(n):
        yield FastAPIServerSentEvent(data=i, id=str(i))


async def _silence() -> AsyncIterator[ServerSentEvent]:
    await anyio.sleep_forever()
    yield ServerSentEvent("never")  # pragma: no cover - unreachable


async def _silence_theirs() -> AsyncIterator[sse_starlette.ServerSentEvent]:
    await anyio.sleep_forever()
    yield sse_starlette.ServerSentEvent(data="never")  # pragma: no cover - unreachable


@app.get("/idle/ours")
async def idle_ours() -> EventSourceResponse:
    return EventSourceResponse(_silence())


@app.get("/idle/sse-starlette")
async def idle_sse_starlette() -> sse_starlette.EventSourceResponse:
    return sse_starlette.EventSourceResponse(_silence_theirs())
