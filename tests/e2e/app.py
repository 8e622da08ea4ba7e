"""The application the end-to-end servers run: one route per guarantee of the chunk pump.

Run it as ``tests.e2e.app:app`` from the repository root. Every producer is written once as a
*script* of steps (send a chunk, sleep, raise) and played in the style the request asks for
(``?style=async``, ``sync`` or ``writer``), so each guarantee is checked for every producer
style with the same bytes. What only the server can see (whether a producer's ``finally`` ran
and when, the outcome reported to ``on_outcome``, live tasks and threads) is recorded per
request id and served as JSON by ``GET /_state?id=...``.

``STREAMING_E2E_IMPL=starlette`` swaps in Starlette's own ``StreamingResponse`` (behind a shim
that accepts and ignores our keyword arguments), to validate the harness: many tests must fail
against it, which shows that they can.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.responses import StreamingResponse as StarletteStreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

IMPL_ENV = "STREAMING_E2E_IMPL"

#: Set by :class:`RequestIdMiddleware` from the ``x-request-id`` header, read inside producers.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("REQUEST_ID", default="unset")


# --- the script of a producer -------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """Hand ``data`` to the response; a callable is called at that moment (in the producer)."""

    data: object


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Raise:
    error: BaseException


Step = Chunk | Sleep | Raise


def _data(step: Chunk) -> object:
    return step.data() if callable(step.data) else step.data


# --- server-side observations ---------------------------------------------------------------


class Probes:
    """What happened to each request's producer, keyed by the request's ``id`` parameter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: dict[str, dict[str, Any]] = {}

    def record(self, probe_id: str, **fields: Any) -> None:
        with self._lock:
            self.records.setdefault(probe_id, {}).update(fields)

    def get(self, probe_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self.records.get(probe_id)
            return dict(record) if record is not None else None

    def active(self) -> list[str]:
        """Producers that started and whose ``finally`` has not run."""
        with self._lock:
            return [
                key for key, rec in self.records.items() if rec.get("started") and "finally_at" not in rec
            ]


PROBES = Probes()


def live_tasks() -> int:
    """How many tasks the event loop runs (asyncio), or the tasks under trio's root task."""
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # trio (hypercorn -k trio): no asyncio loop
        import trio.lowlevel

        def count(task: trio.lowlevel.Task) -> int:
            return 1 + sum(count(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

        return count(trio.lowlevel.current_root_task())  # type: ignore[arg-type]


def _started(probe_id: str | None) -> None:
    if probe_id is not None:
        PROBES.record(
            probe_id, started=True, started_at=time.monotonic(), thread=threading.current_thread().name
        )


def _finished(probe_id: str | None, how: str) -> None:
    if probe_id is not None:
        PROBES.record(probe_id, finally_at=time.monotonic(), how=how)


async def play_async(steps: Iterator[Step], probe_id: str | None) -> AsyncIterator[object]:
    _started(probe_id)
    how = "exhausted"
    try:
        for step in steps:
            if isinstance(step, Sleep):
                await anyio.sleep(step.seconds)
            elif isinstance(step, Raise):
                raise step.error
            else:
                yield _data(step)
    except GeneratorExit:
        how = "closed"
        raise
    except anyio.get_cancelled_exc_class():
        how = "cancelled"
        raise
    except BaseException as exc:
        how = f"raised {type(exc).__name__}"
        raise
    finally:
        _finished(probe_id, how)


def play_sync(steps: Iterator[Step], probe_id: str | None) -> Iterator[object]:
    _started(probe_id)
    how = "exhausted"
    try:
        for step in steps:
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
            elif isinstance(step, Raise):
                raise step.error
            else:
                yield _data(step)
    except GeneratorExit:
        how = "closed"
        raise
    except BaseException as exc:
        how = f"raised {type(exc).__name__}"
        raise
    finally:
        _finished(probe_id, how)


def play_writer(
    steps: Iterator[Step], probe_id: str | None
) -> Callable[[Callable[[Any], Awaitable[None]]], Awaitable[None]]:
    async def produce(write: Callable[[Any], Awaitable[None]]) -> None:
        _started(probe_id)
        how = "exhausted"
        try:
            for step in steps:
                if isinstance(step, Sleep):
                    await anyio.sleep(step.seconds)
                elif isinstance(step, Raise):
                    raise step.error
                else:
                    await write(_data(step))
        except anyio.get_cancelled_exc_class():
            how = "cancelled"
            raise
        except BaseException as exc:
            how = f"raised {type(exc).__name__}"
            raise
        finally:
            _finished(probe_id, how)

    return produce


def play(style: str, steps: Iterator[Step], probe_id: str | None) -> object:
    if style == "async":
        return play_async(steps, probe_id)
    if style == "sync":
        return play_sync(steps, probe_id)
    if style == "writer":
        return play_writer(steps, probe_id)
    raise HTTPException(400, f"unknown style {style!r}")


# --- which StreamingResponse -----------------------------------------------------------------


class _StarletteShim(StarletteStreamingResponse):
    """Starlette's StreamingResponse with our signature, for validating the harness only."""

    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        media_type: str | None = None,
        background: Any = None,
        *,
        content_length: int | None = None,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        duplex: bool = False,
        on_outcome: Any = None,
    ) -> None:
        if callable(content) and not hasattr(content, "__aiter__") and not hasattr(content, "__iter__"):
            content = _writer_to_iterator(content)
        headers = dict(headers or {})
        if content_length is not None:
            headers["content-length"] = str(content_length)
        super().__init__(content, status_code, headers, media_type, background)


async def _writer_to_iterator(writer: Callable[[Any], Awaitable[None]]) -> AsyncIterator[object]:
    queue: asyncio.Queue[tuple[bool, object]] = asyncio.Queue(maxsize=1)

    async def write(data: object) -> None:
        await queue.put((False, data))

    async def run() -> None:
        try:
            await writer(write)
        finally:
            await queue.put((True, None))

    task = asyncio.ensure_future(run())
    try:
        while True:
            done, item = await queue.get()
            if done:
                break
            yield item
        await task
    finally:
        task.cancel()


def _response_class() -> Callable[..., Response]:
    if os.environ.get(IMPL_ENV, "ours") == "starlette":
        return _StarletteShim
    from streaming_responses import StreamingResponse

    return StreamingResponse


Respond = _response_class()


def _outcome_recorder(probe_id: str | None) -> Callable[[Any], None] | None:
    if probe_id is None:
        return None

    def on_outcome(outcome: Any) -> None:
        framing = outcome.framing
        error = outcome.error
        PROBES.record(
            probe_id,
            outcome={
                "outcome": outcome.kind.value,
                "status_code": outcome.status_code,
                "bytes_sent": outcome.bytes_sent,
                "duration": outcome.duration,
                "framing": framing.value if framing is not None else None,
                "trailers": outcome.trailers,
                "error": type(error).__name__ if error is not None else None,
                "at": time.monotonic(),
            },
            outcomes=(PROBES.get(probe_id) or {}).get("outcomes", 0) + 1,
        )

    return on_outcome


def stream(request: Request, steps: Iterator[Step], **kwargs: Any) -> Response:
    """A response playing ``steps`` in the style named by ``?style=`` (default ``async``)."""
    probe_id = request.query_params.get("id")
    style = request.query_params.get("style", "async")
    kwargs.setdefault("media_type", "text/plain")
    return Respond(play(style, steps, probe_id), on_outcome=_outcome_recorder(probe_id), **kwargs)


def _int(request: Request, name: str, default: int) -> int:
    return int(request.query_params.get(name, default))


def _float(request: Request, name: str, default: float) -> float:
    return float(request.query_params.get(name, default))


# --- routes ---------------------------------------------------------------------------------


async def numbered(request: Request) -> Response:
    """``n`` chunks ``chunk-<i>\\n``, ``interval`` seconds apart (0: all at once).

    ``delay`` seconds pass before the first chunk.
    """
    n = _int(request, "n", 3)
    interval = _float(request, "interval", 0.0)
    delay = _float(request, "delay", 0.0)

    def steps() -> Iterator[Step]:
        if delay:
            yield Sleep(delay)
        for i in range(n):
            if interval and i:
                yield Sleep(interval)
            yield Chunk(f"chunk-{i}\n".encode())

    return stream(request, steps())


async def small(request: Request) -> Response:
    """A body that is complete before anything is sent: a list, or ``?style=async``."""
    if request.query_params.get("style") == "async":
        return stream(request, iter([Chunk(b"hello, "), Chunk(b"world")]))
    return Respond([b"hello, ", b"world"], media_type="text/plain")


async def declared_length(request: Request) -> Response:
    """``content_length=10`` with a body of 10 (``right``), 6 (``short``) or 14 (``long``) bytes.

    With ``?slow=1`` the chunks are 50 ms apart, so the headers go out before the mismatch shows.
    """
    parts = {
        "right": [b"01234", b"56789"],
        "short": [b"012", b"345"],
        "long": [b"01234", b"567890123"],
    }[request.query_params.get("mode", "right")]
    slow = request.query_params.get("slow") == "1"

    def steps() -> Iterator[Step]:
        for i, part in enumerate(parts):
            if slow and i:
                yield Sleep(0.05)
            yield Chunk(part)

    return stream(request, steps(), content_length=10)


async def fail_before(request: Request) -> Response:
    """Raise before the first chunk: ``?status=404`` an HTTPException, else a RuntimeError."""
    error: BaseException
    if request.query_params.get("status") == "404":
        error = HTTPException(404, "no such thing")
    else:
        error = RuntimeError("failed before the first chunk")
    return stream(request, iter([Sleep(0.01), Raise(error), Chunk(b"never")]))


async def fail_after(request: Request) -> Response:
    """Two chunks 20 ms apart, then a RuntimeError."""
    steps: list[Step] = [
        Chunk(b"first\n"),
        Sleep(0.02),
        Chunk(b"second\n"),
        Sleep(0.02),
        Raise(RuntimeError("boom")),
    ]
    return stream(request, iter(steps))


async def endless(request: Request) -> Response:
    """A chunk every ``interval`` seconds (default 10 ms) until the client goes away."""
    interval = _float(request, "interval", 0.01)

    def steps() -> Iterator[Step]:
        i = 0
        while True:
            yield Chunk(f"tick-{i}\n".encode())
            yield Sleep(interval)
            i += 1

    return stream(request, steps())


async def slow(request: Request) -> Response:
    """``n`` chunks ``interval`` seconds apart, each carrying ``time.monotonic()`` when produced."""
    n = _int(request, "n", 5)
    interval = _float(request, "interval", 0.02)

    def stamp(i: int) -> Callable[[], bytes]:
        return lambda: f"{i} {time.monotonic():.6f}\n".encode()

    def steps() -> Iterator[Step]:
        for i in range(n):
            if i:
                yield Sleep(interval)
            yield Chunk(stamp(i))

    return stream(request, steps())


async def burst(request: Request) -> Response:
    """``n`` tiny chunks produced at once between a first and a last chunk 50 ms away.

    The pauses keep the body from being complete before the first send, so the burst is
    chunked and its coalescing shows in the chunk framing.
    """
    n = _int(request, "n", 200)

    def steps() -> Iterator[Step]:
        yield Chunk(b"start\n")
        yield Sleep(0.05)
        for i in range(n):
            yield Chunk(f"{i:04d}\n".encode())
        yield Sleep(0.05)
        yield Chunk(b"end\n")

    return stream(request, steps())


async def context(request: Request) -> Response:
    """Three chunks reading the ``REQUEST_ID`` context variable inside the producer."""
    steps: list[Step] = [
        Chunk(lambda: f"{REQUEST_ID.get()}\n"),
        Sleep(0.01),
        Chunk(lambda: f"{REQUEST_ID.get()}\n"),
        Sleep(0.01),
        Chunk(lambda: f"{REQUEST_ID.get()}\n"),
    ]
    return stream(request, iter(steps))


async def timeouts(request: Request) -> Response:
    """``?kind=idle``: a chunk, then silence past ``idle_timeout=0.2``.
    ``?kind=total``: a chunk every 20 ms past ``timeout=0.3``.
    ``?kind=before``: silence past ``timeout=0.2`` before the first chunk.
    """
    kind = request.query_params.get("kind", "idle")
    if kind == "idle":
        return stream(request, iter([Chunk(b"first\n"), Sleep(2.0), Chunk(b"late\n")]), idle_timeout=0.2)
    if kind == "before":
        return stream(request, iter([Sleep(2.0), Chunk(b"late\n")]), timeout=0.2)

    def steps() -> Iterator[Step]:
        while True:
            yield Chunk(b"tick\n")
            yield Sleep(0.02)

    return stream(request, steps(), timeout=0.3)


async def bad_chunk(request: Request) -> Response:
    """A chunk that is an ``int``: ``?when=first`` before any bytes, ``later`` after one."""
    if request.query_params.get("when") == "later":
        return stream(request, iter([Chunk(b"fine\n"), Sleep(0.02), Chunk(42), Chunk(b"never\n")]))
    return stream(request, iter([Chunk(42), Chunk(b"never\n")]))


async def duplex(request: Request) -> Response:
    """Stream the request body back upper-cased, chunk by chunk, while it is still arriving."""
    probe_id = request.query_params.get("id")

    async def upper() -> AsyncIterator[bytes]:
        _started(probe_id)
        how = "exhausted"
        try:
            async for chunk in request.stream():
                if chunk:
                    yield chunk.upper()
        except BaseException as exc:
            how = f"raised {type(exc).__name__}"
            raise
        finally:
            _finished(probe_id, how)

    return Respond(upper(), media_type="text/plain", duplex=True, on_outcome=_outcome_recorder(probe_id))


async def state(request: Request) -> Response:
    """Server-side observations: one probe (``?id=``), live tasks and threads, active producers."""
    probe_id = request.query_params.get("id")
    threads = threading.enumerate()
    return JSONResponse(
        {
            "probe": PROBES.get(probe_id) if probe_id else None,
            "active": PROBES.active(),
            # Minus this request's own task, so that an idle server reads the same every time.
            "tasks": live_tasks() - 1,
            "threads": len(threads),
            "thread_names": sorted(t.name for t in threads),
            "now": time.monotonic(),
            "impl": os.environ.get(IMPL_ENV, "ours"),
            "pid": os.getpid(),
        }
    )


class RequestIdMiddleware:
    """Pure ASGI middleware: sets ``REQUEST_ID`` from ``x-request-id`` around the whole call."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        value = dict(scope["headers"]).get(b"x-request-id", b"none").decode("latin-1")
        token = REQUEST_ID.set(value)
        try:
            await self.app(scope, receive, send)
        finally:
            REQUEST_ID.reset(token)


def create_app() -> Starlette:
    routes = [
        Route("/_state", state),
        Route("/numbered", numbered),
        Route("/small", small),
        Route("/length", declared_length),
        Route("/fail-before", fail_before),
        Route("/fail-after", fail_after),
        Route("/endless", endless),
        Route("/slow", slow),
        Route("/burst", burst),
        Route("/context", context),
        Route("/timeout", timeouts),
        Route("/bad-chunk", bad_chunk),
        Route("/duplex", duplex, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(RequestIdMiddleware)
    return app


app = create_app()
