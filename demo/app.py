"""The demo served by ``make demo`` on http://127.0.0.1:8000.

The index page links to a live example of every response class the library has. Each example
is a few lines, written the way the documentation recommends.
"""

from __future__ import annotations

import html
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from streaming_responses import (
    CSVResponse,
    EventBroker,
    EventsLost,
    EventSourceResponse,
    FileResponse,
    JSONLinesResponse,
    ServerSentEvent,
    StreamingResponse,
    StreamingTemplates,
    StreamOutcome,
    last_event_id,
)

HERE = Path(__file__).resolve().parent
templates = StreamingTemplates(directory=HERE / "templates")
#: The live feed behind /events: /publish?text=... adds to it; reconnecting browsers resume.
broker = EventBroker(history=100)

#: The last outcomes, shown on /outcomes (the on_outcome hook in use).
recent: deque[dict[str, object]] = deque(maxlen=50)


def remember(outcome: StreamOutcome) -> None:
    recent.appendleft(
        {
            "outcome": outcome.kind.value,
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
    ("/events", "Server-sent events: a counter with ids; reconnect resumes after Last-Event-ID"),
    ("/feed", "An EventSource page on a broker feed; /publish?text=hi adds an event"),
    ("/file", "FileResponse: this demo's source, with ETag, ranges (curl -r 0-99) and 304s"),
    ("/rows.csv", "CSVResponse: 10,000 rows, quoted correctly, with a download name"),
    ("/rows.jsonl", "JSONLinesResponse: 10,000 JSON documents, one per line"),
    ("/page", "A streamed Jinja page: the head at once, rows as a slow source yields them"),
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


async def events(request: Request) -> EventSourceResponse:
    start = int(last_event_id(request) or 0)

    async def counter() -> AsyncIterator[ServerSentEvent]:
        for n in range(start + 1, start + 1000):
            yield ServerSentEvent({"n": n}, event="count", id=str(n))
            await anyio.sleep(1)

    return EventSourceResponse(counter(), ping=5, on_outcome=remember)


FEED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>feed</title></head>
<body><h1>Live feed</h1><p>Open <a href="/publish?text=hello">/publish?text=hello</a> in another tab.</p>
<ul id="items"></ul>
<script>
const source = new EventSource("/feed/events");
source.onmessage = (event) => {
  const item = document.createElement("li");
  item.textContent = event.lastEventId + ": " + event.data;
  document.getElementById("items").append(item);
};
</script></body></html>"""


async def feed(request: Request) -> HTMLResponse:
    return HTMLResponse(FEED_PAGE)


async def feed_events(request: Request) -> EventSourceResponse:
    resume_after = last_event_id(request)

    async def relay() -> AsyncIterator[ServerSentEvent]:
        try:
            subscription = broker.subscribe(resume_after)
        except EventsLost:  # an id from before the history (or before a restart): start live
            subscription = broker.subscribe()
        async with subscription as events:
            async for event in events:
                yield event

    return EventSourceResponse(relay(), ping=5)


async def publish(request: Request) -> JSONResponse:
    event = broker.publish(ServerSentEvent(request.query_params.get("text", "hello")))
    return JSONResponse({"id": event.id, "subscribers": broker.subscribers})


async def source_file(request: Request) -> FileResponse:
    return FileResponse(
        HERE / "app.py", media_type="text/plain", filename="app.py", content_disposition_type="inline"
    )


def demo_rows() -> Iterator[dict[str, object]]:
    for n in range(10_000):
        yield {"id": n, "name": f'row {n}, "quoted"', "price": n / 100, "note": None}


async def rows_csv(request: Request) -> CSVResponse:
    return CSVResponse(demo_rows(), filename="rows.csv", on_outcome=remember)


async def rows_jsonl(request: Request) -> JSONLinesResponse:
    return JSONLinesResponse(demo_rows(), on_outcome=remember)


async def page(request: Request) -> StreamingResponse:
    async def slow_rows() -> AsyncIterator[dict[str, object]]:
        for n in range(20):
            await anyio.sleep(0.1)
            yield {"n": n, "square": n * n}

    return templates.stream(request, "page.html", {"rows": slow_rows()})


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
        Route("/events", events),
        Route("/feed", feed),
        Route("/feed/events", feed_events),
        Route("/publish", publish),
        Route("/file", source_file),
        Route("/rows.csv", rows_csv),
        Route("/rows.jsonl", rows_jsonl),
        Route("/page", page),
        Route("/outcomes", outcomes),
    ]
)
