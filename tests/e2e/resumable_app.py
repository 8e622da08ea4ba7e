"""The app the resumable streams' end-to-end tests run, in several worker processes on one Redis.

Written as the "Resumable streams" guide recommends: one broker from a URL in the environment,
``ResumableStreams`` beside it, both closed in the lifespan; POST starts a job, GET attaches.
Settings from the environment: ``BROKER_URL``, ``BROKER_PREFIX`` (the tests' own keys),
``RESUMABLE_LEASE`` (seconds).

The producer is deterministic (``token 0``, ``token 1``, ...) and keeps its own record in Redis
(a hash ``<prefix>record:<name>``), so that a test can read what happened to it from any
process: when it started, when a cancellation reached the await it was in
(``time.monotonic()``, one clock for every process of the machine), and when its ``finally``
ran. Before token ``n`` with ``n % gate_every == 0`` it waits for the test to push an item on
the list ``<prefix>gate:<name>``; after ``hold_after`` tokens it waits for ever (a model that
thinks).

Routes: ``GET /_state``; ``POST /start?name=&tokens=&gate_every=&hold_after=&key=``; ``GET
/streams/{id}`` (header ``x-worker-pid``); ``POST /streams/{id}/cancel``; ``GET
/records/{name}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from streaming_responses import EventBroker, ResumableStreams, StreamNotFound, last_event_id

URL = os.environ.get("BROKER_URL", "memory://")
PREFIX = os.environ.get("BROKER_PREFIX", "e2e:")
broker = EventBroker.from_url(URL, key_prefix=PREFIX, history=10_000)
streams = ResumableStreams(broker, lease=float(os.environ.get("RESUMABLE_LEASE", "5")))
records = redis.asyncio.Redis.from_url(URL) if URL.startswith("redis") else None


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with broker, streams:
        yield
    if records is not None:
        await records.aclose()


async def note(name: str, **fields: float) -> None:
    assert records is not None
    mapping: dict[Any, Any] = dict(fields)
    await records.hset(f"{PREFIX}record:{name}", mapping=mapping)


def produce(name: str, count: int, gate_every: int, hold_after: int) -> AsyncIterator[str]:
    async def tokens() -> AsyncIterator[str]:
        await note(name, started=time.monotonic(), pid=os.getpid())
        try:
            for n in range(count):
                if n == hold_after:
                    await asyncio.Event().wait()
                if gate_every and n and n % gate_every == 0:
                    assert records is not None
                    await records.blpop([f"{PREFIX}gate:{name}"])
                yield f"token {n}"
        except asyncio.CancelledError:
            await note(name, cancelled_at=time.monotonic())
            raise
        finally:
            await note(name, finally_at=time.monotonic())

    return tokens()


async def state(request: Request) -> Response:
    return JSONResponse({"pid": os.getpid()})


async def start(request: Request) -> Response:
    query = request.query_params
    name = query.get("name", "job")
    producer = produce(
        name,
        int(query.get("tokens", "10")),
        int(query.get("gate_every", "0")),
        int(query.get("hold_after", "-1")),
    )
    stream_id = await streams.start(producer, key=query.get("key"))
    return JSONResponse({"id": stream_id, "pid": os.getpid()})


async def attach(request: Request) -> Response:
    return streams.attach(
        request.path_params["stream_id"], last_event_id(request), headers={"x-worker-pid": str(os.getpid())}
    )


async def cancel(request: Request) -> Response:
    requested_at = time.monotonic()
    try:
        stopped = await streams.cancel(request.path_params["stream_id"])
    except StreamNotFound:
        return JSONResponse({"error": "not found"}, status_code=404)
    return JSONResponse({"stopped": stopped, "requested_at": requested_at, "pid": os.getpid()})


async def record(request: Request) -> Response:
    assert records is not None
    stored = await records.hgetall(f"{PREFIX}record:{request.path_params['name']}")
    return JSONResponse(
        {(key.decode() if isinstance(key, bytes) else key): float(value) for key, value in stored.items()}
    )


app = Starlette(
    routes=[
        Route("/_state", state),
        Route("/start", start, methods=["POST"]),
        Route("/streams/{stream_id}", attach),
        Route("/streams/{stream_id}/cancel", cancel, methods=["POST"]),
        Route("/records/{name}", record),
    ],
    lifespan=lifespan,
)
