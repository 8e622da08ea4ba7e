"""The app the compression rows run: our compressed streams and Starlette's GZipMiddleware.

Our endpoints use the classes' defaults (``compress=True``); the client picks the coding with
``Accept-Encoding`` (none: the identity), as a browser or curl would:

* ``/sse?n=N``: ``EventSourceResponse`` of N events with ``data`` and ``id`` (an async generator);
* ``/jsonl?n=N``: ``JSONLinesResponse`` of N small objects (an async generator);
* ``/csv?rows=N``: ``CSVResponse`` of N five-column rows (a sync generator);
* ``/latency?chunks=N&interval_ms=T``: ``StreamingResponse(compress=True)`` of N time stamps,
  one every T ms (the slow producer of the core's latency row);
* ``/sse-latency?n=N&interval_ms=T``: N events whose data is ``time.monotonic_ns()`` when made;
* ``/idle?warm=B``: an event stream that sends about B bytes of events, then nothing, forever.

The baseline, mounted at ``/mw``, is the same bodies written the way Starlette users write them,
one ``yield`` per item into Starlette's ``StreamingResponse`` (the CSV one with the tutorial's
``StringIO`` per row), behind ``GZipMiddleware`` with its defaults, except that
``text/event-stream`` is not excluded (``exclude_content_types=()``).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.responses import StreamingResponse as StarletteStreamingResponse
from starlette.routing import Mount, Route

from benchmarks import _payload
from benchmarks.app_tabular import Row, items, rows
from streaming_responses import (
    CSVResponse,
    EventSourceResponse,
    JSONLinesResponse,
    ServerSentEvent,
    StreamingResponse,
)

PAYLOAD = "x" * 20


def _int(request: Request, name: str) -> int:
    return int(request.query_params[name])


async def sse(request: Request) -> Response:
    n = _int(request, "n")

    async def events() -> AsyncIterator[ServerSentEvent]:
        for i in range(n):
            yield ServerSentEvent(PAYLOAD, id=str(i))

    return EventSourceResponse(events())


async def jsonl(request: Request) -> Response:
    data = items(_int(request, "n"))

    async def produce() -> AsyncIterator[dict[str, Any]]:
        for item in data:
            yield item

    return JSONLinesResponse(produce())


def csv_rows(request: Request) -> Response:
    data = rows(_int(request, "rows"))

    def produce() -> Iterator[Row]:
        yield from data

    return CSVResponse(produce())


async def latency(request: Request) -> Response:
    count = _int(request, "chunks")
    interval = _int(request, "interval_ms") / 1000

    async def produce() -> AsyncIterator[bytes]:
        for _ in range(count):
            await asyncio.sleep(interval)
            yield _payload.stamp()

    return StreamingResponse(produce(), media_type="text/plain", compress=True)


async def sse_latency(request: Request) -> Response:
    count = _int(request, "n")
    interval = _int(request, "interval_ms") / 1000

    async def events() -> AsyncIterator[ServerSentEvent]:
        for _ in range(count):
            await asyncio.sleep(interval)
            yield ServerSentEvent(str(time.monotonic_ns()))

    return EventSourceResponse(events(), ping=None)


async def idle(request: Request) -> Response:
    warm = int(request.query_params.get("warm", "0"))

    async def events() -> AsyncIterator[ServerSentEvent]:
        sent = n = 0
        while sent < warm:
            event = ServerSentEvent({"n": n, "text": f"warming the window, event {n}"}, id=str(n))
            sent += len(event.encode())
            n += 1
            yield event
        await asyncio.Event().wait()

    return EventSourceResponse(events())


# -- the baseline: Starlette's StreamingResponse behind GZipMiddleware ------------------------------


async def mw_sse(request: Request) -> Response:
    n = _int(request, "n")

    async def events() -> AsyncIterator[str]:
        for i in range(n):
            yield f"data: {PAYLOAD}\nid: {i}\n\n"

    return StarletteStreamingResponse(events(), media_type="text/event-stream")


async def mw_jsonl(request: Request) -> Response:
    data = items(_int(request, "n"))

    async def produce() -> AsyncIterator[str]:
        for item in data:
            yield json.dumps(item, separators=(",", ":")) + "\n"

    return StarletteStreamingResponse(produce(), media_type="application/jsonl")


def mw_csv(request: Request) -> Response:
    data = rows(_int(request, "rows"))

    def produce() -> Iterator[str]:
        for row in data:
            buffer = io.StringIO()
            csv.writer(buffer).writerow(row)
            yield buffer.getvalue()

    return StarletteStreamingResponse(produce(), media_type="text/csv")


async def info(request: Request) -> Response:
    return JSONResponse(
        {
            "loop": type(asyncio.get_running_loop()).__module__,
            "classes": {"ours": "streaming_responses (compress=True)", "baseline": "GZipMiddleware"},
        }
    )


baseline = Starlette(
    routes=[Route("/sse", mw_sse), Route("/jsonl", mw_jsonl), Route("/csv", mw_csv)],
)

app = Starlette(
    routes=[
        Route("/info", info),
        Route("/_state", info),  # the readiness probe of tests.e2e.servers
        Route("/sse", sse),
        Route("/jsonl", jsonl),
        Route("/csv", csv_rows),
        Route("/latency", latency),
        Route("/sse-latency", sse_latency),
        Route("/idle", idle),
        Mount("/mw", GZipMiddleware(baseline, exclude_content_types=())),
    ]
)
