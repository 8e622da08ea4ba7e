"""The demo served by ``make demo`` on http://127.0.0.1:8000.

The index page links to a live example of every response class the library has. Each example
is a few lines, written the way the documentation recommends.
"""

from __future__ import annotations

import html
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from streaming_responses import StreamingResponse, StreamOutcome

#: The last outcomes, shown on /outcomes (the on_outcome hook in use).
recent: deque[dict[str, object]] = deque(maxlen=50)


def remember(outcome: StreamOutcome) -> None:
    recent.appendleft(
        {
            "outcome": outcome.outcome.value,
            "status": outcome.status_code,
            "bytes": outcome.bytes_sent,
            "seconds": round(outcome.duration, 4),
            "framing": outcome.framing.value if outcome.framing else None,
            "error": repr(outcome.error) if outcome.error else None,
        }
    )


EXAMPLES = [
    ("/clock", "Async generator: the time, once a second, for 30 seconds (chunked)"),
    ("/count", "Sync generator: 100,000 lines, run in worker threads in batches"),
    ("/push", "Push style: an async writer callback awaits write() for each chunk"),
    ("/sized", "Declared length: 1 MiB with Content-Length, enforced"),
    ("/small", "A body complete before the first send goes out with Content-Length"),
    ("/broken", "An error after the first chunk: the connection is aborted, never a clean end"),
    ("/slow?idle=1", "idle_timeout=1: the producer stalls, the stream ends as an error"),
    ("/outcomes", "Outcomes recorded by the on_outcome hook (JSON)"),
]


async def index(request: Request) -> HTMLResponse:
    items = "\n".join(
        f'<li><a href="{html.escape(path)}">{html.escape(path)}</a> — {html.escape(text)}</li>'
        for path, text in EXAMPLES
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>streaming_responses demo</title></head>
<body>
<h1>streaming_responses demo</h1>
<ul>
{items}
</ul>
<p>Duplex (request streaming): <code>curl -T- http://127.0.0.1:8000/upper</code>, then type lines;
each comes back upper-cased as you send it.</p>
</body></html>"""
    return HTMLResponse(page)


async def clock(request: Request) -> StreamingResponse:
    async def ticks() -> AsyncIterator[str]:
        for _ in range(30):
            yield time.strftime("%H:%M:%S\n")
            await anyio.sleep(1)

    return StreamingResponse(ticks(), media_type="text/plain", on_outcome=remember)


async def count(request: Request) -> StreamingResponse:
    def lines() -> Iterator[str]:
        for n in range(100_000):
            yield f"line {n}\n"

    return StreamingResponse(lines(), media_type="text/plain", on_outcome=remember)


async def push(request: Request) -> StreamingResponse:
    async def produce(write: Callable[[str], Awaitable[None]]) -> None:
        for word in ("written ", "with ", "a ", "callback\n"):
            await write(word)
            await anyio.sleep(0.3)

    return StreamingResponse(produce, media_type="text/plain", on_outcome=remember)


async def sized(request: Request) -> StreamingResponse:
    block = b"0123456789abcdef" * 4096  # 64 KiB

    async def blocks() -> AsyncIterator[bytes]:
        for _ in range(16):
            yield block

    return StreamingResponse(
        blocks(),
        media_type="application/octet-stream",
        content_length=16 * len(block),
        headers={"content-disposition": 'attachment; filename="sized.bin"'},
        on_outcome=remember,
    )


async def small(request: Request) -> StreamingResponse:
    return StreamingResponse(["small ", "and ", "complete\n"], media_type="text/plain", on_outcome=remember)


async def broken(request: Request) -> StreamingResponse:
    async def rows() -> AsyncIterator[str]:
        yield "row 1\n"
        await anyio.sleep(0.5)
        raise RuntimeError("the database went away")

    return StreamingResponse(rows(), media_type="text/plain", on_outcome=remember)


async def slow(request: Request) -> StreamingResponse:
    idle = float(request.query_params.get("idle", "1"))

    async def stalls() -> AsyncIterator[str]:
        yield "first chunk, then silence\n"
        await anyio.sleep(idle * 5)
        yield "never sent\n"

    return StreamingResponse(stalls(), media_type="text/plain", idle_timeout=idle, on_outcome=remember)


async def upper(request: Request) -> StreamingResponse:
    async def echo() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            yield chunk.upper()

    return StreamingResponse(echo(), media_type="text/plain", duplex=True, on_outcome=remember)


async def outcomes(request: Request) -> JSONResponse:
    return JSONResponse(list(recent))


app = Starlette(
    routes=[
        Route("/", index),
        Route("/clock", clock),
        Route("/count", count),
        Route("/push", push),
        Route("/sized", sized),
        Route("/small", small),
        Route("/broken", broken),
        Route("/slow", slow),
        Route("/upper", upper, methods=["POST", "PUT"]),
        Route("/outcomes", outcomes),
    ]
)
