"""The app the template rows measure: one Jinja template, ours streamed and Starlette's rendered.

Both sides render ``benchmarks/templates/rows.html`` with the same rows, on the same server:

* ``/rows/ours?count=N`` and ``/rows/starlette?count=N``: ``N`` rows that already exist (a
  tuple, cached so that building it is never timed), through :class:`StreamingTemplates` and
  Starlette's ``Jinja2Templates.TemplateResponse``;
* ``/slow/ours?count=N&ms=T`` and ``/slow/starlette?count=N&ms=T``: the same rows from an async
  generator that delivers them in 20 batches over ``T`` milliseconds (a slow database). Ours
  hands the generator to the template; Starlette's template renders synchronously, so that side
  collects the rows first, as its users must.

The page is deterministic, so both sides must send the same bytes.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from streaming_responses import StreamingTemplates

DIRECTORY = Path(__file__).resolve().parent / "templates"
TEMPLATE = "rows.html"
BATCHES = 20

ours = StreamingTemplates(directory=DIRECTORY)
theirs = Jinja2Templates(directory=DIRECTORY)


@functools.lru_cache(maxsize=4)
def rows(count: int) -> tuple[dict[str, Any], ...]:
    """``count`` table rows, some with characters the template must escape (cached: not timed)."""
    return tuple(
        {
            "id": n,
            "name": f"Person {n}",
            "email": f"person{n}@example.com",
            "score": (n * 37 % 1000) / 7,
            "note": "<b>&</b>" if n % 10 == 0 else f"note {n}",
        }
        for n in range(count)
    )


async def slow_rows(count: int, seconds: float) -> AsyncIterator[dict[str, Any]]:
    """The rows in ``BATCHES`` batches, one every ``seconds / BATCHES``, the first after a wait."""
    data = rows(count)
    size = -(-count // BATCHES)
    for start in range(0, count, size):
        await asyncio.sleep(seconds / BATCHES)
        for row in data[start : start + size]:
            yield row


def _arguments(request: Request) -> tuple[int, float]:
    return int(request.query_params["count"]), int(request.query_params.get("ms", "0")) / 1000


async def rows_ours(request: Request) -> Response:
    count, _ = _arguments(request)
    return ours.stream(request, TEMPLATE, {"title": f"{count} rows", "rows": rows(count)})


async def rows_theirs(request: Request) -> Response:
    count, _ = _arguments(request)
    return theirs.TemplateResponse(request, TEMPLATE, {"title": f"{count} rows", "rows": rows(count)})


async def slow_ours(request: Request) -> Response:
    count, seconds = _arguments(request)
    return ours.stream(request, TEMPLATE, {"title": f"{count} rows", "rows": slow_rows(count, seconds)})


async def slow_theirs(request: Request) -> Response:
    count, seconds = _arguments(request)
    collected = [row async for row in slow_rows(count, seconds)]
    return theirs.TemplateResponse(request, TEMPLATE, {"title": f"{count} rows", "rows": collected})


async def ping(request: Request) -> Response:
    """The trivial request whose latency the concurrency row measures while pages render."""
    return Response("ok", media_type="text/plain")


async def static(request: Request) -> Response:
    return Response("", media_type="text/css")  # pragma: no cover - the page only links to it


async def info(request: Request) -> Response:
    """What the server runs (the harness reads it)."""
    return JSONResponse(
        {
            "loop": type(asyncio.get_running_loop()).__module__,
            "classes": {
                "ours": "streaming_responses.StreamingTemplates.stream",
                "baseline": "starlette.templating.Jinja2Templates.TemplateResponse",
            },
        }
    )


app = Starlette(
    routes=[
        Route("/info", info),
        Route("/ping", ping),
        Route("/rows/ours", rows_ours),
        Route("/rows/starlette", rows_theirs),
        Route("/slow/ours", slow_ours),
        Route("/slow/starlette", slow_theirs),
        Route("/static/{path:path}", static, name="static"),
    ]
)
