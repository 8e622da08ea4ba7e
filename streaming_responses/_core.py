"""The chunk pump: the only module that calls ASGI ``send`` and ``receive``.

Every response class is an adapter that hands the pump a :class:`~._producers.Producer` and its
:class:`PumpSettings`; the pump sequences one response: when to start, what to do with each
batch, when to give up, and how to end. The rule that keeps it simple: the pump decides
nothing itself. It asks the pure functions (:func:`~._framing.plan_batch` for each batch,
:func:`~._endings.decide_ending` for the end), keeps the answers' facts in one
:class:`~._state.ResponseState`, and acts.

Every body byte leaves through one method, :meth:`ChunkPump._emit` (the producer's chunks, the
opening chunk, keep-alive pings, the error and the shutdown chunk alike), which also counts
what was sent; trailers leave through :meth:`ChunkPump._emit_trailers` and the response start
through :meth:`ChunkPump._send_start`. A transform of the body belongs there and nowhere else:
compression (``_compression.py``) codes each message in ``_emit`` and ends it with a flush,
and ``_send_start`` adds its headers.

One response runs three cooperating pieces, in child tasks of the response (``response_tasks``
of the loop seam, ``_loops.py``: plain tasks on asyncio, a task group on trio), while the
response's own task waits for the end:

* the producer task fills a bounded :class:`~._producers.ChunkQueue`;
* the sender takes whatever is queued, joins it into one message and sends it; it never waits
  for more than is already there (how producers fill whole messages anyway is the loop-turn
  model, in ``_producers.py``). On asyncio a sender that finds nothing queued *parks*: its
  task ends, and the next chunk, the end of the body or the timer of the next keep-alive
  starts another (an idle event stream holds no sender task, and its timer is an entry in one
  heap per loop). On trio it waits in its task;
* the listener reads ``receive()`` for ``http.disconnect`` (the loop seam awaits it for the
  core), because no server in use reports ASGI spec 2.4 and ``send()`` stays silent once the
  client is gone.

A disconnect, a shutdown, the total ``timeout``, or the body's end wakes the response's task
(one :class:`~._loops.Waker`); leaving the block of child tasks then cancels what is left of
them (the producer's cancellation stops at its anyio shields) and waits for them.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.lowlevel
from starlette.requests import ClientDisconnect

from ._compression import MIN_SIZE, Codings, MessageCoder, coded_start, offered
from ._deployment import check_framing, check_wrapping
from ._endings import (
    TRAILER_DECLARATION,
    Ending,
    decide_ending,
    failure_outcome,
    status_trailers,
    trailers_eligible,
)
from ._exceptions import (
    CompressionError,
    ContentLengthError,
    ResponseStateError,
    StreamShutdown,
    StreamTimeout,
)
from ._framing import (
    BatchPlan,
    Failure,
    FramingDecision,
    Opening,
    body_allowed,
    decide_framing,
    decide_opening,
    plan_batch,
)
from ._logs import log_failed_stream
from ._loops import Parking, ResponseTasks, Scheduled, current_loop
from ._negotiation import choose_coding, request_accept_encoding, with_vary
from ._outcome import OBSERVER_SCOPE_KEY, Outcome, OutcomeCallback, StreamObserver, StreamOutcome
from ._producers import ChunkQueue, Producer, close_quietly
from ._shutdown import REGISTRY, ShutdownPolicy
from ._state import Gone, ResponseState
from ._types import Message, RawHeaders, Receive, Scope, Send

logger = logging.getLogger("streaming_responses")

__all__ = ("ChunkPump", "ErrorChunk", "OutcomeCallback", "PumpSettings")

#: Bytes to send once a started stream fails (an SSE ``event: error``), or ``None`` for none.
ErrorChunk = Callable[[BaseException], "bytes | None"]

#: Seconds the core waits for the courtesy sends of an ending (error chunk, trailers) when no
#: ``send_timeout`` bounds them: a client that stopped reading must not hold the task forever.
COURTESY_SEND_TIMEOUT = 5.0
#: Seconds the core spends ending a stream cleanly after the server cancelled it.
CANCELLED_END_TIMEOUT = 0.5
#: Loop turns an immediate-start stream gives a producer on the loop to produce or fail
#: before its headers go out (a producer that waits for I/O takes longer than this).
OPENING_TURNS = 8
#: Seconds an immediate-start stream gives a producer in a worker thread (a thread cannot be
#: watched turn by turn) to produce its first item or fail before its headers go out.
OPENING_THREAD_GRACE = 0.25


@dataclass(frozen=True, slots=True)
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
    #: The content codings the body may be compressed with, with their levels, in preference
    #: order (``compress=``, read by ``_compression.parse_compress``); empty: never compressed.
    compress: Codings = ()


class OutcomeHolder(Protocol):
    """What keeps a response's outcome (the response class, for ``response.outcome``)."""

    outcome: StreamOutcome | None


class ChunkPump:
    """Drive one producer to one ASGI connection. Create one per response call.

    :meth:`run` returns the :class:`StreamOutcome` when the response ended in a way the client
    can tell apart from success (complete, disconnected, or an error reported in trailers). It
    raises when the failure must reach the application (before the headers) or the server
    (after them, so that the connection is aborted instead of ended cleanly).
    """

    __slots__ = (
        "_begun",
        "_body_warning_given",
        "_closed",
        "_coder",
        "_error",
        "_escaped",
        "_finishing",
        "_first_byte",
        "_holder",
        "_idle_deadline",
        "_looked_again",
        "_messages",
        "_method",
        "_observed",
        "_opened",
        "_parking",
        "_path",
        "_queue",
        "_scope",
        "_send",
        "_sending",
        "_tasks",
        "_timed_out",
        "_timer",
        "_timer_at",
        "_track_sends",
        "_vary",
        "_wake",
        "name",
        "on_outcome",
        "outcome",
        "producer",
        "settings",
        "state",
    )

    def __init__(
        self,
        settings: PumpSettings,
        producer: Producer,
        on_outcome: OutcomeCallback | None = None,
        *,
        name: str = "response",
        holder: OutcomeHolder | None = None,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.on_outcome = on_outcome
        #: The response class's name, for the log record of a failure and for observers.
        self.name = name
        #: Where the response is; the one object the ending is decided from.
        self.state = ResponseState()
        #: The record of how the response ended, once it has (also when run() raised).
        self.outcome: StreamOutcome | None = None
        #: An object (the response) whose ``outcome`` is set with this one's.
        self._holder = holder
        self._messages = 0
        self._begun = 0.0
        self._first_byte: float | None = None
        self._track_sends = settings.keepalive is not None
        self._body_warning_given = False
        #: The request line, for the log record of a failure.
        self._method = "GET"
        self._path = ""
        self._observed: Callable[[StreamOutcome], None] | None = None
        #: The negotiated content coding (``None``: the body goes as it is).
        self._coder: MessageCoder | None = None
        #: Whether the response says ``Vary: Accept-Encoding`` (it negotiates).
        self._vary = False
        self._scope: Scope = {}
        # -- while the body runs (_run_body) ---------------------------------------------
        self._queue: ChunkQueue | None = None
        self._send: Send | None = None
        self._tasks: ResponseTasks | None = None
        #: The shared timers of a parking sender (asyncio), or ``None`` (it waits in its task).
        self._parking: Parking | None = None
        #: The callback of a parked sender (``_on_wake``, bound once), where senders park.
        self._wake: Callable[[], None] | None = None
        self._timer: Scheduled | None = None
        self._timer_at = 0.0
        #: When a parked sender's idle timeout runs out (``None``: not counting).
        self._idle_deadline: float | None = None
        #: Whether a sender task is running (there is at most one).
        self._sending = False
        #: Whether the response stopped waiting: nothing is started any more.
        self._closed = False
        self._opened = False
        self._looked_again = False
        self._finishing = False
        self._timed_out = False
        #: What stopped the sender (or the idle timeout of a parked one).
        self._error: Exception | None = None
        #: A cancellation that reached the sender from elsewhere than this response.
        self._escaped: BaseException | None = None

    def run(self, scope: Scope, receive: Receive, send: Send) -> Coroutine[Any, Any, StreamOutcome]:
        """Await the result to run the response (a plain method: one frame fewer while it runs)."""
        observe: StreamObserver | None = scope.get(OBSERVER_SCOPE_KEY)
        if observe is None:
            return self._run(scope, receive, send)
        return self._run_observed(observe, scope, receive, send)

    async def _run_observed(
        self, observe: StreamObserver, scope: Scope, receive: Receive, send: Send
    ) -> StreamOutcome:
        # The hook for tracing (streaming_responses.otel): it spans the whole run, not the
        # endpoint, and is given the outcome before its context exits.
        with observe(self.name, scope) as observed:
            self._observed = observed
            return await self._run(scope, receive, send)

    def _run(self, scope: Scope, receive: Receive, send: Send) -> Coroutine[Any, Any, StreamOutcome]:
        """Set the response up and pick how it runs; the coroutine returned runs it."""
        self._begun = time.perf_counter()
        self._scope = scope
        check_wrapping(send)
        settings = self.settings
        method = scope.get("method", "GET")
        self._method = method
        self._path = scope.get("path", "")
        pathsend = settings.pathsend is not None and "http.response.pathsend" in scope.get("extensions", {})
        if settings.compress:
            self._negotiate(scope, method, pathsend)
        if not body_allowed(method, settings.status_code):
            return self._run_without_body(method, send)
        if pathsend:
            assert settings.pathsend is not None
            return self._run_pathsend(settings.pathsend, send)
        self.state.trailers_allowed = trailers_eligible(scope)
        if settings.send_timeout is not None:
            send = self._bounded(send, settings.send_timeout)
        return self._run_body(receive, send)

    def _negotiate(self, scope: Scope, method: str, pathsend: bool) -> None:
        """Choose the content coding of this response from the request (``choose_coding``)."""
        settings = self.settings
        codings = offered(settings.compress)
        choice = choose_coding(
            offered=[coding for coding, _ in codings],
            accept_encoding=request_accept_encoding(scope.get("headers") or ()),
            method=method,
            status_code=settings.status_code,
            headers=settings.raw_headers,
            pathsend=pathsend,
        )
        self._vary = choice.vary
        if choice.coding is not None:
            self._coder = MessageCoder(choice.coding, dict(codings)[choice.coding])

    def request_shutdown(self) -> None:
        """End this stream as its shutdown policy says (called by the shutdown registry)."""
        if self.state.ended:
            return
        self.state.shutdown_requested = True
        self.producer.stop_soon()
        if self._tasks is not None:
            self._tasks.wake()

    async def _run_body(self, receive: Receive, send: Send) -> StreamOutcome:
        """Run the producer and the sender until the body ends or must stop, listening meanwhile.

        One coroutine, not a chain of them: an idle stream's task holds it for hours.
        """
        settings = self.settings
        queue = self._queue = ChunkQueue(settings.message_bytes, settings.charset)
        self._send = send
        loop = current_loop()
        self._parking = loop.parking()
        if self._parking is not None:
            self._wake = self._on_wake
        registered = settings.shutdown is not ShutdownPolicy.WAIT
        if registered:
            REGISTRY.register(self.request_shutdown)
        try:
            try:
                async with loop.response_tasks() as tasks:
                    self._tasks = tasks
                    try:
                        listening = self._begin(tasks, queue, receive)
                        while listening and not tasks.woken:
                            tasks.receiving()
                            try:
                                message: Message | Exception = await receive()
                            except BaseException as exc:
                                if tasks.received(exc):
                                    break  # woken
                                if not isinstance(exc, Exception):
                                    raise
                                message = exc
                            else:
                                tasks.received()
                            if not self._heard(message):
                                break
                        if not tasks.woken:
                            await tasks.wait()
                        self._timed_out = tasks.expired
                    finally:
                        self._closed = True
                        self._stop_timer()
                    self.producer.stop_soon()
                    if self._escaped is not None:
                        raise self._escaped
            except anyio.get_cancelled_exc_class():
                # Cancelled from outside (the server is shutting down, or a middleware gave
                # up): the producer was closed with the child tasks.
                with anyio.CancelScope(shield=True):
                    await self._end_when_cancelled(send)
                raise
            error = self._stopped_by(self._error)
            return await self._conclude(self._decide(error), error, send)
        finally:
            if registered:
                REGISTRY.unregister(self.request_shutdown)

    def _begin(self, tasks: ResponseTasks, queue: ChunkQueue, receive: Receive) -> bool:
        """Start the producer, the sender, the deadline, and the listener where it is a task.

        Return whether the response's own task is to listen for the disconnect (asyncio).
        """
        settings = self.settings
        tasks.start_producer(self._produce(queue))
        self._start_sender()
        if settings.timeout is not None:
            tasks.wake_at(anyio.current_time() + settings.timeout)
        if settings.duplex:  # the producer reads receive() itself
            return False
        if tasks.listens_here:
            return True
        tasks.listen(receive, self._heard)
        return False

    def _stopped_by(self, error: BaseException | None) -> BaseException | None:
        """The exception that stopped the body, once the reasons without one are accounted for."""
        state = self.state
        if isinstance(error, ClientDisconnect):
            # A duplex producer saw the disconnect while reading request.stream().
            state.client_left(Gone.DISCONNECTED)
            return None
        if error is not None or state.finished or state.gone is not None:
            return error
        if state.shutdown_requested:
            return StreamShutdown() if self.settings.shutdown is ShutdownPolicy.ABORT else None
        if self._timed_out:
            timeout = self.settings.timeout
            assert timeout is not None
            return StreamTimeout("timeout", timeout)
        return None

    def _decide(self, error: BaseException | None, *, cancelled: bool = False) -> Ending:
        state = self.state
        settings = self.settings
        return decide_ending(
            phase=state.phase,
            failure=None if error is None else failure_outcome(error),
            client_gone=state.gone is not None,
            shutdown_requested=state.shutdown_requested,
            cancelled=cancelled,
            policy=settings.shutdown,
            trailers_allowed=state.trailers_allowed,
            has_error_chunk=settings.error_chunk is not None,
            has_shutdown_chunk=bool(settings.shutdown_chunk),
        )

    # -- the three pieces ----------------------------------------------------------------

    async def _produce(self, queue: ChunkQueue) -> None:
        tasks = self._tasks
        assert tasks is not None
        producer = self.producer
        with tasks.producer_scope():
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

    def _heard(self, message: Message | Exception) -> bool:
        """The listener: handle what ``receive()`` gave; return whether to listen on."""
        if isinstance(message, Exception):  # a broken receive() must not break the response
            logger.warning("receive() raised %r; no longer watching for disconnects", message)
            return False
        kind = message.get("type")
        if kind == "http.disconnect":
            self.state.client_left(Gone.DISCONNECTED)
            self.producer.stop_soon()
            if not self._finishing:
                self._wake_response()
            return False
        if kind == "http.request" and (message.get("body") or message.get("more_body")):
            self._warn_unread_body()
        return True

    def _wake_response(self) -> None:
        tasks = self._tasks
        assert tasks is not None
        tasks.wake()

    def _warn_unread_body(self) -> None:
        if not self._body_warning_given:
            self._body_warning_given = True
            logger.warning(
                "the request body was still unread while the response streamed, and the "
                "disconnect listener received it; pass duplex=True if the producer reads "
                "request.stream()"
            )

    def _start_sender(self, ping: bool = False) -> None:
        """Start a run of the sender, unless one runs or the response stopped waiting."""
        if self._sending or self._closed:
            return
        self._sending = True
        tasks = self._tasks
        assert tasks is not None
        tasks.start_sender(self._sender(ping))

    async def _sender(self, ping: bool) -> None:
        """One run of the sender, in a task of its own: until it parks or the body ended."""
        ended = True
        try:
            queue = self._queue
            send = self._send
            assert queue is not None
            assert send is not None
            if ping:
                await self._ping(queue, send)
            ended = await self._send_body(queue, send)
        except Exception as exc:
            self._error = exc
        except BaseException as exc:
            if not self._closed:  # not this response's own cancellation of its children
                self._escaped = exc
            raise
        finally:
            if ended:
                self._wake_response()

    async def _send_body(self, queue: ChunkQueue, send: Send) -> bool:
        """The sender: take what is queued, ask :func:`plan_batch` what to do, do it.

        Return ``True`` when the body ended, ``False`` when the sender parked (asyncio).
        """
        settings = self.settings
        state = self.state
        if settings.start_immediately and not self._opened:
            self._opened = True
            await self._open(queue, send)
        while True:
            if not queue.items and not queue.finished:
                if self._parking is not None:
                    if self._park(queue):
                        return False
                    continue
                await self._wait_for_data(queue, send)
            self._idle_deadline = None
            if not state.started and not self._looked_again:
                # Let a producer that is about to finish (or fail) do so before the headers
                # go out: one loop turn buys Content-Length for small bodies and a clean 500
                # for a generator that fails right after its first chunk.
                self._looked_again = True
                await anyio.lowlevel.checkpoint()
            # Read `finished` before looking at the items: it is set after the last append.
            finished = queue.finished
            chunks = queue.take_now()
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            queue.consumed(len(body))
            last = finished and not queue.items
            plan = plan_batch(
                started=state.started,
                status_code=settings.status_code,
                declared_length=settings.declared_length,
                sent=state.bytes_sent,
                size=len(body),
                last=last,
                failed=last and queue.error is not None,
            )
            if await self._carry_out(plan, body, send):
                return True
            if plan.failure is not None:
                raise self._failure(plan, queue)

    # -- a parked sender (asyncio) ------------------------------------------------------

    def _park(self, queue: ChunkQueue) -> bool:
        """End this run of the sender while nothing is queued; return ``False`` if something came.

        An idle stream then holds no sender task. The next chunk or the end of the body starts
        the sender again (``queue.park``), and so does the timer of the next keep-alive, or
        of the idle timeout, which counts the producer's silence from here (pings do not
        reset it; a chunk does).
        """
        wake = self._wake
        assert wake is not None
        if not queue.park(wake):
            return False
        self._sending = False
        idle = self.settings.idle_timeout
        if idle is not None and self._idle_deadline is None:
            self._idle_deadline = anyio.current_time() + idle
        self._arm()
        return True

    def _arm(self) -> None:
        """Set the timer of a parked sender: its next keep-alive or its idle timeout."""
        deadline = self._idle_deadline
        keepalive = self.settings.keepalive
        state = self.state
        if keepalive is not None and state.started:
            ping_at = state.last_send + keepalive
            if deadline is None or ping_at < deadline:
                deadline = ping_at
        if deadline is None:
            return
        if self._timer is not None:
            if self._timer_at <= deadline:
                return  # it comes first; _on_wake sets the next one then
            self._timer.cancel()
        parking = self._parking
        wake = self._wake
        assert parking is not None
        assert wake is not None
        self._timer_at = deadline
        self._timer = parking.call_at(deadline, wake)

    def _on_wake(self) -> None:
        """The one callback of a parked sender (one bound method, made once: ``_wake``).

        A chunk or the end of the body came (``queue.park``), or the timer did: start the
        sender, send a keep-alive, or end the stream on its idle timeout.
        """
        queue = self._queue
        parking = self._parking
        assert queue is not None
        assert parking is not None
        now = parking.time()
        if self._timer is not None and now >= self._timer_at:
            self._timer = None  # it came (this call, or one due in this turn that finds it gone)
        if self._sending or self._closed:
            return  # a running sender sets the timer again when it parks
        if queue.items or queue.finished:
            queue.unpark()
            self._start_sender()
            return
        idle_deadline = self._idle_deadline
        if idle_deadline is not None and now >= idle_deadline:
            idle = self.settings.idle_timeout
            assert idle is not None
            self._error = StreamTimeout("idle_timeout", idle)
            self._wake_response()
            return
        keepalive = self.settings.keepalive
        if keepalive is not None and now >= self.state.last_send + keepalive:
            queue.unpark()
            self._start_sender(ping=True)
            return
        # Stay parked. The call may be the queue's wake-up, which it gives once: a worker
        # thread that saw the sender parked asks the loop to run it, and it can run after the
        # sender took that chunk and parked again. Park again, or the next chunk wakes nobody.
        wake = self._wake
        assert wake is not None
        if not queue.park(wake):  # a worker thread queued a chunk just now
            queue.unpark()
            self._start_sender()
            return
        self._arm()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _ping(self, queue: ChunkQueue, send: Send) -> None:
        """Send the keep-alive chunk, unless a chunk came or was sent since the timer was set."""
        settings = self.settings
        assert settings.keepalive is not None
        due = anyio.current_time() >= self.state.last_send + settings.keepalive
        if due and not queue.items and not queue.finished:
            await self._emit(send, settings.keepalive_chunk, more=True)

    async def _open(self, queue: ChunkQueue, send: Send) -> None:
        """Start an immediate-start stream once :func:`decide_opening` says so."""
        settings = self.settings
        in_thread = self.producer.in_thread
        grace_ends = anyio.current_time() + OPENING_THREAD_GRACE if in_thread else 0.0
        turns = 0
        while True:
            opening = decide_opening(
                start_immediately=True,
                queued=bool(queue.items),
                finished=queue.finished,
                failed=queue.error is not None,
                may_wait=anyio.current_time() < grace_ends if in_thread else turns < OPENING_TURNS,
            )
            if opening is Opening.BATCH:
                return
            if opening is Opening.START:
                await self._send_start(send, decide_framing_now(settings, None))
                if settings.opening_chunk:
                    await self._emit(send, settings.opening_chunk, more=True)
                return
            if in_thread:
                await queue.wait_for_data(grace_ends)
            else:
                turns += 1
                await anyio.lowlevel.checkpoint()

    async def _carry_out(self, plan: BatchPlan, body: bytes, send: Send) -> bool:
        """Send what ``plan`` says; return whether the response finished."""
        if plan.start is not None:
            if plan.final and self._coder is not None:
                await self._send_whole(send, plan.start, body)
                return True
            await self._send_start(send, plan.start)
        if plan.final:
            await self._finish_body(send, body, None)
            return True
        if plan.send:
            await self._emit(send, body, more=True)
        return False

    def _failure(self, plan: BatchPlan, queue: ChunkQueue) -> BaseException:
        if plan.failure is Failure.PRODUCER:
            assert queue.error is not None
            return queue.error
        declared = self.settings.declared_length
        assert declared is not None
        return ContentLengthError(declared, plan.produced, ended=plan.failure is Failure.TOO_SHORT)

    async def _wait_for_data(self, queue: ChunkQueue, send: Send) -> None:
        """Wait until the producer queued something or ended, within ``idle_timeout``."""
        settings = self.settings
        idle = settings.idle_timeout
        if settings.keepalive is not None and self.state.started:
            await self._wait_keeping_alive(queue, send, idle, settings.keepalive)
        elif idle is None:
            await queue.wait_for_data()
        elif not await queue.wait_for_data(anyio.current_time() + idle):
            raise StreamTimeout("idle_timeout", idle)

    async def _wait_keeping_alive(
        self, queue: ChunkQueue, send: Send, idle: float | None, keepalive: float
    ) -> None:
        """Wait for data, sending the keep-alive chunk after ``keepalive`` s without a send."""
        state = self.state
        idle_deadline = None if idle is None else anyio.current_time() + idle
        while True:
            ping_at = state.last_send + keepalive
            deadline = ping_at if idle_deadline is None else min(ping_at, idle_deadline)
            if await queue.wait_for_data(deadline):
                return
            if idle_deadline is not None and anyio.current_time() >= idle_deadline:
                assert idle is not None
                raise StreamTimeout("idle_timeout", idle)
            if anyio.current_time() >= state.last_send + keepalive:
                await self._emit(send, self.settings.keepalive_chunk, more=True)

    # -- sending: the only calls to send() -----------------------------------------------

    def _bounded(self, send: Send, seconds: float) -> Send:
        """``send`` limited to ``seconds`` per call: past that the client is taken as gone."""

        async def bounded_send(message: Message) -> None:
            with anyio.move_on_after(seconds) as scope:
                await send(message)
            if scope.cancelled_caught:
                self.state.client_left(Gone.STOPPED_READING)
                raise StreamTimeout("send_timeout", seconds)

        return bounded_send

    async def _emit(self, send: Send, body: bytes, *, more: bool, coded: bytes | None = None) -> None:
        """Send body bytes: the one place an ``http.response.body`` message is sent.

        Every chunk goes through here, the producer's and the core's own (opening, keep-alive,
        error and shutdown chunks), and so does the final, possibly empty, message. A coded
        body is compressed here, each message ending with a flush (``coded``: ``body`` was
        already coded whole, by :meth:`_send_whole`).
        """
        wire = body
        coder = self._coder
        if coder is not None:
            if coder.failed:
                body = b""  # nothing more can be coded: at most an end without the coding's end
            wire = coded if coded is not None else coder.code(body, more=more)
        await send({"type": "http.response.body", "body": wire, "more_body": more})
        state = self.state
        state.sent(len(body))
        self._messages += 1
        if self._track_sends:
            state.last_send = anyio.current_time()

    async def _emit_trailers(self, send: Send, error: BaseException | None) -> None:
        """Send the trailer fields that end the stream: the one place trailers are sent."""
        await send({"type": "http.response.trailers", "headers": status_trailers(error)})

    async def _send_start(
        self, send: Send, decision: FramingDecision, coded_length: int | None = None
    ) -> None:
        """Send the response start: the one place ``http.response.start`` is sent.

        A coded body gets its compressor here, with the coding's headers and framing
        (``coded_length``: the whole coded body's length, when it was coded before the start).
        """
        headers = list(self.settings.raw_headers)
        if self._vary:
            headers = with_vary(headers, b"Accept-Encoding")
        coder = self._coder
        if coder is not None:  # never for an answer without a body (choose_coding)
            coder.start()
            headers, decision = coded_start(headers, coder.coding, decision, coded_length)
        state = self.state
        state.start(decision.framing)
        check_framing(self._scope, decision.framing)
        state.last_send = anyio.current_time()
        self._first_byte = time.perf_counter() - self._begun
        if decision.content_length is not None:
            headers.append((b"content-length", str(decision.content_length).encode("ascii")))
        message: Message = {
            "type": "http.response.start",
            "status": self.settings.status_code,
            "headers": headers,
        }
        if state.trailers_allowed:
            headers.append(TRAILER_DECLARATION)
            message["trailers"] = True
        await send(message)

    async def _send_whole(self, send: Send, decision: FramingDecision, body: bytes) -> None:
        """Send a body that was complete before the start, when the response may be coded.

        One shorter than ``MIN_SIZE`` goes as it is; a longer one is coded whole first, so that
        its coded length can be sent as ``Content-Length``.
        """
        coder = self._coder
        assert coder is not None
        if len(body) < MIN_SIZE:
            self._coder = None
            await self._send_start(send, decision)
            await self._finish_body(send, body, None)
            return
        coder.start()
        coded = coder.code(body, more=False)
        await self._send_start(send, decision, len(coded))
        await self._finish_body(send, body, None, coded)

    async def _finish_body(
        self, send: Send, body: bytes, error: BaseException | None, coded: bytes | None = None
    ) -> None:
        """Send the final body message, then the trailers where they can reach the client."""
        # From here a disconnect no longer cancels the sender: the body is complete, and a
        # server may check for cancellation after it wrote the last bytes (hypercorn on trio),
        # which would report a finished response as a disconnected one.
        self._finishing = True
        await self._emit(send, body, more=False, coded=coded)
        if self.state.trailers_allowed:
            await self._emit_trailers(send, error)
        self.state.finish()

    async def _run_without_body(self, method: str, send: Send) -> StreamOutcome:
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
        await self._finish_body(send, b"", None)
        return await self._report(Outcome.COMPLETE)

    async def _run_pathsend(self, path: str, send: Send) -> StreamOutcome:
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
        self.state.bytes_sent = declared
        self.state.finish()
        return await self._report(Outcome.COMPLETE)

    # -- endings -------------------------------------------------------------------------

    async def _end_when_cancelled(self, send: Send) -> None:
        """End a response the server cancelled (its shutdown), as its policy says.

        Some servers give the application no notice of a shutdown at all (hypercorn's worker
        processes learn of it through a multiprocessing event and cancel what is left after
        ``--graceful-timeout``); an ``END`` event stream should still end cleanly then.
        """
        ending = self._decide(None, cancelled=True)
        if ending.finish:
            with anyio.move_on_after(CANCELLED_END_TIMEOUT):
                await self._courtesy(ending, None, send)
        if not self.state.finished:
            self.state.fail()
            ending = Ending(Outcome.DISCONNECTED)
        await self._report(ending.outcome)

    async def _conclude(self, ending: Ending, error: BaseException | None, send: Send) -> StreamOutcome:
        """Carry out ``ending``: raise to the app, end cleanly, or end and abort."""
        state = self.state
        if ending.propagate:
            assert error is not None
            state.fail()
            # Nothing was sent: the application's exception handlers answer (404, 500, ...).
            await self._report(ending.outcome, error)
            raise error
        if ending.start or ending.error_chunk or ending.shutdown_chunk or ending.finish:
            bound = self.settings.send_timeout or COURTESY_SEND_TIMEOUT
            with anyio.move_on_after(bound):
                await self._courtesy(ending, error, send)
        if state.finished:
            return await self._report(ending.outcome, error, log=ending.log)
        state.fail()
        outcome = await self._report(ending.outcome, error, log=ending.log)
        if ending.abort or ending.finish:
            # Re-raising is the only honest signal left on HTTP/1.1: the server drops the
            # connection, so a chunked body is never terminated and a sized one ends short.
            # (A clean end that could not be sent in time is cut off the same way.)
            raise error if error is not None else StreamShutdown()
        return outcome

    async def _courtesy(self, ending: Ending, error: BaseException | None, send: Send) -> None:
        """The sends of an ending, in order; a bounded send that gives up stops them."""
        settings = self.settings
        try:
            if ending.start:
                await self._send_start(send, decide_framing_now(settings, None))
            if ending.error_chunk and error is not None:
                chunk = self._error_chunk(error)
                if chunk:
                    await self._emit(send, chunk, more=True)
            if ending.shutdown_chunk and settings.shutdown_chunk:
                await self._emit(send, settings.shutdown_chunk, more=True)
            if ending.finish:
                await self._finish_body(send, b"", error)
        except StreamTimeout:
            pass  # the client stopped reading: what was planned after this is not sent
        except CompressionError as exc:
            # The stream cannot be coded further: it is cut off instead of ended cleanly.
            logger.error("%s; the stream is cut off", exc, exc_info=exc)

    def _error_chunk(self, error: BaseException) -> bytes | None:
        make_chunk = self.settings.error_chunk
        assert make_chunk is not None
        try:
            return make_chunk(error)
        except Exception as exc:
            logger.warning("error_chunk raised %r; sending no error chunk", exc, exc_info=exc)
            return None

    async def _report(
        self, kind: Outcome, error: BaseException | None = None, *, log: bool = False
    ) -> StreamOutcome:
        """Build the one :class:`StreamOutcome` of this response and hand it to ``on_outcome``.

        ``log``: the failure happened after the start; write its one log record first.
        """
        state = self.state
        gone = state.gone
        coder = self._coder
        outcome = StreamOutcome(
            kind=kind,
            status_code=self.settings.status_code if state.started else None,
            bytes_sent=state.bytes_sent,
            duration=time.perf_counter() - self._begun,
            framing=state.framing,
            trailers=state.trailers_allowed and state.started,
            error=error,
            first_byte=self._first_byte,
            messages=self._messages,
            client_gone=None if gone is None else gone.value,
            content_encoding=None if coder is None or not coder.started else coder.coding,
            encoded_bytes=state.bytes_sent if coder is None or not coder.started else coder.encoded,
        )
        self.outcome = outcome
        if self._holder is not None:
            self._holder.outcome = outcome
        if log:
            log_failed_stream(outcome, self.name, self._method, self._path)
        callback = self.on_outcome
        if callback is not None:
            try:
                result = callback(outcome)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                logger.warning("on_outcome raised %r", exc, exc_info=exc)
        if self._observed is not None:
            try:
                self._observed(outcome)
            except Exception as exc:
                logger.warning("the stream observer raised %r", exc, exc_info=exc)
        return outcome


def decide_framing_now(settings: PumpSettings, complete_length: int | None) -> FramingDecision:
    """Framing for a response that has a body, from its settings and what is known so far."""
    return decide_framing(
        method="GET",
        status_code=settings.status_code,
        declared_length=settings.declared_length,
        complete_length=complete_length,
    )
