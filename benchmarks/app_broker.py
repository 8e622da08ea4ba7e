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
``memory://`` (the in-process row); ``REDIS_URL`` is the Redis both sides share.
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


app = Starlette(
    routes=[
        Route("/info", info),
        Route("/ours/events", ours_events),
        Route("/ours/publish", ours_publish, methods=["POST"]),
        Route("/broadcaster/events", broadcaster_events),
        Route("/broadcaster/publish", broadcaster_publish, methods=["POST"]),
    ],
    lifespan=lifespan,
)
