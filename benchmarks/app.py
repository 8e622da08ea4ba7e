"""The Starlette app the benchmark server runs: one endpoint per producer kind and side.

``/{kind}/ours`` responds with ``streaming_responses.StreamingResponse`` and
``/{kind}/starlette`` with ``starlette.responses.StreamingResponse``; the endpoint builds the same
generator for both, so the response class is the only difference between the two sides of a row.

Throughput endpoints share one contract, ``?chunks=N&size=B`` serves ``_payload.body(N, B)``.
The latency endpoint, ``?chunks=N&interval_ms=T``, sleeps ``T`` ms before each of ``N`` records
and builds each record (``_payload.stamp()``) just before yielding it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.responses import StreamingResponse as StarletteStreamingResponse
from starlette.routing import Route

from benchmarks import _payload
from streaming_responses import StreamingResponse

RESPONSE_CLASSES: dict[str, type[StarletteStreamingResponse]] = {
    "ours": StreamingResponse,
    "starlette": StarletteStreamingResponse,
}


def _response_class(request: Request) -> type[StarletteStreamingResponse]:
    side: str = request.path_params["side"]
    try:
        return RESPONSE_CLASSES[side]
    except KeyError:
        raise HTTPException(404, f"unknown side {side!r}") from None


def _int_param(request: Request, name: str) -> int:
    try:
        return int(request.query_params[name])
    except (KeyError, ValueError):
        raise HTTPException(400, f"query parameter {name!r} must be an integer") from None


async def async_chunks(request: Request) -> Response:
    """Serve the body from an async generator, one chunk per ``yield``."""
    cls = _response_class(request)
    data = _payload.chunks(_int_param(request, "chunks"), _int_param(request, "size"))

    async def produce() -> AsyncIterator[bytes]:
        for chunk in data:
            yield chunk

    return cls(produce(), media_type="application/octet-stream")


async def sync_chunks(request: Request) -> Response:
    """Serve the body from a sync generator, one chunk per ``yield``."""
    cls = _response_class(request)
    data = _payload.chunks(_int_param(request, "chunks"), _int_param(request, "size"))

    def produce() -> Iterator[bytes]:
        yield from data

    return cls(produce(), media_type="application/octet-stream")


async def latency(request: Request) -> Response:
    """Serve ``chunks`` time stamps, one every ``interval_ms`` milliseconds."""
    cls = _response_class(request)
    count = _int_param(request, "chunks")
    interval = _int_param(request, "interval_ms") / 1000

    async def produce() -> AsyncIterator[bytes]:
        for _ in range(count):
            await asyncio.sleep(interval)
            yield _payload.stamp()

    return cls(produce(), media_type="text/plain")


async def info(request: Request) -> Response:
    """Say what the server really runs, so the report can show it (and catch a wrong setup)."""
    return JSONResponse(
        {
            "loop": type(asyncio.get_running_loop()).__module__,
            "classes": {
                side: f"{cls.__module__}.{cls.__qualname__}" for side, cls in RESPONSE_CLASSES.items()
            },
        }
    )


app = Starlette(
    routes=[
        Route("/async/{side}", async_chunks),
        Route("/sync/{side}", sync_chunks),
        Route("/latency/{side}", latency),
        Route("/info", info),
    ]
)
