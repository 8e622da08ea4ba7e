"""The app the template end-to-end tests serve: streamed Jinja pages with slow data sources.

``GET /_state?id=...`` answers the servers' readiness probe and reports what happened to the
iterable a request with that id put in its template context (started, closed). ``/page`` renders
slow async rows (the async path), ``/thread-page`` endless sync rows (the thread path).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streaming_responses import StreamingTemplates

TEMPLATES = StreamingTemplates(directory=Path(__file__).resolve().parents[1] / "templates")
#: What each probed iterable did, by request id: {"started": t, "closed": t} (time.monotonic()).
PROBES: dict[str, dict[str, Any]] = {}
#: The event loop's thread (the thread path must not close its render there).
LOOP_THREAD: dict[str, int] = {}


async def slow_rows(
    count: int, delay: float, probe_id: str | None, fail_at: int | None = None
) -> AsyncIterator[str]:
    """``count`` rows, one every ``delay`` seconds; raise at row ``fail_at`` if given."""
    record = PROBES.setdefault(probe_id, {}) if probe_id else {}
    record["started"] = time.monotonic()
    try:
        for n in range(count):
            await anyio.sleep(delay)
            if n == fail_at:
                raise RuntimeError(f"row {n} could not be read")
            yield f"row {n}"
    finally:
        record["closed"] = time.monotonic()


def endless_sync_rows(probe_id: str | None) -> Iterator[str]:
    """Rows without end from a sync generator (the page takes the thread path); its ``finally``
    records when it ran, and in which thread."""
    record = PROBES.setdefault(probe_id, {}) if probe_id else {}
    record["started"] = time.monotonic()
    try:
        n = 0
        while True:
            yield f"row {n}"
            n += 1
    finally:
        record["closed"] = time.monotonic()
        record["closed_in_loop_thread"] = threading.get_ident() == LOOP_THREAD.get("id")


def _int(request: Request, name: str, default: int) -> int:
    return int(request.query_params.get(name, default))


async def page(request: Request) -> Response:
    """A page whose rows arrive over ``count * delay_ms`` milliseconds."""
    rows = slow_rows(
        _int(request, "count", 10),
        _int(request, "delay_ms", 200) / 1000,
        request.query_params.get("id"),
        int(request.query_params["fail_at"]) if "fail_at" in request.query_params else None,
    )
    return TEMPLATES.stream(request, "page.html", {"title": "Slow rows", "rows": rows})


async def thread_page(request: Request) -> Response:
    """An endless page rendered on the thread path."""
    LOOP_THREAD["id"] = threading.get_ident()
    rows = endless_sync_rows(request.query_params.get("id"))
    response = TEMPLATES.stream(request, "page.html", {"title": "Endless rows", "rows": rows})
    assert response.render_path == "thread"
    return response


async def state(request: Request) -> Response:
    probe_id = request.query_params.get("id")
    body = {"probe": PROBES.get(probe_id) if probe_id else None}
    return Response(json.dumps(body), media_type="application/json")


async def static(request: Request) -> Response:
    return Response("", media_type="text/css")


app = Starlette(
    routes=[
        Route("/page", page),
        Route("/thread-page", thread_page),
        Route("/_state", state),
        Route("/static/{path:path}", static, name="static"),
    ]
)
