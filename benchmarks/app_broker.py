"""The app the broker fan-out rows run: our broker and encode's ``broadcaster`` side by side.

Both sides run in the same worker processes on the same Redis, written as their users write
them:

* ``/ours/events`` hands ``EventBroker.from_url(BROKER_URL)`` subscriptions to our
  ``EventSourceResponse`` as they are (the form the docs lead with); ``POST /ours/publish``
  publishes the body;
* ``/broadcaster/events`` streams a ``broadcaster.Broadcast(REDIS_URL)`` subscription (its
  Redis backend, pub/sub) with ``sse_starlette.EventSourceResponse``; ``POST
  /broadcaster/publish`` publishes the body.

broadcaster 0.3.1 (with redis-py 8) delivers nothing at all: its Redis listener wakes when the
first subscription *starts*, finds no channel subscribed yet, stops listening and waits for a
wake-up that never comes again. The workaround here: the lifespan subscribes once at startup,
holds that subscription for the app's life (draining it), and wakes the listener again once
the channel is subscribed (``_backend._ready.set()``, a private attribute: there is no public
way). After that, every subscription receives. ``BROKER_URL`` may be
``memory://`` (the in-process row); ``REDIS_URL`` is the Redis both sides share. Under
``/floor/`` a raw ASGI fan-out (:class:`FloorFanout`) measures what the server and the kernel
cost per delivery, the floor of the in-process row.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import sse_starlette
from broadcaster import Broadcast
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from streaming_responses import EventBroker, EventSourceResponse, ServerSentEvent, last_event_id

BROKER_URL = os.environ.get("BROKER_URL", "memory://")
REDIS_URL = os.environ.get("REDIS_URL")
CHANNEL = "bench"

broker = EventBroker.from_url(BROKER_URL, key_prefix=os.environ.get("BROKER_PREFIX", "bench:"))
broadcast = Broadcast(REDIS_URL) if REDIS_URL else None


async def _drain(ready: asyncio.Event) -> None:
    assert broadcast is not None
    async with broadcast.subscribe(CHANNEL) as held:
        broadcast._backend._ready.set()  # type: ignore[attr-defined]  # the workaround (see above)
        ready.set()
        async for _ in held:  # type: ignore[union-attr]
            pass


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with broker:
        if broadcast is None:
            yield
            return
        await broadcast.connect()
        ready = asyncio.Event()
        holder = asyncio.create_task(_drain(ready))  # the startup workaround (see above)
        await ready.wait()
        try:
            yield
        finally:
            holder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await holder
            await broadcast.disconnect()


async def info(request: Request) -> Response:
    return JSONResponse({"pid": os.getpid(), "subscribers": broker.subscribers, "broker": broker.url})


async def ours_events(request: Request) -> Response:
    # The form docs/scaling.md leads with: the subscription handed to the response as it is.
    return EventSourceResponse(broker.subscribe(last_event_id(request)))


async def ours_publish(request: Request) -> Response:
    sent = await broker.publish(ServerSentEvent((await request.body()).decode()))
    return JSONResponse({"id": sent.id})


async def broadcaster_events(request: Request) -> Response:
    assert broadcast is not None

    async def relay() -> AsyncIterator[dict[str, str]]:
        async with broadcast.subscribe(CHANNEL) as subscriber:
            async for event in subscriber:  # type: ignore[union-attr]
                if event is not None:
                    yield {"data": event.message}

    return sse_starlette.EventSourceResponse(relay())


async def broadcaster_publish(request: Request) -> Response:
    assert broadcast is not None
    await broadcast.publish(CHANNEL, (await request.body()).decode())
    return JSONResponse({"ok": True})


starlette_app = Starlette(
    routes=[
        Route("/info", info),
        Route("/ours/events", ours_events),
        Route("/ours/publish", ours_publish, methods=["POST"]),
        Route("/broadcaster/events", broadcaster_events),
        Route("/broadcaster/publish", broadcaster_publish, methods=["POST"]),
    ],
    lifespan=lifespan,
)


class FloorFanout:
    """The least an in-process fan-out can cost on this server: the in-process row's floor.

    A raw ASGI app (no Starlette, no library, no pings, no disconnect watching) that still
    delivers every event: each open stream has a list of pending bytes and a future; a publish
    appends to every list and resolves the waiting futures, and each stream sends whatever is
    pending in one ``send()``. What it costs per delivery is the server's and the kernel's
    share, which no library can remove.
    """

    def __init__(self) -> None:
        self._streams: dict[int, tuple[list[bytes], list[asyncio.Future[None] | None]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/floor/publish":
            await self._publish(receive, send)
            return
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b":\n\n", "more_body": True})
        pending: list[bytes] = []
        waiter: list[asyncio.Future[None] | None] = [None]
        key = id(pending)
        self._streams[key] = (pending, waiter)
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not pending:
                    future = waiter[0] = loop.create_future()
                    await future
                chunk = b"".join(pending)
                pending.clear()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            del self._streams[key]

    async def _publish(self, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        chunk = b"data: " + body + b"\n\n"
        for pending, waiter in self._streams.values():
            pending.append(chunk)
            future = waiter[0]
            if future is not None and not future.done():
                future.set_result(None)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})


floor = FloorFanout()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The Starlette app, and the raw floor app under ``/floor/``."""
    if scope["type"] == "http" and scope["path"].startswith("/floor/"):
        await floor(scope, receive, send)
    else:
        await starlette_app(scope, receive, send)
