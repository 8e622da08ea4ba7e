"""The asyncio side of the loop seam (``_loops.py``): futures, loop callbacks, plain tasks, one timer heap.

This module owns what the library does with asyncio directly because it is much cheaper than
anyio's portable primitives: a one-shot wake-up that is a bare future (:class:`FutureWaker`),
callbacks through ``loop.call_soon``, a response's child tasks as plain tasks
(:class:`ResponseTasks`), and the timers of parked senders in one heap per loop
(:class:`Timers`). The rule that keeps it simple: everything here implements a method of
``_loops.LoopBackend`` and nothing else; callers reach it through ``_loops.current_loop()``.

Why the care: a server may hold thousands of idle event streams, and an idle stream is mostly
this bookkeeping (its tasks, its timers, its wake-ups).
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import math
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from types import TracebackType
from typing import Any

import anyio
import anyio.lowlevel

from ._types import Message, Receive

Callback = Callable[[], object]

#: Task names (a name given costs nothing; asyncio would format one for every task).
PRODUCER_TASK = "streaming_responses.producer"
SENDER_TASK = "streaming_responses.sender"
LISTENER_TASK = "streaming_responses.listener"


class FutureWaker:
    """A one-shot wake-up that is a bare future.

    An ``asyncio.Event`` carries a deque of waiters, and an idle stream holds one of these the
    whole time it waits: a future is about half the memory. Waiting without a deadline awaits
    the future itself, so the waiting task holds no coroutine frame for it either.
    """

    __slots__ = ("_future",)

    def __init__(self, future: asyncio.Future[bool]) -> None:
        self._future = future

    def set(self) -> None:
        """Wake the waiter (now, or as soon as it waits). Setting twice is harmless."""
        future = self._future
        if not future.done():
            future.set_result(True)

    def _expire(self) -> None:
        future = self._future
        if not future.done():
            future.set_result(False)

    def wait(self, deadline: float | None = None) -> Awaitable[bool]:
        """Await the result: wait until set; with ``deadline`` (``anyio.current_time()``
        clock), at most until then. It is whether the waker was set."""
        if deadline is None:
            return self._future
        return self._wait_until(deadline)

    async def _wait_until(self, deadline: float) -> bool:
        future = self._future
        timer = future.get_loop().call_at(deadline, self._expire)
        try:
            return await future
        finally:
            timer.cancel()


class AsyncioToken:
    """One asyncio loop, for the shutdown registry."""

    __slots__ = ("key", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.key: Hashable = loop

    def call_soon_threadsafe(self, callback: Callback) -> None:
        self.loop.call_soon_threadsafe(callback)

    def closed(self) -> bool:
        return self.loop.is_closed()


class Timer:
    """One deadline in :class:`Timers`; :meth:`cancel` drops its callback."""

    __slots__ = ("_timers", "callback", "when")

    def __init__(self, timers: Timers, when: float, callback: Callback) -> None:
        self._timers = timers
        self.when = when
        self.callback: Callback | None = callback

    def __lt__(self, other: Timer) -> bool:
        return self.when < other.when

    def cancel(self) -> None:
        """Drop the callback if it has not run yet."""
        if self.callback is not None:
            self.callback = None
            self._timers.cancelled()


class Timers:
    """The deadlines of one loop's parked senders: one heap behind one loop timer.

    An idle event stream waits for its next keep-alive. A timer handle of its own costs about
    half a KiB on uvloop (a quarter on asyncio); an entry here is a small object in a list.
    The loop timer is set for the earliest deadline; when it fires, every deadline that has
    come runs, in order. A cancelled entry stays in the heap until its time, unless cancelled
    entries make up most of it, when the heap is rebuilt without them.
    """

    __slots__ = ("_at", "_cancelled", "_context", "_handle", "_heap", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[Timer] = []
        self._handle: asyncio.TimerHandle | None = None
        self._at = math.inf
        self._cancelled = 0
        # The loop timer runs in a context of its own, not in the one of whichever response
        # happened to set it.
        self._context = contextvars.Context()

    def __len__(self) -> int:
        return len(self._heap) - self._cancelled

    def time(self) -> float:
        """The loop's clock, usable from a loop callback too."""
        return self._loop.time()

    def call_at(self, deadline: float, callback: Callback) -> Timer:
        """Run ``callback`` on the loop at ``deadline`` (or a little later)."""
        timer = Timer(self, deadline, callback)
        heapq.heappush(self._heap, timer)
        if deadline < self._at:
            self._set(deadline)
        return timer

    def cancelled(self) -> None:
        """Count one cancelled entry; rebuild the heap once they are most of it."""
        self._cancelled += 1
        heap = self._heap
        if self._cancelled > 32 and self._cancelled * 2 > len(heap):
            heap[:] = [timer for timer in heap if timer.callback is not None]
            heapq.heapify(heap)
            self._cancelled = 0
            if not heap and self._handle is not None:
                self._handle.cancel()
                self._handle = None
                self._at = math.inf

    def _set(self, at: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._at = at
        self._handle = self._loop.call_at(at, self._fire, context=self._context)

    def _fire(self) -> None:
        self._handle = None
        self._at = math.inf
        heap = self._heap
        now = self._loop.time()
        due: list[Callback] = []
        while heap and heap[0].when <= now:
            timer = heapq.heappop(heap)
            callback = timer.callback
            if callback is None:
                self._cancelled -= 1
            else:
                timer.callback = None
                due.append(callback)
        if heap:
            self._set(heap[0].when)
        for callback in due:
            try:
                callback()
            except Exception as exc:  # pragma: no cover - the core's callbacks do not raise
                self._loop.call_exception_handler({"message": "a timer callback raised", "exception": exc})


_TIMERS: anyio.lowlevel.RunVar[Timers] = anyio.lowlevel.RunVar("streaming_responses_timers")


class AsyncioBackend:
    """The loop seam on asyncio (see ``_loops.LoopBackend``)."""

    name = "asyncio"
    #: Checks in a row without progress that span a whole loop turn (ready callbacks run in
    #: the order they were scheduled).
    quiet_checks = 1

    def waker(self) -> FutureWaker:
        return FutureWaker(asyncio.get_running_loop().create_future())

    def call_soon(self, callback: Callback) -> asyncio.Handle:
        return asyncio.get_running_loop().call_soon(callback)

    def thread_caller(self) -> Callable[[Callback], object]:
        return asyncio.get_running_loop().call_soon_threadsafe

    def token(self) -> AsyncioToken:
        return AsyncioToken(asyncio.get_running_loop())

    def response_tasks(self) -> ResponseTasks:
        return ResponseTasks()

    def parking(self) -> Timers:
        """The running loop's one :class:`Timers` (call it in a task)."""
        try:
            return _TIMERS.get()
        except LookupError:
            timers = Timers(asyncio.get_running_loop())
            _TIMERS.set(timers)
            return timers


class ResponseTasks:
    """The child tasks of one response on asyncio: plain tasks, each as light as it can be.

    What an anyio task group does for the pump, at a fraction of its memory:

    * the producer's job runs inside an anyio cancel scope of its own (it enters
      :meth:`producer_scope` first thing), and leaving the block cancels that scope: the
      cancellation stops at a shielded scope inside the producer, as a task group's would, so
      a producer's shielded close (a sync generator closed in a worker thread, a user's
      shielded cleanup) runs to its end. A producer that has not begun is cancelled as a task;
      it ends before running anything;
    * the sender runs no code of the user's and no shielded scope, so it is a bare task,
      cancelled directly. A sender that parks ends its task; :meth:`start_sender` starts the
      next, in the response's context;
    * the listener is no coroutine of ours at all: each ``receive()`` is a task of its own,
      whose done callback hands the message over and starts the next.

    Leaving the block waits for every child, also when the response itself is being cancelled
    (that cancellation is raised afterwards). A child ending with an exception other than a
    cancellation is raised from the block (none of the pump's jobs lets one out).
    """

    __slots__ = (
        "_closing",
        "_context",
        "_heard",
        "_listener",
        "_producer",
        "_producer_scope",
        "_receive",
        "_sender",
    )

    def __init__(self) -> None:
        self._closing = False
        self._context: contextvars.Context | None = None
        self._producer: asyncio.Task[None] | None = None
        self._producer_scope: anyio.CancelScope | None = None
        self._sender: asyncio.Task[None] | None = None
        self._listener: asyncio.Future[Message] | None = None
        self._receive: Receive | None = None
        self._heard: Callable[[Message | Exception], bool] | None = None

    async def __aenter__(self) -> ResponseTasks:
        self._context = contextvars.copy_context()
        return self

    def start_producer(self, job: Coroutine[Any, Any, None]) -> None:
        self._producer = asyncio.get_running_loop().create_task(job, name=PRODUCER_TASK)

    def producer_scope(self) -> anyio.CancelScope:
        scope = self._producer_scope = anyio.CancelScope()
        return scope

    def start_sender(self, job: Coroutine[Any, Any, None]) -> None:
        if self._closing:
            job.close()
            return
        context = self._context
        assert context is not None
        # In a copy of the response's context, wherever the start comes from (the producer's
        # task, a worker thread's wake-up, a timer): what a middleware set is seen by send().
        loop = asyncio.get_running_loop()
        sender = self._sender = context.run(loop.create_task, job, name=SENDER_TASK)
        sender.add_done_callback(self._sender_ended, context=context)

    def _sender_ended(self, sender: asyncio.Task[None]) -> None:
        if self._sender is sender and not self._closing:
            self._sender = None  # a parked sender: its task, done, is not kept

    def listen(self, receive: Receive, heard: Callable[[Message | Exception], bool]) -> None:
        self._receive = receive
        self._heard = heard
        self._listen()

    def _listen(self) -> None:
        receive = self._receive
        assert receive is not None
        awaitable = receive()
        listener: asyncio.Future[Message]
        if asyncio.iscoroutine(awaitable):
            listener = asyncio.get_running_loop().create_task(awaitable, name=LISTENER_TASK)
        else:  # pragma: no cover - every server's receive() is a coroutine function
            listener = asyncio.ensure_future(awaitable)
        listener.add_done_callback(self._received, context=self._context)
        self._listener = listener

    def _received(self, listener: asyncio.Future[Message]) -> None:
        if listener.cancelled():
            return
        error = listener.exception()
        if self._closing:
            return
        heard = self._heard
        assert heard is not None
        if error is not None:
            if isinstance(error, Exception):
                heard(error)
            return  # a BaseException (KeyboardInterrupt): the server is going down
        if heard(listener.result()):
            self._listen()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closing = True
        if self._producer_scope is not None:
            self._producer_scope.cancel()
        elif self._producer is not None:
            self._producer.cancel()  # it has not begun: it ends before running anything
        for child in (self._sender, self._listener):
            if child is not None:
                child.cancel()
        children = [child for child in (self._producer, self._sender, self._listener) if child is not None]
        cancelled: BaseException | None = None
        pending = [child for child in children if not child.done()]
        while pending:
            try:
                await asyncio.wait(pending)
            except asyncio.CancelledError as exc:
                cancelled = exc  # the children finish first; then the cancellation goes on
            pending = [child for child in pending if not child.done()]
        if cancelled is not None:
            raise cancelled
        for child in children:
            problem = None if child.cancelled() else child.exception()
            if problem is not None and child is not self._listener:
                raise problem  # pragma: no cover - the pump's jobs catch what they raise


#: The one asyncio backend (it keeps no state: every call asks for the running loop).
ASYNCIO = AsyncioBackend()
