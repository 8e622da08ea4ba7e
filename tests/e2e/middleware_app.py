"""The app behind middleware: every response class failing after its start, under each stack.

Run it as ``tests.e2e.middleware_app:app``. ``GET /<stack>/<kind>`` answers with a response of
class ``kind`` (``stream``, ``events``, ``csv``, ``jsonl``, ``page``, ``file``) that sends a
first part and then fails, served behind the middleware stack ``stack``:

* ``plain``: none; ``gzip``: GZipMiddleware; ``cors``: CORSMiddleware;
* ``ours``: :class:`~streaming_responses.StreamingHTTPMiddleware` with a ``call_next`` dispatch;
* ``stacked``: ours, GZip and CORS together;
* ``base`` and ``stacked-base``: Starlette's BaseHTTPMiddleware instead of ours, whose clean
  end of a failed body is the documented exception (the library warns about it once).

``GET /<stack>/<kind>?ok=1`` sends the same response without the failure. ``GET /_state``
answers the servers' readiness probe.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from streaming_responses import (
    CSVResponse,
    EventSourceResponse,
    FileResponse,
    JSONLinesResponse,
    StreamingHTTPMiddleware,
    StreamingResponse,
    StreamingTemplates,
)

TEMPLATES = StreamingTemplates(directory=Path(__file__).resolve().parents[1] / "templates")
#: The body before the failure: larger than GZip's minimum size, sent in several parts.
LINE = "x" * 100


class FailingFile(io.RawIOBase):
    """A binary file whose reads fail after the first one (a disk that went away)."""

    def __init__(self, size: int, fail: bool) -> None:
        self._left = size
        self._fail = fail
        self._reads = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self._reads += 1
        if self._fail and self._reads > 1:
            raise OSError("the disk went away")
        size = self._left if size < 0 else min(size, self._left)
        self._left -= size
        return b"f" * size


async def _parts(ok: bool) -> AsyncIterator[int]:
    for n in range(3):
        yield n
        await anyio.sleep(0.01)
    if not ok:
        raise RuntimeError("the source failed after the start")


def respond(kind: str, ok: bool, request: Request) -> Response:
    if kind == "stream":

        async def lines() -> AsyncIterator[str]:
            async for n in _parts(ok):
                yield f"{n} {LINE}\n"

        return StreamingResponse(lines(), media_type="text/plain")
    if kind == "events":

        async def events() -> AsyncIterator[str]:
            async for n in _parts(ok):
                yield f"{n} {LINE}"

        return EventSourceResponse(events())
    if kind == "csv":

        async def rows() -> AsyncIterator[tuple[int, str]]:
            async for n in _parts(ok):
                yield (n, LINE)

        return CSVResponse(rows())
    if kind == "jsonl":

        async def items() -> AsyncIterator[dict[str, Any]]:
            async for n in _parts(ok):
                yield {"n": n, "line": LINE}

        return JSONLinesResponse(items())
    if kind == "page":

        async def rows_of_page() -> AsyncIterator[str]:
            async for n in _parts(ok):
                yield f"{n} {LINE}"

        return TEMPLATES.stream(request, "page.html", {"title": "t", "rows": rows_of_page()})
    if kind == "file":
        return FileResponse(FailingFile(64 * 1024, not ok), size=64 * 1024, chunk_size=16 * 1024)
    raise ValueError(kind)


async def endpoint(request: Request) -> Response:
    return respond(request.path_params["kind"], request.query_params.get("ok") == "1", request)


async def tag(request: Request, call_next: Any) -> Response:
    response: Response = await call_next(request)
    response.headers["x-dispatch"] = "seen"
    return response


async def state(request: Request) -> Response:
    return JSONResponse({})


#: Per ``?id=``: set when the client says it has read the first line of ``/relay``.
RELEASES: dict[str, anyio.Event] = {}
RELEASED_BY: dict[str, str] = {}


async def relay(request: Request) -> Response:
    """``first`` at once, then ``second`` once the client called ``/release`` (or after 10 s).

    A proxy that holds the first line back (buffering) keeps the client from ever asking for
    the second, so ``GET /released?id=`` then says ``timeout``.
    """
    probe_id = request.query_params.get("id", "")
    release = RELEASES.setdefault(probe_id, anyio.Event())
    kind = request.query_params.get("kind", "stream")

    async def lines() -> AsyncIterator[str]:
        yield "first\n"
        with anyio.move_on_after(10) as waited:
            await release.wait()
        RELEASED_BY[probe_id] = "timeout" if waited.cancelled_caught else "client"
        yield "second\n"

    if kind == "events":
        return EventSourceResponse(lines())
    return StreamingResponse(lines(), media_type="text/plain")


async def release(request: Request) -> Response:
    probe_id = request.query_params.get("id", "")
    RELEASES.setdefault(probe_id, anyio.Event()).set()
    return JSONResponse({})


async def released(request: Request) -> Response:
    return JSONResponse({"by": RELEASED_BY.get(request.query_params.get("id", ""))})


async def static(request: Request) -> Response:
    return Response("", media_type="text/css")


GZIP = Middleware(GZipMiddleware, minimum_size=10)
CORS = Middleware(CORSMiddleware, allow_origins=["*"])
STACKS: dict[str, list[Middleware]] = {
    "plain": [],
    "gzip": [GZIP],
    "cors": [CORS],
    "ours": [Middleware(StreamingHTTPMiddleware, dispatch=tag)],
    "stacked": [Middleware(StreamingHTTPMiddleware, dispatch=tag), GZIP, CORS],
    "base": [Middleware(BaseHTTPMiddleware, dispatch=tag)],
    "stacked-base": [Middleware(BaseHTTPMiddleware, dispatch=tag), GZIP, CORS],
}

app = Starlette(
    routes=[
        Route("/_state", state),
        Route("/relay", relay),
        Route("/release", release),
        Route("/released", released),
        Route("/static/{path:path}", static, name="static"),
        *(
            Mount(f"/{name}", routes=[Route("/{kind}", endpoint)], middleware=stack)
            for name, stack in STACKS.items()
        ),
    ]
)
