"""The app the broker's end-to-end tests run, in several worker processes on one Redis.

Written the way the "Scaling out" guide recommends: one broker from a URL in the environment,
closed in the lifespan; a stream that resumes after ``Last-Event-ID`` and, when it cannot,
sends a ``reset`` event and goes on live. Settings come from the environment: ``BROKER_URL``,
``BROKER_PREFIX`` (the tests' own keys), ``BROKER_TIMEOUT``, ``BROKER_STALL_TIMEOUT``,
``BROKER_SUBSCRIBER_BUFFER``.

Routes: ``GET /_state`` (readiness; this worker's pid and open subscriptions), ``POST
/publish?topic=`` (the body as an event's data; 503 with the error when Redis is away),
``GET /events?topics=a,b&id=`` (the stream; header ``x-worker-pid``), ``GET /page?id=`` (an
``EventSource`` page for Chromium), ``POST/GET /_report?id=`` (what the page saw, kept in Redis
so any worker can answer).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator

import redis.asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from streaming_responses import (
    BrokerError,
    EventBroker,
    EventsLost,
    EventSourceResponse,
    ServerSentEvent,
    last_event_id,
)

URL = os.environ.get("BROKER_URL", "memory://")
PREFIX = os.environ.get("BROKER_PREFIX", "e2e:")
broker = EventBroker.from_url(
    URL,
    key_prefix=PREFIX,
    timeout=float(os.environ.get("BROKER_TIMEOUT", "5")),
    stall_timeout=float(os.environ.get("BROKER_STALL_TIMEOUT", "30")),
    subscriber_buffer=int(os.environ.get("BROKER_SUBSCRIBER_BUFFER", "1000")),
)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with broker:
        yield


async def state(request: Request) -> Response:
    return JSONResponse({"pid": os.getpid(), "subscribers": broker.subscribers})


async def publish(request: Request) -> Response:
    body = (await request.body()).decode()
    topic = request.query_params.get("topic")
    try:
        sent = await broker.publish(ServerSentEvent(body), topic=topic)
    except BrokerError as exc:  # Redis away: the caller is told, nothing is dropped silently
        return JSONResponse({"error": str(exc), "pid": os.getpid()}, status_code=503)
    return JSONResponse({"id": sent.id, "pid": os.getpid()})


async def _note_stream(probe_id: str | None) -> None:
    """Record which worker serves the browser's stream (the browser test kills it)."""
    if probe_id and URL.startswith("redis"):
        client = redis.asyncio.Redis.from_url(URL)
        try:
            await client.set(f"{PREFIX}stream:{probe_id}", os.getpid())
        finally:
            await client.aclose()


async def events(request: Request) -> Response:
    topics = request.query_params.get("topics")
    chosen = topics.split(",") if topics else None
    resume_after = last_event_id(request)
    probe_id = request.query_params.get("id")

    async def relay() -> AsyncIterator[ServerSentEvent]:
        if request.query_params.get("retry"):
            yield ServerSentEvent(retry=int(request.query_params["retry"]))
        try:
            async with broker.subscribe(resume_after, topics=chosen) as subscription:
                await _note_stream(probe_id)
                yield ServerSentEvent(comment="joined")  # tells the tests the subscription is live
                async for event in subscription:
                    yield event
        except EventsLost:
            # The page reloads what it shows, then follows live events again.
            yield ServerSentEvent("reset", event="reset")
            async with broker.subscribe(topics=chosen) as subscription:
                yield ServerSentEvent(comment="joined")
                async for event in subscription:
                    yield event

    return EventSourceResponse(relay(), ping=5, headers={"x-worker-pid": str(os.getpid())})


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>broker</title></head><body>
<script>
const id = new URLSearchParams(location.search).get("id");
const seen = [], ids = [];
let opens = 0, resets = 0, sending = Promise.resolve();
function report() {  // one at a time, so a later report never lands before an earlier one
  const body = JSON.stringify({seen, ids, opens, resets});
  sending = sending.then(() => fetch("/_report?id=" + id,
    {method: "POST", headers: {"Content-Type": "application/json"}, body}));
}
const source = new EventSource("/events?retry=100&id=" + id);
source.onopen = () => { opens += 1; report(); };
source.onmessage = (e) => { seen.push(e.data); ids.push(e.lastEventId); report(); };
source.addEventListener("reset", () => { resets += 1; report(); });
</script></body></html>
"""


async def page(request: Request) -> Response:
    return HTMLResponse(PAGE)


async def report(request: Request) -> Response:
    key = f"{PREFIX}report:{request.query_params.get('id')}"
    client = redis.asyncio.Redis.from_url(URL)
    try:
        if request.method == "POST":
            await client.set(key, await request.body())
            return JSONResponse({"ok": True})
        stored = await client.get(key)
    finally:
        await client.aclose()
    return JSONResponse(None if stored is None else json.loads(stored))


app = Starlette(
    routes=[
        Route("/_state", state),
        Route("/publish", publish, methods=["POST"]),
        Route("/events", events),
        Route("/page", page),
        Route("/_report", report, methods=["GET", "POST"]),
    ],
    lifespan=lifespan,
)
