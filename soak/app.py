"""The app the soak run serves: every response class, paced, with server-side counts.

``GET /s/<kind>?n=N`` streams ``N`` parts of about 1 KiB, one every ``PACE`` seconds, with the
class of ``kind`` (``async``, ``sync``, ``events``, ``csv``, ``jsonl``, ``page``) or serves a
64 KiB file (``file``). The producers are slower than the slowest soak client reads, so a client
that leaves always leaves a stream that has not ended: the server's outcomes can be counted
against the clients' own. ``GET /_stats`` reports the outcomes by class, warnings and errors
logged, live tasks, threads and the threads still inside a producer; ``GET /info`` is the
readiness probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from streaming_responses import (
    CSVResponse,
    EventSourceResponse,
    FileResponse,
    JSONLinesResponse,
    StreamingResponse,
    StreamingTemplates,
    StreamOutcome,
)

#: Seconds between two parts of a stream.
PACE = 0.2
PART = "p" * 1000
FILE_SIZE = 64 * 1024
TEMPLATES = StreamingTemplates(directory=Path(__file__).resolve().parent)
FILE = Path(tempfile.gettempdir()) / f"soak-{os.getpid()}.bin"
FILE.write_bytes(os.urandom(FILE_SIZE))

OUTCOMES: Counter[str] = Counter()
LOGGED: Counter[str] = Counter()
LOG_SAMPLES: list[str] = []


class CountingHandler(logging.Handler):
    """Counts every warning and error any logger emits (the soak must see none)."""

    def emit(self, record: logging.LogRecord) -> None:
        LOGGED[record.levelname] += 1
        if len(LOG_SAMPLES) < 20:
            LOG_SAMPLES.append(f"{record.name}: {record.getMessage()[:300]}")


# The root logger, and uvicorn's error logger, which does not propagate to it.
for _name in ("", "uvicorn.error"):
    logging.getLogger(_name).addHandler(CountingHandler(logging.WARNING))


def _recorder(kind: str) -> Any:
    def on_outcome(outcome: StreamOutcome) -> None:
        OUTCOMES[f"{kind}:{outcome.kind.value}"] += 1

    return on_outcome


async def _parts(n: int) -> AsyncIterator[int]:
    for index in range(n):
        if index:
            await anyio.sleep(PACE)
        yield index


def _sync_parts(n: int) -> Iterator[int]:
    for index in range(n):
        if index:
            time.sleep(PACE)
        yield index


def respond(kind: str, n: int, request: Request) -> Response:
    on_outcome = _recorder(kind)
    if kind == "async":

        async def lines() -> AsyncIterator[str]:
            async for index in _parts(n):
                yield f"{index} {PART}\n"

        return StreamingResponse(lines(), media_type="text/plain", on_outcome=on_outcome)
    if kind == "sync":
        return StreamingResponse(
            (f"{index} {PART}\n" for index in _sync_parts(n)), media_type="text/plain", on_outcome=on_outcome
        )
    if kind == "events":

        async def events() -> AsyncIterator[str]:
            async for index in _parts(n):
                yield f"{index} {PART}"

        return EventSourceResponse(events(), on_outcome=on_outcome)
    if kind == "csv":
        return CSVResponse(((index, PART) for index in _sync_parts(n)), on_outcome=on_outcome)
    if kind == "jsonl":

        async def items() -> AsyncIterator[dict[str, Any]]:
            async for index in _parts(n):
                yield {"n": index, "part": PART}

        return JSONLinesResponse(items(), on_outcome=on_outcome)
    if kind == "page":

        async def rows() -> AsyncIterator[str]:
            async for index in _parts(n):
                yield f"{index} {PART}"

        return TEMPLATES.stream(request, "page.html", {"rows": rows()}, on_outcome=on_outcome)
    if kind == "file":
        return FileResponse(FILE, on_outcome=on_outcome)
    raise ValueError(kind)


async def stream(request: Request) -> Response:
    return respond(request.path_params["kind"], int(request.query_params.get("n", "10")), request)


def _producer_threads() -> int:
    busy = 0
    for frame in sys._current_frames().values():
        current = frame
        while current is not None:
            if current.f_code.co_filename.endswith(("_producers.py", "soak/app.py")):
                busy += 1
                break
            current = current.f_back  # type: ignore[assignment]
    return busy


async def stats(request: Request) -> Response:
    try:
        tasks = len(asyncio.all_tasks()) - 1
    except RuntimeError:  # pragma: no cover - the soak runs on asyncio
        tasks = -1
    return JSONResponse(
        {
            "outcomes": dict(OUTCOMES),
            "logged": dict(LOGGED),
            "log_samples": LOG_SAMPLES,
            "tasks": tasks,
            "threads": threading.active_count(),
            "producer_threads": _producer_threads() - 1,  # minus this handler's own frame
            "pid": os.getpid(),
        }
    )


async def info(request: Request) -> Response:
    return JSONResponse({"loop": type(asyncio.get_running_loop()).__module__})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    try:
        yield
    finally:
        FILE.unlink(missing_ok=True)


app = Starlette(
    routes=[Route("/info", info), Route("/_stats", stats), Route("/s/{kind}", stream)], lifespan=lifespan
)
