"""The chunk pump: the only module that calls ASGI ``send`` and ``receive``.

Every response class is an adapter that hands the pump a :class:`~._producers.Producer` and its
settings; the pump decides when to start, how to frame, when to flush, when to give up, and how
to end. The rule that keeps it simple: decisions are asked of the pure functions in
``_framing.py``; this module only sequences them and acts on the answers.

One response runs three cooperating pieces, two of them in child tasks (:class:`ChildTasks`):

* the producer task fills a bounded :class:`~._producers.ChunkQueue`;
* the sender (the response's own task) takes whatever is queued, joins it into one message
  and sends it; it never waits for more than is already there;
* the listener reads ``receive()`` for ``http.disconnect``, because no server in use reports
  ASGI spec 2.4 and ``send()`` stays silent once the client is gone.

Adapters shape the wire through :class:`PumpSettings` alone: keep-alive chunks while idle, an
opening chunk, a last chunk on errors and on shutdown, a bound on each ``send()``, and
``http.response.pathsend`` for whole files. They never call ``send`` themselves.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
from starlette.requests import ClientDisconnect

from ._exceptions import ContentLengthError, ResponseStateError, StreamShutdown, StreamTimeout
from ._framing import (
    TRAILER_DECLARATION,
    Framing,
    FramingDecision,
    body_allowed,
    decide_framing,
    status_trailers,
    trailers_eligible,
)
from ._outcome import Outcome, StreamOutcome
from ._producers import ChunkQueue, Producer, close_quietly
from ._shutdown import REGISTRY, ShutdownPolicy
from ._types import Message, RawHeaders, Receive, Scope, Send

logger = logging.getLogger("streaming_responses")

#: The callback type of ``on_outcome``: a plain or async function of one StreamOutcome.
OutcomeCallback = Callable[[StreamOutcome], "Awaitable[object] | object"]
#: Bytes to send once a started stream fails (an SSE ``event: error``), or ``None`` for none.
ErrorChunk = Callable[[BaseException], "bytes | None"]

#: Seconds the core waits for the courtesy sends of an ending (error chunk, trailers) when no
#: ``send_timeout`` bounds them: a client that stopped reading must not hold the task forever.
COURTESY_SEND_TIMEOUT = 5.0
#: The most loop turns the sender gives a producer that hands over one chunk per turn.
MAX_GATHER_TURNS = 4096
#: Seconds the core spends ending a stream cleanly after the server cancelled it.
CANCELLED_END_TIMEOUT = 0.5


class StreamState(enum.Enum):
    """Where one response is in its life; every step checks the state it comes from."""

    PENDING = "pending"  # nothing sent yet: an error still reaches the exception handlers
    STREAMING = "streaming"  # headers sent: an error can only be signalled on the wire
    FINISHED = "finished"  # the final body message (and trailers) went out
    FAILED = "failed"  # ended by an error, a timeout or a disconnect


class Lifecycle:
    """The state of one response, refusing out-of-order steps with :class:`ResponseStateError`."""

    __slots__ = ("started", "state")

    def __init__(self) -> None:
        self.state = StreamState.PENDING
        #: Whether the response start was sent; stays true once the response fails.
        self.started = False

    @property
    def finished(self) -> bool:
        """Whether the final body message (and trailers) went out."""
        return self.state is StreamState.FINISHED

    def start(self) -> None:
        self._require(StreamState.PENDING, "send the response start")
        self.state = StreamState.STREAMING
        self.started = True

    def finish(self) -> None:
        self._require(StreamState.STREAMING, "finish the body")
        self.state = StreamState.FINISHED

    def fail(self) -> None:
        if self.state is StreamState.FINISHED:
            raise ResponseStateError("cannot fail a response that already finished")
        self.state = StreamState.FAILED

    def _require(self, expected: StreamState, step: str) -> None:
        if self.state is not expected:
            raise ResponseStateError(
                f"cannot {step}: the response is {self.state.value}, not {expected.value}"
            )


@dataclass(frozen=True)
class PumpSettings:
    """Everything an adapter decides about one response, as plain data."""

    status_code: int
    raw_headers: RawHeaders
    charset: str = "utf-8"
    declared_length: int | None = None
    timeout: float | None = None
    idle_timeout: float | None = None
    duplex: bool = False
    message_bytes: int = 64 * 1024
    #: Send the headers before the first chunk exists (server-sent events need this).
    start_immediately: bool = False
    #: Sent right after an immediate start (granian holds headers back until a body message).
    opening_chunk: bytes | None = None
    #: Seconds without any body message, once started, after which ``keepalive_chunk`` is sent.
    keepalive: float | None = None
    keepalive_chunk: bytes = b""
    #: Seconds one ``send()`` may take; a client that stops reading that long is dropped.
    send_timeout: float | None = None
    #: Called with the exception when a started stream fails; its bytes go out before the end.
    error_chunk: ErrorChunk | None = None
    #: What server shutdown (or :func:`~._shutdown.end_all_streams`) does to this response.
    shutdown: ShutdownPolicy = ShutdownPolicy.WAIT
    #: The last chunk of a stream ended by shutdown under ``ShutdownPolicy.END``.
    shutdown_chunk: bytes | None = None
    #: A file to send with ``http.response.pathsend`` where the server offers it (whole files);
    #: requires ``declared_length``.
    pathsend: str | None = None


async def _awaited(coroutine: Coroutine[Any, Any, None]) -> None:  # pragma: no cover - trio only
    await coroutine


class ChildTasks:
    """Run the coroutines ``jobs`` as child tasks of the block; cancel them and wait for them
    when it ends.

    What an anyio task group does for the pump, at a fraction of its memory. An idle event
    stream is mostly this bookkeeping, and a server may hold thousands of them. On asyncio the
    children are plain tasks, each inside an anyio cancel scope. Leaving the block cancels
    those scopes: that cancellation stops at a shielded scope inside a child, as a task group's
    would, so a producer's shielded close still runs to the end. Then the block waits for the
    children, also when the response itself is being cancelled (that cancellation is raised
    afterwards). A child ending with an exception other than a cancellation is raised from the
    block (none of the pump's jobs lets one out). Elsewhere (trio) an anyio task group is used.
    """

    __slots__ = ("_ending", "_group", "_jobs", "_scopes", "_tasks")

    def __init__(self, jobs: Sequence[Coroutine[Any, Any, None]]) -> None:
        self._jobs = jobs
        self._tasks: list[asyncio.Task[None]] = []
        self._scopes: list[anyio.CancelScope | None] = []
        self._group: anyio.abc.TaskGroup | None = None
        self._ending = False

    async def __aenter__(self) -> None:
        jobs, self._jobs = self._jobs, ()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - only under trio
            self._group = group = anyio.create_task_group()
            await group.__aenter__()
            for job in jobs:
                group.start_soon(_awaited, job)
            return
        self._scopes = [None] * len(jobs)
        self._tasks = [loop.create_task(self._child(index, job)) for index, job in enumerate(jobs)]

    async def _child(self, index: int, job: Coroutine[Any, Any, None]) -> None:
        if self._ending:  # the block ended before this child first ran
            job.close()
            return
        with anyio.CancelScope() as scope:
            self._scopes[index] = scope
            await job

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        group = self._group
        if group is not None:  # pragma: no cover - only under trio
            group.cancel_scope.cancel()
            await group.__aexit__(kind, error, traceback)
            return
        self._ending = True
        for scope in self._scopes:
            if scope is not None:
                scope.cancel()
        tasks = self._tasks
        cancelled: BaseException | None = None
        pending = [task for task in tasks if not task.done()]
        while pending:
            try:
                await asyncio.wait(pending)
            except asyncio.CancelledError as exc:
                cancelled = exc  # the children finish first; then the cancellation goes on
            pending = [task for task in pending if not task.done()]
        if cancelled is not None:
            raise cancelled
        for task in tasks:
            problem = None if task.cancelled() else task.exception()
            if problem is not None:  # pragma: no cover - the pump's jobs catch what they raise
                raise problem


class ChunkPump:
    """Drive one producer to one ASGI connection. Create one per response call.

    :meth:`run` returns the :class:`StreamOutcome` when the response ended in a way the client
    can tell apart from success (complete, disconnected, or an error reported in trailers). It
    raises when the failure must reach the application (before the headers) or the server
    (after them, so that the connection is aborted instead of ended cleanly).
    """

    def __init__(
        self,
        settings: PumpSettings,
        producer: Producer,
        on_outcome: OutcomeCallback | None = None,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.on_outcome = on_outcome
        self.lifecycle = Lifecycle()
        self.bytes_sent = 0
        self.framing: Framing | None = None
        self.trailers = False
        #: The record of how the response ended, once it has (also when run() raised).
        self.outcome: StreamOutcome | None = None
        self._disconnected = False
        self._shutdown_requested = False
        self._send_timed_out = False
        self._body_warning_given = False
        self._main_scope = anyio.CancelScope()
        self._last_send = 0.0

    async def run(self, scope: Scope, receive: Receive, send: Send) -> StreamOutcome:
        begun = time.perf_counter()
        settings = self.settings
        method = scope.get("method", "GET")
        if not body_allowed(method, settings.status_code):
            return await self._run_without_body(method, send, begun)
        if settings.pathsend is not None and "http.response.pathsend" in scope.get("extensions", {}):
            return await self._run_pathsend(settings.pathsend, send, begun)
        if settings.send_timeout is not None:
            send = self._bounded(send, settings.send_timeout)
        if settings.shutdown is ShutdownPolicy.WAIT:
            return await self._run_body(scope, receive, send, begun)
        REGISTRY.register(self.request_shutdown)
        try:
            return await self._run_body(scope, receive, send, begun)
        finally:
            REGISTRY.unregister(self.request_shutdown)

    def request_shutdown(self) -> None:
        """End this stream as its shutdown policy says (called by the shutdown registry)."""
        if self.lifecycle.state in (StreamState.FINISHED, StreamState.FAILED):
            return
        self._shutdown_requested = True
        self.producer.stop_soon()
        self._main_scope.cancel()

    async def _run_body(self, scope: Scope, receive: Receive, send: Send, begun: float) -> StreamOutcome:
        settings = self.settings

        self.trailers = trailers_eligible(scope)
        queue = ChunkQueue(settings.message_bytes, settings.charset)
        error: BaseException | None = None
        if settings.timeout is not None:
            self._main_scope.deadline = anyio.current_time() + settings.timeout
        jobs = [self._produce(queue)]
        if not settings.duplex:
            jobs.append(self._listen(receive))
        try:
            async with ChildTasks(jobs):
                with self._main_scope:
                    try:
                        await self._send_body(queue, send)
                    except Exception as exc:
                        error = exc
                self.producer.stop_soon()
        except anyio.get_cancelled_exc_class():
            # Cancelled from outside (the server is shutting down, or a middleware gave up):
            # the producer was closed with the child tasks.
            with anyio.CancelScope(shield=True):
                if await self._end_cleanly_when_cancelled(send):
                    await self._end(Outcome.SHUTDOWN, begun)
                else:
                    await self._end(Outcome.DISCONNECTED, begun)
            raise

        if error is None and self.lifecycle.state is StreamState.FINISHED:
            # A disconnect seen after the final message does not undo a complete response.
            return await self._end(Outcome.COMPLETE, begun)
        if self._disconnected and error is None:
            return await self._end(Outcome.DISCONNECTED, begun)
        if self._shutdown_requested and error is None:
            return await self._shut_down(send, begun)
        if self._main_scope.cancelled_caught and error is None:
            assert settings.timeout is not None
            error = StreamTimeout("timeout", settings.timeout)
        if isinstance(error, ClientDisconnect):
            # A duplex producer saw the disconnect while reading request.stream().
            self._disconnected = True
            return await self._end(Outcome.DISCONNECTED, begun)
        if error is None:  # pragma: no cover - every path without an error finishes above
            raise ResponseStateError("the body ended without finishing the response")
        return await self._fail(error, send, begun)

    # -- the three pieces ----------------------------------------------------------------

    async def _produce(self, queue: ChunkQueue) -> None:
        producer = self.producer
        try:
            await producer.run(queue)
        except Exception as exc:
            queue.finish(exc)
        else:
            if not producer.stopped:  # a stopped producer has not reached the end of its body
                queue.finish()
        finally:
            problem = await close_quietly(producer)
            if problem is not None:
                logger.warning("closing the producer raised %r", problem, exc_info=problem)

    async def _listen(self, receive: Receive) -> None:
        while True:
            try:
                message = await receive()
            except Exception as exc:  # a broken receive() must not break the response
                logger.warning("receive() raised %r; no longer watching for disconnects", exc)
                return
            kind = message.get("type")
            if kind == "http.disconnect":
                self._disconnected = True
                self.producer.stop_soon()
                self._main_scope.cancel()
                return
            if kind == "http.request" and (message.get("body") or message.get("more_body")):
                self._warn_unread_body()

    def _warn_unread_body(self) -> None:
        if not self._body_warning_given:
            self._body_warning_given = True
            logger.warning(
                "the request body was still unread while the response streamed, and the "
                "disconnect listener received it; pass duplex=True if the producer reads "
                "request.stream()"
            )

    async def _send_body(self, queue: ChunkQueue, send: Send) -> None:
        settings = self.settings
        declared = settings.declared_length
        idle = settings.idle_timeout
        lifecycle = self.lifecycle
        looked_again = False
        keepalive = settings.keepalive
        if settings.start_immediately:
            await self._send_start(send, decide_framing_now(settings, None))
            if settings.opening_chunk:
                await self._send_chunk(send, settings.opening_chunk)
        while True:
            if not queue.items and not queue.finished:
                if keepalive is not None and lifecycle.started:
                    await self._wait_keeping_alive(queue, send, idle, keepalive)
                elif idle is None:
                    await queue.wait_for_data()
                else:
                    with anyio.move_on_after(idle) as idle_scope:
                        await queue.wait_for_data()
                    if idle_scope.cancelled_caught:
                        raise StreamTimeout("idle_timeout", idle)
            if not lifecycle.started and not looked_again:
                # Let a producer that is about to finish (or fail) do so before the headers
                # go out: one loop turn buys Content-Length for small bodies and a clean 500
                # for a generator that fails right after its first chunk.
                looked_again = True
                await anyio.lowlevel.checkpoint()
            elif lifecycle.started and not queue.finished:
                await gather_while_flowing(queue)
            # Read `finished` before looking at the items: it is set after the last append.
            finished = queue.finished
            chunks = queue.take_now()
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            size = len(body)
            queue.consumed(size)
            last = finished and not queue.items
            failed = last and queue.error is not None

            if not lifecycle.started:
                if failed:
                    raise_error(queue)
                if last:
                    # The whole body exists before the first send: frame it with its length.
                    decision = decide_framing_now(settings, size)
                    if declared is not None and size != declared:
                        raise ContentLengthError(declared, size, ended=size < declared)
                    await self._send_start(send, decision)
                    await self._send_final(send, body)
                    return
                await self._send_start(send, decide_framing_now(settings, None))

            total = self.bytes_sent + size
            if declared is not None and total > declared:
                raise ContentLengthError(declared, total, ended=False)
            if last and not failed and (declared is None or total == declared):
                await self._send_final(send, body)
                return
            if size:
                await send({"type": "http.response.body", "body": body, "more_body": True})
                self.bytes_sent = total
                if keepalive is not None:
                    self._last_send = anyio.current_time()
            if failed:
                raise_error(queue)
            if last:
                assert declared is not None
                raise ContentLengthError(declared, total, ended=True)

    async def _wait_keeping_alive(
        self, queue: ChunkQueue, send: Send, idle: float | None, keepalive: float
    ) -> None:
        """Wait for data, sending the keep-alive chunk after ``keepalive`` s without a send."""
        idle_deadline = None if idle is None else anyio.current_time() + idle
        while True:
            ping_at = self._last_send + keepalive
            deadline = ping_at if idle_deadline is None else min(ping_at, idle_deadline)
            if await queue.wait_for_data(deadline):
                return
            if idle_deadline is not None and anyio.current_time() >= idle_deadline:
                assert idle is not None
                raise StreamTimeout("idle_timeout", idle)
            if anyio.current_time() >= self._last_send + keepalive:
                await self._send_chunk(send, self.settings.keepalive_chunk)

    # -- sending -------------------------------------------------------------------------

    def _bounded(self, send: Send, seconds: float) -> Send:
        """``send`` limited to ``seconds`` per call: past that the client is taken as gone."""

        async def bounded_send(message: Message) -> None:
            with anyio.move_on_after(seconds) as scope:
                await send(message)
            if scope.cancelled_caught:
                self._send_timed_out = True
                raise StreamTimeout("send_timeout", seconds)

        return bounded_send

    async def _send_chunk(self, send: Send, chunk: bytes) -> None:
        """Send bytes that are not the producer's (opening, keep-alive, error, last chunks)."""
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        self.bytes_sent += len(chunk)
        self._last_send = anyio.current_time()

    async def _send_start(self, send: Send, decision: FramingDecision) -> None:
        self._last_send = anyio.current_time()
        self.lifecycle.start()
        self.framing = decision.framing
        headers = list(self.settings.raw_headers)
        if decision.content_length is not None:
            headers.append((b"content-length", str(decision.content_length).encode("ascii")))
        message: Message = {
            "type": "http.response.start",
            "status": self.settings.status_code,
            "headers": headers,
        }
        if self.trailers:
            headers.append(TRAILER_DECLARATION)
            message["trailers"] = True
        await send(message)

    async def _send_final(self, send: Send, body: bytes) -> None:
        await send({"type": "http.response.body", "body": body, "more_body": False})
        self.bytes_sent += len(body)
        if self.trailers:
            await send({"type": "http.response.trailers", "headers": status_trailers(None)})
        self.lifecycle.finish()

    async def _run_without_body(self, method: str, send: Send, begun: float) -> StreamOutcome:
        # HEAD, 1xx, 204, 304: the producer is closed without being iterated (RFC 9110 §9.3.2).
        problem = await close_quietly(self.producer)
        if problem is not None:
            logger.warning("closing the producer raised %r", problem, exc_info=problem)
        decision = decide_framing(
            method=method,
            status_code=self.settings.status_code,
            declared_length=self.settings.declared_length,
            complete_length=None,
        )
        await self._send_start(send, decision)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        self.lifecycle.finish()
        return await self._end(Outcome.COMPLETE, begun)

    async def _run_pathsend(self, path: str, send: Send, begun: float) -> StreamOutcome:
        # ASGI "Path Send" extension: the server sends the file itself (granian, zero copy).
        # The producer, built for servers without the extension, is closed unread.
        declared = self.settings.declared_length
        if declared is None:
            raise ResponseStateError("pathsend needs the file's length as declared_length")
        problem = await close_quietly(self.producer)
        if problem is not None:
            logger.warning("closing the producer raised %r", problem, exc_info=problem)
        await self._send_start(send, decide_framing_now(self.settings, declared))
        await send({"type": "http.response.pathsend", "path": path})
        self.bytes_sent = declared
        self.lifecycle.finish()
        return await self._end(Outcome.COMPLETE, begun)

    # -- endings -------------------------------------------------------------------------

    async def _end_cleanly_when_cancelled(self, send: Send) -> bool:
        """Terminate an ``END`` stream's body when the server cancels the response.

        Some servers give the application no notice of a shutdown at all (hypercorn's worker
        processes learn of it through a multiprocessing event and cancel what is left after
        ``--graceful-timeout``); an event stream should still end cleanly then.
        """
        settings = self.settings
        if (
            settings.shutdown is not ShutdownPolicy.END
            or self.lifecycle.state is not StreamState.STREAMING
            or self._disconnected
            or self._send_timed_out
        ):
            return False
        with anyio.move_on_after(CANCELLED_END_TIMEOUT):
            if settings.shutdown_chunk:
                await self._send_chunk(send, settings.shutdown_chunk)
            await self._send_final(send, b"")
        return self.lifecycle.finished

    async def _shut_down(self, send: Send, begun: float) -> StreamOutcome:
        """End a stream the server's shutdown (or end_all_streams()) asked to end."""
        settings = self.settings
        if settings.shutdown is ShutdownPolicy.ABORT:
            return await self._fail(StreamShutdown(), send, begun)
        with anyio.move_on_after(settings.send_timeout or COURTESY_SEND_TIMEOUT):
            if not self.lifecycle.started:
                await self._send_start(send, decide_framing_now(settings, None))
            if settings.shutdown_chunk:
                await self._send_chunk(send, settings.shutdown_chunk)
            await self._send_final(send, b"")
        if self.lifecycle.state is not StreamState.FINISHED:
            # The client did not take the last bytes in time: cut it off rather than wait.
            self.lifecycle.fail()
            await self._end(Outcome.SHUTDOWN, begun)
            raise StreamShutdown()
        return await self._end(Outcome.SHUTDOWN, begun)

    async def _fail(self, error: BaseException, send: Send, begun: float) -> StreamOutcome:
        if isinstance(error, StreamTimeout):
            kind = Outcome.TIMEOUT
        elif isinstance(error, StreamShutdown):
            kind = Outcome.SHUTDOWN
        else:
            kind = Outcome.ERROR
        started = self.lifecycle.started
        finished = self.lifecycle.state is StreamState.FINISHED
        if not finished:
            self.lifecycle.fail()
        if not started:
            # Nothing was sent: the application's exception handlers answer (404, 500, ...).
            await self._end(kind, begun, error)
            raise error
        logger.error(
            "streamed response failed after %d bytes: %s: %s",
            self.bytes_sent,
            type(error).__name__,
            error,
            exc_info=error,
        )
        courteous = not finished and not self._disconnected and not self._send_timed_out
        if courteous and self.settings.error_chunk is not None:
            await self._send_error_chunk(send, error)
        if self.trailers and courteous and not self._send_timed_out:
            # RFC 9110 §6.5: trailers can say the body is incomplete where a status no longer can.
            with anyio.move_on_after(self.settings.send_timeout or COURTESY_SEND_TIMEOUT):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                await send({"type": "http.response.trailers", "headers": status_trailers(error)})
                return await self._end(kind, begun, error)
        await self._end(kind, begun, error)
        # Re-raising is the only honest signal left on HTTP/1.1: the server drops the
        # connection, so a chunked body is never terminated and a sized one ends short.
        raise error

    async def _send_error_chunk(self, send: Send, error: BaseException) -> None:
        make_chunk = self.settings.error_chunk
        assert make_chunk is not None
        try:
            chunk = make_chunk(error)
        except Exception as exc:
            logger.warning("error_chunk raised %r; sending no error chunk", exc, exc_info=exc)
            return
        if not chunk:
            return
        # A bounded send that gives up raises StreamTimeout; the abort that follows still happens.
        bound = self.settings.send_timeout or COURTESY_SEND_TIMEOUT
        with anyio.move_on_after(bound), suppress(StreamTimeout):
            await self._send_chunk(send, chunk)

    async def _end(self, kind: Outcome, begun: float, error: BaseException | None = None) -> StreamOutcome:
        outcome = StreamOutcome(
            outcome=kind,
            status_code=self.settings.status_code if self.lifecycle.started else None,
            bytes_sent=self.bytes_sent,
            duration=time.perf_counter() - begun,
            framing=self.framing,
            trailers=self.trailers and self.lifecycle.started,
            error=error,
        )
        self.outcome = outcome
        callback = self.on_outcome
        if callback is not None:
            try:
                result = callback(outcome)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                logger.warning("on_outcome raised %r", exc, exc_info=exc)
        return outcome


def decide_framing_now(settings: PumpSettings, complete_length: int | None) -> FramingDecision:
    """Framing for a response that has a body, from its settings and what is known so far."""
    return decide_framing(
        method="GET",
        status_code=settings.status_code,
        declared_length=settings.declared_length,
        complete_length=complete_length,
    )


async def gather_while_flowing(queue: ChunkQueue) -> None:
    """Give the producer loop turns while each one brings more chunks, up to the bound.

    Some producers hand over one chunk per loop turn: FastAPI wraps a generator path
    operation so that it awaits ``anyio.sleep(0)`` after every item. Sending at once would
    then mean one ASGI message per item. The sender instead yields the loop for as long as
    every turn brings new chunks and the queue is below its bound; the first turn that brings
    nothing ends the gathering. No clock is involved, so a chunk is held back by at most the
    loop turns in which more chunks arrived, never for a producer that has gone quiet.
    """
    # Count items, not bytes: the async producer's hot loop writes `produced` back lazily.
    # The producer itself stops at the byte bound, which ends the growth and so the gathering.
    items = queue.items
    for _ in range(MAX_GATHER_TURNS):
        before = len(items)
        await anyio.lowlevel.checkpoint()
        if len(items) == before or queue.finished:
            return


def raise_error(queue: ChunkQueue) -> None:
    """Re-raise the exception the producer finished with."""
    error = queue.error
    assert error is not None
    raise error
