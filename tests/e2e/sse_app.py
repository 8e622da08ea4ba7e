"""The application the server-sent events end-to-end tests run: ``tests.e2e.sse_app:app``.

It owns the SSE endpoints the e2e tests and the browser test talk to, and its own record of
what only the server can see (when a generator's ``finally`` ran, how it ended), served as JSON
by ``GET /_state?id=...``. Times are ``time.monotonic()`` (CLOCK_MONOTONIC, shared by every
process of the machine), so the tests compare them with their own clock.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route

from streaming_responses import (
    EventBroker,
    EventSourceResponse,
    ServerSentEvent,
    StreamingResponse,
    last_event_id,
)


class Probes:
    """What happened to each request's generator, keyed by the request's ``id`` parameter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: dict[str, dict[str, Any]] = {}

    def record(self, probe_id: str | None, **fields: Any) -> None:
        if probe_id is None:
            return
        with self._lock:
            self.records.setdefault(probe_id, {}).update(fields)

    def get(self, probe_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self.records.get(probe_id)
            return dict(record) if record is not None else None


PROBES = Probes()
BROKER = EventBroker(history=100)


def _outcome(probe_id: str | None) -> Any:
    def on_outcome(outcome: Any) -> None:
        PROBES.record(probe_id, outcome=str(getattr(outcome.kind, "value", outcome.kind)))

    return on_outcome


def _float(request: Request, name: str, default: float | None) -> float | None:
    value = request.query_params.get(name)
    return default if value is None else float(value)


async def counter(request: Request) -> Response:
    """Numbered events every ``interval`` s, resuming after ``Last-Event-ID``; ``limit`` per connection."""
    probe_id = request.query_params.get("id")
    interval = _float(request, "interval", 0.05) or 0.0
    limit = int(request.query_params.get("limit", "0"))
    total = int(request.query_params.get("total", "0"))
    retry = request.query_params.get("retry")
    resumed = last_event_id(request)
    first = int(resumed) + 1 if resumed is not None and resumed.isdigit() else 1
    PROBES.record(
        probe_id, last_event_ids=[*(PROBES.get(probe_id or "") or {}).get("last_event_ids", []), resumed]
    )

    async def events() -> AsyncIterator[ServerSentEvent]:
        n = first
        sent = 0
        while not total or n <= total:
            if limit and sent >= limit:
                return
            yield ServerSentEvent(f"event {n}", id=str(n), retry=int(retry) if retry and sent == 0 else None)
            n += 1
            sent += 1
            await anyio.sleep(interval)

    return EventSourceResponse(events(), ping=_float(request, "ping", 15.0))


async def idle(request: Request) -> Response:
    """A stream that never yields; its ``finally`` records the time. ``?delay=``: before the headers."""
    probe_id = request.query_params.get("id")

    async def events() -> AsyncIterator[ServerSentEvent]:
        PROBES.record(probe_id, started_at=time.monotonic())
        try:
            await anyio.Event().wait()
            yield ServerSentEvent("never")  # pragma: no cover
        finally:
            PROBES.record(probe_id, finally_at=time.monotonic())

    final = request.query_params.get("final")
    return EventSourceResponse(
        events(),
        ping=_float(request, "ping", 15.0),
        shutdown_event=None if final is None else ServerSentEvent(final, event="bye"),
        on_outcome=_outcome(probe_id),
    )


async def slow_first(request: Request) -> Response:
    """The first event comes after ``delay`` seconds: the headers must not wait for it."""
    delay = _float(request, "delay", 2.0) or 0.0

    async def events() -> AsyncIterator[str]:
        await anyio.sleep(delay)
        yield "late"

    return EventSourceResponse(events())


async def error_after(request: Request) -> Response:
    """``n`` events, then an exception in the generator."""
    n = int(request.query_params.get("n", "2"))

    async def events() -> AsyncIterator[ServerSentEvent]:
        for i in range(1, n + 1):
            yield ServerSentEvent(f"event {i}", id=str(i))
            await anyio.sleep(0.01)
        raise RuntimeError("secret detail that must not reach the client")

    return EventSourceResponse(events())


async def flood(request: Request) -> Response:
    """Large events as fast as possible with ``send_timeout``: for a client that stops reading."""
    probe_id = request.query_params.get("id")
    payload = "x" * 60_000

    async def events() -> AsyncIterator[str]:
        try:
            while True:
                yield payload
        finally:
            PROBES.record(probe_id, finally_at=time.monotonic())

    return EventSourceResponse(
        events(), send_timeout=_float(request, "send_timeout", 0.5), on_outcome=_outcome(probe_id)
    )


def missing(request: Request) -> Response:
    """An unknown model: HTTPException(404) before the first event (``?style=async|sync``)."""

    async def async_events() -> AsyncIterator[str]:
        raise HTTPException(404, "unknown model")
        yield ""  # pragma: no cover

    def sync_events() -> Iterator[str]:
        raise HTTPException(404, "unknown model")
        yield ""  # pragma: no cover

    style = request.query_params.get("style", "async")
    return EventSourceResponse(sync_events() if style == "sync" else async_events())


def sync_events(request: Request) -> Response:
    """A sync generator of ``n`` events (run by the core in worker threads, in batches)."""
    n = int(request.query_params.get("n", "5"))

    def events() -> Iterator[ServerSentEvent]:
        for i in range(1, n + 1):
            yield ServerSentEvent({"n": i}, event="sync", id=str(i))

    return EventSourceResponse(events())


async def broker_stream(request: Request) -> Response:
    """Events published to the broker, replayed after ``Last-Event-ID``."""

    async def events() -> AsyncIterator[ServerSentEvent]:
        async with BROKER.subscribe(last_event_id(request)) as subscription:
            async for event in subscription:
                yield event

    return EventSourceResponse(events())


async def broker_publish(request: Request) -> Response:
    try:
        body = (await request.body()).decode()
    except Exception as exc:
        return JSONResponse({"error": repr(exc)}, status_code=500)
    try:
        event = await BROKER.publish(ServerSentEvent(body))
    except Exception as exc:  # shown to the test, which fails with the reason
        return JSONResponse({"error": repr(exc)}, status_code=500)
    return JSONResponse({"id": event.id})


async def state(request: Request) -> Response:
    probe_id = request.query_params.get("id")
    return JSONResponse(
        {"probe": PROBES.get(probe_id) if probe_id else None, "now": time.monotonic(), "pid": os.getpid()}
    )


async def report(request: Request) -> Response:
    """``POST``: the browser page stores its results; ``GET``: the test reads them."""
    probe_id = request.query_params.get("id")
    if request.method == "POST":
        PROBES.record(probe_id, report=await request.json())
        release = RELEASES.get(probe_id or "")
        if release is not None:
            release.set()
        return JSONResponse({"ok": True})
    return JSONResponse((PROBES.get(probe_id or "") or {}).get("report"))


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>EventSource</title></head><body>
<script>
const params = new URLSearchParams(location.search);
const id = params.get("id"), total = Number(params.get("total"));
const seen = [], ids = [];
let opens = 0, errors = 0, reported = false;
function report(done) {
  fetch("/_report?id=" + id, {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({seen, ids, opens, errors, done})});
}
const source = new EventSource("/counter?id=" + id + "&total=" + total + "&limit=5&interval=0.01&retry=100");
source.onopen = () => { opens += 1; };
source.onmessage = (e) => {
  seen.push(e.data); ids.push(e.lastEventId);
  if (seen.length >= total && !reported) { reported = true; source.close(); report(true); }
};
source.onerror = () => { errors += 1; };
setTimeout(() => { if (!reported) { reported = true; source.close(); report(false); } }, 15000);
</script></body></html>
"""


async def page(request: Request) -> Response:
    return HTMLResponse(PAGE)


#: A page that shows a slow ``text/plain`` stream in an iframe and reports when its first
#: line is on screen (the stream waits for that report before it sends its second line).
PLAIN_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>text/plain</title></head><body>
<iframe id="frame" src="/plain-clock?id=ID"></iframe>
<script>
const frame = document.getElementById("frame");
let reported = false;
const started = performance.now();
const timer = setInterval(() => {
  const doc = frame.contentDocument;
  const text = doc && doc.body ? doc.body.innerText : "";
  if (!reported && text.includes("line 0")) {
    reported = true;
    clearInterval(timer);
    fetch("/_report?id=ID", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({text, after_ms: performance.now() - started})});
  }
}, 20);
</script></body></html>
"""
RELEASES: dict[str, anyio.Event] = {}


async def plain_page(request: Request) -> Response:
    probe_id = request.query_params.get("id", "")
    RELEASES[probe_id] = anyio.Event()
    return HTMLResponse(PLAIN_PAGE.replace("ID", probe_id))


async def plain_clock(request: Request) -> Response:
    """``line 0``, then ``line 1`` once the page reported ``line 0`` on screen (or after 15 s)."""
    probe_id = request.query_params.get("id", "")
    release = RELEASES.setdefault(probe_id, anyio.Event())

    async def lines() -> AsyncIterator[str]:
        yield "line 0\n"
        with anyio.move_on_after(15) as waited:
            await release.wait()
        PROBES.record(probe_id, released_by="timeout" if waited.cancelled_caught else "report")
        yield "line 1\n"

    return StreamingResponse(lines(), media_type="text/plain")


fastapi_app = FastAPI()


@fastapi_app.get("/events", response_class=EventSourceResponse)
async def fastapi_events(n: int = 3) -> AsyncIterator[dict[str, int]]:
    """A FastAPI generator path operation: FastAPI hands the generator to our class."""
    for i in range(1, n + 1):
        yield {"n": i}


def create_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/_state", state),
            Route("/_report", report, methods=["GET", "POST"]),
            Route("/page", page),
            Route("/plain-page", plain_page),
            Route("/plain-clock", plain_clock),
            Route("/counter", counter, methods=["GET", "HEAD"]),
            Route("/idle", idle),
            Route("/slow-first", slow_first),
            Route("/error", error_after),
            Route("/flood", flood),
            Route("/sync", sync_events),
            Route("/missing", missing),
            Route("/broker", broker_stream),
            Route("/broker/publish", broker_publish, methods=["POST"]),
            Mount("/fastapi", fastapi_app),
        ]
    )


app = create_app()
