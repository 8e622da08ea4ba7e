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
import sys
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
        """The entries still to run."""
        return len(self._heap) - self._cancelled

    def heap_size(self) -> int:
        """The entries in the heap, cancelled ones included."""
        return len(self._heap)

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


#: The message of the cancellation with which :meth:`ResponseTasks.wake` interrupts receive().
WAKE_MESSAGE = "streaming_responses: the response's wait ended"


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
    * there is no listener task (Python 3.11+): the response's own task awaits ``receive()``
      while it waits for the end (:attr:`listens_here`), and :meth:`wake` interrupts that
      await with a cancellation of its own, which :meth:`received` tells apart from any
      other by the task's count of cancellations, as anyio's scopes do. Cancelling a pending
      ``receive()`` is what Starlette's own streaming response does at the end of every
      response, so servers expect it. On 3.10 each ``receive()`` is a bare task (:meth:`listen`).

    Leaving the block waits for every child, also when the response itself is being cancelled
    (that cancellation is raised afterwards). A child ending with an exception other than a
    cancellation is raised from the block (none of the pump's jobs lets one out).
    """

    #: Whether the response's own task awaits ``receive()`` (else :meth:`listen` starts a
    #: task). Python 3.10 cannot count cancellations (``Task.cancelling``), so a server's
    #: cancellation in the same turn as a wake could be taken for the wake: a task listens there.
    listens_here = sys.version_info >= (3, 11)

    __slots__ = (
        "_cancel_sent",
        "_cancelling",
        "_closing",
        "_context",
        "_future",
        "_heard",
        "_host",
        "_listener",
        "_producer",
        "_producer_scope",
        "_receive",
        "_sender",
        "_timer",
        "expired",
        "woken",
    )

    def __init__(self) -> None:
        self._closing = False
        self._context: contextvars.Context | None = None
        self._producer: asyncio.Task[None] | None = None
        self._producer_scope: anyio.CancelScope | None = None
        self._sender: asyncio.Task[None] | None = None
        self._future: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: The response's task while it awaits receive(), when wake() must interrupt it.
        self._host: asyncio.Task[Any] | None = None
        self._cancel_sent = False
        self._cancelling = 0
        self._listener: asyncio.Future[Message] | None = None
        self._receive: Receive | None = None
        self._heard: Callable[[Message | Exception], bool] | None = None
        #: Whether :meth:`wake` was called; :attr:`expired`: by the deadline of :meth:`wake_at`.
        self.woken = False
        self.expired = False

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
        """Python 3.10: each ``receive()`` a task of its own, whose done callback hands the
        message over and starts the next (no coroutine of ours waits)."""
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

    # -- the response's wait ---------------------------------------------------------------

    def wake(self) -> None:
        """Wake the response's task: end its wait, or interrupt its await of ``receive()``."""
        if self.woken:
            return
        self.woken = True
        host = self._host
        if host is not None and host is not asyncio.current_task():
            self._host = None
            self._cancel_sent = True
            host.cancel(WAKE_MESSAGE)
            return
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    def wake_at(self, deadline: float) -> None:
        """Wake the response's task at ``deadline`` (``anyio.current_time()`` clock) too."""
        self._timer = asyncio.get_running_loop().call_at(deadline, self._expire)

    def _expire(self) -> None:
        if not self.woken:
            self.expired = True
            self.wake()

    def receiving(self) -> None:
        """The response's task is about to await ``receive()``: :meth:`wake` interrupts it."""
        host = self._host = asyncio.current_task()
        assert host is not None
        # Cancellations requested before the await are not the wake's, nor one during it
        # from elsewhere: received() compares with this count.
        self._cancelling = _cancelling(host)

    def received(self, error: BaseException | None = None) -> bool:
        """The await of ``receive()`` ended (``error``: what it raised); return whether
        ``error`` is the interruption of :meth:`wake`, which the caller then swallows."""
        self._host = None
        if not self._cancel_sent:
            return False
        self._cancel_sent = False
        task = asyncio.current_task()
        assert task is not None
        task.uncancel()  # type: ignore[attr-defined]  # Python 3.11+ (listens_here)
        # A cancellation from elsewhere (the server's) is counted too: it goes on.
        return error is not None and _cancelling(task) <= self._cancelling

    def wait(self) -> Awaitable[None]:
        """Await the result: until :meth:`wake` (or the deadline of :meth:`wake_at`)."""
        future = self._future = asyncio.get_running_loop().create_future()
        if self.woken:
            future.set_result(None)
        return future

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closing = True
        self._host = None
        if self._timer is not None:
            self._timer.cancel()
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


def _cancelling(task: asyncio.Task[Any]) -> int:
    cancelling = getattr(task, "cancelling", None)
    return 0 if cancelling is None else int(cancelling())


#: The one asyncio backend (it keeps no state: every call asks for the running loop).
ASYNCIO = AsyncioBackend()
